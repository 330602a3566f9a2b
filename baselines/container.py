"""The bitstream file of the learned baselines: a small header and each frame's entropy-coded strings.

    b"LBS1" | u16 header length | header (compact JSON: model, quality, geometry, ...) |
    per frame: u8 string count, then per string: varint length, bytes

Everything a decoder needs is in the file, so ``decode`` reads nothing else; every byte of
it (header included) is counted in the rate.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAGIC = b"LBS1"


class ContainerError(ValueError):
    """The file is not a learned-baseline bitstream, or it is truncated."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame_sizes(frames: list[list[bytes]]) -> list[int]:
    """Bytes each frame takes in the file (its count byte, lengths and strings); the
    header's bytes are the rest of the file."""
    return [1 + sum(len(_varint(len(s))) + len(s) for s in strings) for strings in frames]


def write_container(path: Path, header: dict, frames: list[list[bytes]]) -> Path:
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    parts = [MAGIC, struct.pack("<H", len(head)), head]
    for strings in frames:
        if len(strings) > 255:
            raise ValueError(f"a frame has {len(strings)} strings; the container holds at most 255")
        parts.append(struct.pack("<B", len(strings)))
        for s in strings:
            parts += [_varint(len(s)), bytes(s)]
    path = Path(path)
    path.write_bytes(b"".join(parts))
    return path


def read_container(path: Path) -> tuple[dict, list[list[bytes]]]:
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ContainerError(f"{path}: not a learned-baseline bitstream (magic {data[:4]!r}, expected {MAGIC!r})")
    pos = 6
    (hlen,) = struct.unpack_from("<H", data, 4)
    try:
        header = json.loads(data[pos : pos + hlen])
    except ValueError as e:
        raise ContainerError(f"{path}: unreadable header ({e})") from None
    pos += hlen
    frames: list[list[bytes]] = []
    while pos < len(data):
        count = data[pos]
        pos += 1
        strings = []
        for _ in range(count):
            n, shift = 0, 0
            while True:
                if pos >= len(data):
                    raise ContainerError(f"{path}: truncated after {len(frames)} frame(s)")
                byte = data[pos]
                pos += 1
                n |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if pos + n > len(data):
                raise ContainerError(f"{path}: truncated after {len(frames)} frame(s)")
            strings.append(data[pos : pos + n])
            pos += n
        frames.append(strings)
    if len(frames) != header.get("frames", len(frames)):
        raise ContainerError(f"{path}: header says {header.get('frames')} frames, the file holds {len(frames)}")
    return header, frames
