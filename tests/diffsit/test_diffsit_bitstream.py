from __future__ import annotations

import hashlib
import struct
import zlib
from fractions import Fraction

import pytest
import torch

from diffsit.bitstream import (
    MAGIC,
    PICTURE_HASHES,
    BitstreamError,
    FrameRecord,
    ModelMismatch,
    PictureHashMismatch,
    Stream,
    decode_stream,
    encode_stream,
    picture_hash,
)
from diffsit.gop import schedule

SHA = hashlib.sha256(b"weights").digest()


def _picture(index: int) -> torch.Tensor:
    return torch.full((1, 3, 4, 6), float(index * 100), dtype=torch.float64)


def _stream(n=7, kind="crc32"):
    recs = [FrameRecord(f.index, f.type, (bytes([f.index]) * (3 + f.index), b"hyper" * f.index), picture_hash(_picture(f.index), kind)) for f in schedule(n)]
    return Stream("tiny-lambda1", SHA, 176, 144, Fraction(30000, 1001), n, -1, recs, picture_hash=kind)


@pytest.mark.parametrize("kind", list(PICTURE_HASHES))
def test_round_trip(kind):
    s = _stream(kind=kind)
    data = encode_stream(s)
    assert data[:4] == MAGIC
    back = decode_stream(data, model_id="tiny-lambda1", weights_sha256=SHA)
    assert back == s and back.fps == Fraction(30000, 1001) and back.payload_bytes() == s.payload_bytes()
    # the hash is part of each record's bytes, so of the rate
    size = PICTURE_HASHES[kind][1]
    assert back.hash_bytes() == 7 * size and sum(back.record_bytes()) == sum(_stream(kind="none").record_bytes()) + 7 * size


def test_picture_hash_is_of_the_samples_as_16_bit_little_endian():
    pic = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).view(1, 3, 8, 5) * 7
    raw = pic.to(torch.int64).numpy().astype("<u2").tobytes()
    assert picture_hash(pic, "md5") == hashlib.md5(raw).digest()
    assert picture_hash(pic, "crc32") == __import__("struct").pack("<I", __import__("zlib").crc32(raw))
    assert picture_hash(pic, "none") == b""
    with pytest.raises(ValueError, match="crc32"):
        picture_hash(pic, "sha1")


def test_a_picture_that_differs_is_named():
    rec = _stream(kind="md5").records[3]  # frame 4, a P frame
    rec.check(_picture(rec.index), "md5", 3)
    other = _picture(rec.index).clone()
    other[0, 1, 2, 3] += 1
    with pytest.raises(PictureHashMismatch, match=r"frame 4 \(P frame, 4\. in decoding order\)"):
        rec.check(other, "md5", 3)


def test_float_stem_streams_are_refused_with_the_reason():
    data = encode_stream(_stream())
    for old in (1, 2):
        with pytest.raises(BitstreamError, match=f"version {old} was written by the float STEM.*Re-encode"):
            decode_stream(data[:4] + bytes([old, 0]) + data[6:])


def test_version_3_streams_padded_to_64_are_refused_with_the_reason():
    data = encode_stream(_stream())
    with pytest.raises(BitstreamError, match="version 3 codes pictures padded to a multiple of 64.*Re-encode"):
        decode_stream(data[:4] + bytes([3, 0]) + data[6:])


def test_version_4_streams_of_conditional_p_frames_are_refused_with_the_reason():
    data = encode_stream(_stream())
    with pytest.raises(BitstreamError, match="version 4 codes P frames by pure conditional coding.*Re-encode"):
        decode_stream(data[:4] + bytes([4, 0]) + data[6:])


def _as_version(data: bytes, version: int) -> bytes:
    """A version-7 stream at level 0 rewritten as ``version`` (5 or 6): the header without
    its step level byte."""
    (hlen,) = struct.unpack("<I", data[6:10])
    body = data[:4] + struct.pack("<HI", version, hlen - 1) + data[10 : 10 + hlen - 1] + data[10 + hlen : -4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_5_streams_still_decode():
    """Version 6 only adds the skipped P frame: a version-5 stream is one without any."""
    data = encode_stream(_stream())
    assert decode_stream(_as_version(data, 5)).records == decode_stream(data).records


def test_version_6_streams_decode_at_step_level_0():
    """Version 7 adds the step level (an i8 after the picture hash kind)."""
    s = _stream()
    s.step_level = -5
    data = encode_stream(s)
    assert decode_stream(data).step_level == -5
    plain = encode_stream(_stream())
    old = decode_stream(_as_version(plain, 6))
    assert old.step_level == 0 and old.records == decode_stream(plain).records
    with pytest.raises(ValueError, match="i8"):
        s.step_level = 200
        encode_stream(s)


def test_wrong_magic_version_model_and_weights():
    data = encode_stream(_stream())
    with pytest.raises(BitstreamError, match="not a Diff-SIT stream"):
        decode_stream(b"HEVC" + data[4:])
    with pytest.raises(BitstreamError, match="version 9"):
        decode_stream(data[:4] + b"\x09\x00" + data[6:])
    with pytest.raises(ModelMismatch, match="--model tiny-lambda1"):
        decode_stream(data, model_id="tiny-lambda4")
    with pytest.raises(ModelMismatch, match="garbage"):
        decode_stream(data, model_id="tiny-lambda1", weights_sha256=hashlib.sha256(b"other").digest())


@pytest.mark.parametrize("cut", [3, 9, 20, 60, -5, -1])
def test_truncation_is_a_clear_error(cut):
    data = encode_stream(_stream())
    with pytest.raises(BitstreamError, match="truncated|corrupted|not a Diff-SIT"):
        decode_stream(data[:cut])


def test_flipped_byte_is_caught():
    data = bytearray(encode_stream(_stream()))
    data[len(data) // 2] ^= 0x40
    with pytest.raises(BitstreamError, match="CRC32"):
        decode_stream(bytes(data))


def test_frame_count_must_match():
    s = _stream()
    s.records = s.records[:-1]
    with pytest.raises(BitstreamError, match="says 7 frames"):
        decode_stream(encode_stream(s))


def test_model_id_can_be_read_before_the_full_check():
    from diffsit.bitstream import stream_model_id

    data = encode_stream(_stream())
    assert stream_model_id(data) == "tiny-lambda1"
    with pytest.raises(BitstreamError, match="not a Diff-SIT stream"):
        stream_model_id(b"HEVC" + data[4:])
    with pytest.raises(BitstreamError, match="truncated"):
        stream_model_id(data[:14])
