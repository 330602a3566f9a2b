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
        strength_block u16 (0: no strength map, x^ is ODFTE's output as is)
        picture_hash   u8  (0 none, 1 CRC-32, 2 MD5: the decoded-picture hash of every frame)
        step_level     i8  (version 7) the texture coders' quantization step level
                           (``diffsit.stem.intra.step_gain``; 0: the steps the model was trained with)
    frames       ``frames`` records, in coding order:
        index          u32 (display index)
        type           u8  (0 = I, 1 = P, 2 = MV)
        n_strings      u8
        hash           0, 4 or 16 bytes: the decoded picture's hash (``picture_hash``)
        n_strings x (u32 length + bytes)   entropy-coded strings (CompressAI)
    strength     (strength_block > 0) u32 length + the raw-deflated level map of every ODFTE
                 window (``diffsit.strength``)
    crc32        u32      of everything before it

The decoded-picture hash plays the part of HEVC's and VVC's picture hash SEI: it is taken
over the frame's DPB samples (STEM's x~, padded, as ``diffsit.stem.exact`` holds them: three
planes of 16-bit little-endian samples, R, G, B), and a decoder whose reconstruction differs
stops at the first frame that does (:class:`PictureHashMismatch`). Its bytes are part of the
stream and of its rate.

Version 3 is the first whose STEM is integer-exact. Versions 1 and 2 were written by a float
STEM whose reconstructions depend on the machine; no decoder reproduces them, so they are
refused with a message saying so. Version 4 pads pictures to a multiple of 16 where version 3
padded them to 64 (the decoder sizes its pictures from the stream's width and height, so the
two cannot read each other's streams): version 3 streams are refused, naming why. Version 5
codes a P frame as a residual from its motion-compensated prediction (version 4's pure
conditional coding is refused, naming why). Version 6 adds the skipped P frame: a P record
holding its motion strings alone, whose picture is the prediction. A version-6 decoder reads
version 5 (whose P records always hold their residual); a version-5 decoder cannot read a
skipped P frame, so the version says which a stream may hold. Version 7 adds the step level:
one model codes rate points between and beyond the ladder's trained ones at finer or coarser
steps. A version-7 decoder reads versions 5 and 6 as level 0.

A decoder refuses a stream with a wrong magic, an unknown version, a model or weights hash
other than its own, a truncated or trailing byte, or a CRC mismatch, with a message saying
which; it never produces output from such a stream.

The CRC catches damage, not intent: anyone can write a stream with a valid CRC. So the header
is also bounded (:func:`check_geometry`) before anything is sized from it: width and height
1..``MAX_DIMENSION``, fps numerator and denominator above 0, frames 1..``MAX_FRAMES``. The
encoder refuses to write what the decoder would refuse. The model id is a name to look up
among the models a decoder knows (``diffsit.zoo.spec_for_model_id``), never a path.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from .gop import FrameType

MAGIC = b"DSIT"
FORMAT_VERSION = 7
# a version-5 stream is a version-6 one whose P frames all code their residual, and a
# version-6 one a version-7 one at step level 0
READABLE_VERSIONS = (5, 6, 7)
#: decoded-picture hash kinds: their code in the header and their size in bytes
PICTURE_HASHES = {"none": (0, 0), "crc32": (1, 4), "md5": (2, 16)}
_HASH_NAME = {code: name for name, (code, _) in PICTURE_HASHES.items()}
_TYPE_CODE = {FrameType.INTRA: 0, FrameType.PRED: 1, FrameType.MV: 2}
_CODE_TYPE = {v: k for k, v in _TYPE_CODE.items()}
#: the largest width and height a stream may hold: DCI 8K's width (8192x4320), over four times
#: the width of the largest pictures the harness codes (1920x1080: its named datasets and
#: ``diffsit fullscale``). The u16 fields reach 65535, where one frame of x~ alone (3 planes of
#: float32) is 51 GB: a stream of a few hundred bytes must not ask for that. At 8192x8192 it
#: is 805 MB a frame.
MAX_DIMENSION = 8192
#: the most frames a stream may hold (the u32 field reaches 4e9). The decoder keeps every
#: picture of a stream (ODFTE refines the clip by windows), so a stream is a clip: 65535
#: frames is 18 minutes at 60 fps; the longest sequences of the harness's named datasets
#: are 600 frames
MAX_FRAMES = 65535


class BitstreamError(ValueError):
    """A stream this decoder cannot or must not decode; the message says why."""


class ModelMismatch(BitstreamError):
    pass


class PictureHashMismatch(BitstreamError):
    """The decoder's reconstruction of a frame is not the encoder's."""


def check_geometry(width: int, height: int, fps_num: int, fps_den: int, frames: int, *, where: str = "stream header") -> None:
    """Refuse, naming the field and its value, a size, rate or length no Diff-SIT stream may
    have (module docstring): checked before any picture is sized from them."""
    decoding = where == "stream header"
    hint = (
        "nothing was decoded: a stream this codec writes never holds it (the file is not one, or was crafted)"
        if decoding
        else "the format cannot hold it (code a smaller or shorter clip)"
    )
    for name, value, high in (("width", width, MAX_DIMENSION), ("height", height, MAX_DIMENSION), ("frames", frames, MAX_FRAMES)):
        if not 1 <= value <= high:
            raise BitstreamError(
                f"{where}: {name} {value} is outside 1..{high}, the range Diff-SIT streams hold "
                f"(pictures up to {MAX_DIMENSION}x{MAX_DIMENSION}, up to {MAX_FRAMES} frames); {hint}"
            )
    for name, value in (("fps numerator", fps_num), ("fps denominator", fps_den)):
        if value <= 0:
            raise BitstreamError(f"{where}: {name} {value}, where a frame rate is a fraction of two positive integers; {hint}")


def picture_hash(samples, kind: str) -> bytes:
    """The hash of one decoded picture: (3, H, W) or (1, 3, H, W) integer samples below 2^16."""
    if kind not in PICTURE_HASHES:
        raise ValueError(f"picture_hash must be one of {', '.join(PICTURE_HASHES)}, got {kind!r}")
    if kind == "none":
        return b""
    data = samples.detach().cpu().to(torch.int32).numpy().astype("<u2").tobytes()  # C order: plane by plane
    if kind == "md5":
        return hashlib.md5(data).digest()
    return struct.pack("<I", zlib.crc32(data))


@dataclass(frozen=True)
class FrameRecord:
    index: int
    type: FrameType
    strings: tuple[bytes, ...]
    hash: bytes = b""  # the decoded picture's hash (Stream.picture_hash)

    def check(self, samples, kind: str, position: int) -> None:
        """Raise PictureHashMismatch, naming this frame, if ``samples`` is not the picture the encoder made."""
        got = picture_hash(samples, kind)
        if got != self.hash:
            raise PictureHashMismatch(
                f"frame {self.index} ({self.type.value} frame, {position + 1}. in decoding order): the decoded picture's "
                f"{kind.upper()} is {got.hex()}, the stream's is {self.hash.hex()}. This decoder's reconstruction is not the "
                "encoder's (weights that differ under the same hash, or a kernel that is not exact), and every later frame "
                "that references it would be wrong too; nothing was written."
            )


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
    picture_hash: str = "crc32"
    step_level: int = 0

    def payload_bytes(self) -> int:
        return sum(len(s) for r in self.records for s in r.strings)

    def record_bytes(self) -> list[int]:
        """Bytes each frame record takes in the file, in coding order, its picture hash
        included (header, strength map and CRC are the rest)."""
        return [6 + len(r.hash) + sum(4 + len(s) for s in r.strings) for r in self.records]

    def hash_bytes(self) -> int:
        return sum(len(r.hash) for r in self.records)

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
    if not -128 <= stream.step_level < 128:
        raise ValueError(f"step_level must fit in i8, got {stream.step_level}")
    fps = _fps_fraction(stream.fps)
    check_geometry(stream.width, stream.height, fps.numerator, fps.denominator, stream.frames, where="stream to write")
    code, size = PICTURE_HASHES[stream.picture_hash]
    header = (
        struct.pack("<H", len(model))
        + model
        + stream.weights_sha256
        + struct.pack(
            "<HHIIIiHBb",
            stream.width,
            stream.height,
            fps.numerator,
            fps.denominator,
            stream.frames,
            stream.intra_period,
            stream.strength_block,
            code,
            stream.step_level,
        )
    )
    parts = [MAGIC, struct.pack("<HI", FORMAT_VERSION, len(header)), header]
    for r in stream.records:
        if len(r.hash) != size:
            raise ValueError(f"frame {r.index}: a {stream.picture_hash} picture hash is {size} bytes, the record holds {len(r.hash)}")
        parts.append(struct.pack("<IBB", r.index, _TYPE_CODE[r.type], len(r.strings)) + r.hash)
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
    """The model id a stream names, after the full check of everything but the model: a
    damaged or crafted stream is refused before any model loads (parsing is cheap next to
    decoding a picture)."""
    return decode_stream(data).model_id


def _model_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError(f"corrupted stream: the model id {raw[:40]!r} is not UTF-8") from None


def _check_version(version: int) -> None:
    """Refuse a stream version this decoder does not read, saying why for the ones it once did."""
    if version in (1, 2):
        raise BitstreamError(
            f"stream format version {version} was written by the float STEM, whose reconstructions depend on the machine "
            f"that runs it; this decoder (version {FORMAT_VERSION}) is integer-exact and cannot reproduce them. "
            "Re-encode the source with this version."
        )
    if version == 3:
        raise BitstreamError(
            "stream format version 3 codes pictures padded to a multiple of 64; this decoder (version "
            f"{FORMAT_VERSION}) codes them padded to a multiple of 16 and cannot size its pictures. Re-encode the source with this version."
        )
    if version == 4:
        raise BitstreamError(
            "stream format version 4 codes P frames by pure conditional coding; this decoder (version "
            f"{FORMAT_VERSION}) codes them as a residual from the motion-compensated prediction. Re-encode the source with this version."
        )
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"stream format version {version}; this decoder reads versions {', '.join(map(str, READABLE_VERSIONS))}")


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
    _check_version(version)
    if zlib.crc32(body) != crc:
        if header_len + 10 > len(body):
            raise BitstreamError(f"truncated stream: header of {header_len} bytes, {len(body) - 10} present")
        raise BitstreamError("corrupted stream: CRC32 mismatch (the file was truncated or altered)")
    (mlen,) = r.unpack("<H", "model id length")
    mid = _model_id(r.take(mlen, "model id"))
    wsha = r.take(32, "weights hash")
    width, height, num, den, frames, intra_period = r.unpack("<HHIIIi", "geometry")
    check_geometry(width, height, num, den, frames)
    strength_block, hash_code = r.unpack("<HB", "strength block and picture hash")
    (step_level,) = r.unpack("<b", "step level") if version >= 7 else (0,)
    if hash_code not in _HASH_NAME:
        raise BitstreamError(f"corrupted stream: picture hash code {hash_code}")
    hash_kind = _HASH_NAME[hash_code]
    if model_id is not None and mid != model_id:
        raise ModelMismatch(f"stream was made by model {mid!r}; this decoder has {model_id!r}. Decode with --model {mid}")
    if weights_sha256 is not None and wsha != weights_sha256:
        raise ModelMismatch(
            f"stream was made by model {mid!r} with weights {wsha.hex()[:12]}…, but the loaded weights are "
            f"{weights_sha256.hex()[:12]}…: decoding would produce garbage. Load the weights the stream was made with."
        )
    stream = Stream(
        mid, wsha, width, height, Fraction(num, den), frames, intra_period, strength_block=strength_block, picture_hash=hash_kind, step_level=step_level
    )
    while r.pos < len(body) and len(stream.records) < frames:
        index, code, n = r.unpack("<IBB", "frame record")
        if code not in _CODE_TYPE:
            raise BitstreamError(f"corrupted stream: frame type code {code} at offset {r.pos - 2}")
        digest = r.take(PICTURE_HASHES[hash_kind][1], f"frame {index} picture hash")
        strings = tuple(r.take(r.unpack("<I", "string length")[0], f"frame {index} string") for _ in range(n))
        stream.records.append(FrameRecord(index, _CODE_TYPE[code], strings, digest))
    if strength_block and len(stream.records) == frames:
        stream.strength = r.take(r.unpack("<I", "strength map length")[0], "strength map")
    if r.pos != len(body):
        raise BitstreamError(f"corrupted stream: {len(body) - r.pos} bytes after the last record")
    if len(stream.records) != frames or sorted(rec.index for rec in stream.records) != list(range(frames)):
        raise BitstreamError(f"stream header says {frames} frames but holds records for {len(stream.records)}")
    return stream
