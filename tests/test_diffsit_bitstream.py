from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest

from diffsit.bitstream import MAGIC, BitstreamError, FrameRecord, ModelMismatch, Stream, decode_stream, encode_stream
from diffsit.gop import schedule

SHA = hashlib.sha256(b"weights").digest()


def _stream(n=7):
    recs = [FrameRecord(f.index, f.type, (bytes([f.index]) * (3 + f.index), b"hyper" * f.index)) for f in schedule(n)]
    return Stream("tiny-lambda1", SHA, 176, 144, Fraction(30000, 1001), n, -1, recs)


def test_round_trip():
    s = _stream()
    data = encode_stream(s)
    assert data[:4] == MAGIC
    back = decode_stream(data, model_id="tiny-lambda1", weights_sha256=SHA)
    assert back == s and back.fps == Fraction(30000, 1001) and back.payload_bytes() == s.payload_bytes()


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
