"""The Diff-SIT bitstream container.

Layout (all integers little-endian)::

    magic        4 bytes  b"DSIT"
    version      u16      FORMAT_VERSION
    header_len   u32      length of the header that follows
    header       header_len bytes:
        model_id       u16 length + UTF-8 (e.g. "tiny-lambda2")
        weights_sha256 32 bytes (hash of the model weights that wrote the stream)
        width, height  u16, u16 (original, unpadded size)
        fps_num, fps_den  u32, u32
        frames         u32
        intra_period   i32
        strength_block u16 (version 2; 0: no strength map, x^ is ODFTE's output as is)
    frames       ``frames`` records, in coding order:
        index          u32 (display index)
        type           u8  (0 = I, 1 = P, 2 = MV)
        n_strings      u8
        n_strings x (u32 length + bytes)   entropy-coded strings (CompressAI)
    strength     (version 2, strength_block > 0) u32 length + the raw-deflated level map of
                 every ODFTE window (``diffsit.strength``)
    crc32        u32      of everything before it

Version 1 streams (no strength map) still decode, as ODFTE's output as is.

A decoder refuses a stream with a wrong magic, an unknown version, a model or weights hash
other than its own, a truncated or trailing byte, or a CRC mismatch, with a message saying
which; it never produces output from such a stream.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

from .gop import FrameType

MAGIC = b"DSIT"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_TYPE_CODE = {FrameType.INTRA: 0, FrameType.PRED: 1, FrameType.MV: 2}
_CODE_TYPE = {v: k for k, v in _TYPE_CODE.items()}


class BitstreamError(ValueError):
    """A stream this decoder cannot or must not decode; the message says why."""


class ModelMismatch(BitstreamError):
    pass


@dataclass(frozen=True)
class FrameRecord:
    index: int
    type: FrameType
    strings: tuple[bytes, ...]


@dataclass
class Stream:
    model_id: str
    weights_sha256: bytes
    width: int
    height: int
    fps: Fraction
    frames: int
    intra_period: int = -1
    records: list[FrameRecord] = field(default_factory=list)
    strength_block: int = 0
    strength: bytes = b""  # the raw-deflated level maps, as stored

    def payload_bytes(self) -> int:
        return sum(len(s) for r in self.records for s in r.strings)

    def record_bytes(self) -> list[int]:
        """Bytes each frame record takes in the file, in coding order (header, strength map
        and CRC are the rest)."""
        return [6 + sum(4 + len(s) for s in r.strings) for r in self.records]

    def strength_bytes(self) -> int:
        """What the strength map adds to the stream (its length field included)."""
        return 4 + len(self.strength) if self.strength_block else 0


def _fps_fraction(fps: float | Fraction) -> Fraction:
    return Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps


def encode_stream(stream: Stream) -> bytes:
    if len(stream.weights_sha256) != 32:
        raise ValueError("weights_sha256 must be 32 bytes")
    model = stream.model_id.encode("utf-8")
    if not 0 <= stream.strength_block < 2**16:
        raise ValueError(f"strength_block must fit in u16, got {stream.strength_block}")
    fps = _fps_fraction(stream.fps)
    header = (
        struct.pack("<H", len(model))
        + model
        + stream.weights_sha256
        + struct.pack("<HHIIIiH", stream.width, stream.height, fps.numerator, fps.denominator, stream.frames, stream.intra_period, stream.strength_block)
    )
    parts = [MAGIC, struct.pack("<HI", FORMAT_VERSION, len(header)), header]
    for r in stream.records:
        parts.append(struct.pack("<IBB", r.index, _TYPE_CODE[r.type], len(r.strings)))
        for s in r.strings:
            parts.append(struct.pack("<I", len(s)) + s)
    if stream.strength_block:
        parts.append(struct.pack("<I", len(stream.strength)) + stream.strength)
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated stream: {what} needs {n} bytes at offset {self.pos}, only {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def stream_model_id(data: bytes) -> str:
    """The model id a stream names, read before the full check so the right model can load."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError(f"not a Diff-SIT stream: magic {data[:4]!r}, expected {MAGIC!r}")
    if len(data) < 12:
        raise BitstreamError("truncated stream: no header")
    (mlen,) = struct.unpack("<H", data[10:12])
    if len(data) < 12 + mlen:
        raise BitstreamError("truncated stream: no model id")
    return data[12 : 12 + mlen].decode("utf-8", "replace")


def decode_stream(data: bytes, *, model_id: str | None = None, weights_sha256: bytes | None = None) -> Stream:
    """Parse and check a stream; with model_id/weights given, refuse any other model's stream."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError(f"not a Diff-SIT stream: magic {data[:4]!r}, expected {MAGIC!r}")
    if len(data) < 10:
        raise BitstreamError("truncated stream: no header")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    r = _Reader(body)
    r.take(4, "magic")
    version, header_len = r.unpack("<HI", "version")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"stream format version {version}; this decoder reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    if zlib.crc32(body) != crc:
        if header_len + 10 > len(body):
            raise BitstreamError(f"truncated stream: header of {header_len} bytes, {len(body) - 10} present")
        raise BitstreamError("corrupted stream: CRC32 mismatch (the file was truncated or altered)")
    (mlen,) = r.unpack("<H", "model id length")
    mid = r.take(mlen, "model id").decode("utf-8")
    wsha = r.take(32, "weights hash")
    width, height, num, den, frames, intra_period = r.unpack("<HHIIIi", "geometry")
    (strength_block,) = r.unpack("<H", "strength block") if version >= 2 else (0,)
    if model_id is not None and mid != model_id:
        raise ModelMismatch(f"stream was made by model {mid!r}; this decoder has {model_id!r}. Decode with --model {mid}")
    if weights_sha256 is not None and wsha != weights_sha256:
        raise ModelMismatch(
            f"stream was made by model {mid!r} with weights {wsha.hex()[:12]}…, but the loaded weights are "
            f"{weights_sha256.hex()[:12]}…: decoding would produce garbage. Load the weights the stream was made with."
        )
    stream = Stream(mid, wsha, width, height, Fraction(num, den), frames, intra_period, strength_block=strength_block)
    while r.pos < len(body) and len(stream.records) < frames:
        index, code, n = r.unpack("<IBB", "frame record")
        if code not in _CODE_TYPE:
            raise BitstreamError(f"corrupted stream: frame type code {code} at offset {r.pos - 2}")
        strings = tuple(r.take(r.unpack("<I", "string length")[0], f"frame {index} string") for _ in range(n))
        stream.records.append(FrameRecord(index, _CODE_TYPE[code], strings))
    if strength_block and len(stream.records) == frames:
        stream.strength = r.take(r.unpack("<I", "strength map length")[0], "strength map")
    if r.pos != len(body):
        raise BitstreamError(f"corrupted stream: {len(body) - r.pos} bytes after the last record")
    if len(stream.records) != frames or sorted(rec.index for rec in stream.records) != list(range(frames)):
        raise BitstreamError(f"stream header says {frames} frames but holds records for {len(stream.records)}")
    return stream
