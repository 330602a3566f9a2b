"""The encoder-chosen ODFTE strength map: its choice, its coding, and its place in the stream."""

from __future__ import annotations

import hashlib
import struct
import zlib
from fractions import Fraction

import pytest
import torch

from diffsit import strength
from diffsit.bitstream import BitstreamError, FrameRecord, Stream, decode_stream, encode_stream
from diffsit.gop import schedule

SHA = hashlib.sha256(b"weights").digest()


def test_each_block_gets_the_least_squares_level():
    torch.manual_seed(0)
    x_tilde = torch.rand(3, 3, 64, 96)
    d = torch.randn(3, 3, 64, 96) * 0.05
    # the source lies 0.5 of the way along ODFTE's change in the left blocks, 1.5 in the
    # middle ones, and against it on the right
    a = torch.tensor([0.5, 1.5, -1.0]).repeat_interleave(32)[None, None, None, :]
    source = x_tilde + a * d
    levels = strength.choose(source, x_tilde, x_tilde + d, 32)
    assert levels.dtype == torch.uint8 and levels.shape == (2, 3)
    assert (levels[:, 0] == 2).all() and (levels[:, 1] == 6).all() and (levels[:, 2] == 0).all()


def _cost(x, source, weights, temporal_weight=0.0):
    """The criterion: PSNR-YUV's weighted squared error on the 4:2:0 planes, plus w_c times
    that of the frame-to-frame differences (each weighted by the mean of its frames' weights)."""
    cost = 0.0
    for w, p in zip(weights, strength.planes((x - source).double()), strict=True):
        cost += float((w * p**2).sum()) + temporal_weight * float(((w[1:] + w[:-1]) / 2 * p.diff(dim=0) ** 2).sum())
    return cost


def test_the_choice_never_does_worse_than_x_tilde_or_than_odfte_as_is():
    torch.manual_seed(1)
    source = torch.rand(5, 3, 80, 80) * 0.6 + 0.2
    x_tilde = source + 0.05 * torch.randn_like(source)
    x_refined = x_tilde + 0.05 * torch.randn_like(source) + 0.03 * (source - x_tilde)
    w = strength.plane_weights(source, x_tilde)
    for block in (16, 32, 64):
        for wc in (0.0, 1.0, 4.0):
            x_hat = strength.apply(x_tilde, x_refined, strength.choose(source, x_tilde, x_refined, block, temporal_weight=wc), block)
            assert _cost(x_hat, source, w, wc) <= min(_cost(x_tilde, source, w, wc), _cost(x_refined, source, w, wc))
    # a block that does not divide the frame: the last row and column of blocks are partial
    assert strength.choose(source, x_tilde, x_refined, 48).shape == (2, 2)
    with pytest.raises(ValueError, match="must be even"):
        strength.choose(source, x_tilde, x_refined, 33)
    with pytest.raises(ValueError, match="temporal_weight"):
        strength.choose(source, x_tilde, x_refined, 32, temporal_weight=-1)


def test_the_temporal_term_refuses_a_change_that_flickers():
    # ODFTE's change d gains per-frame error in every frame but alternates in sign: with the
    # temporal term the encoder keeps less of it than PSNR alone would
    torch.manual_seed(3)
    source = torch.rand(1, 3, 32, 32).repeat(6, 1, 1, 1) * 0.6 + 0.2
    x_tilde = source + 0.05
    sign = torch.tensor([1.0, -1.0] * 3).view(6, 1, 1, 1)
    x_refined = x_tilde - 0.05 + 0.04 * sign
    psnr_only = strength.choose(source, x_tilde, x_refined, 32, temporal_weight=0.0)
    with_time = strength.choose(source, x_tilde, x_refined, 32, temporal_weight=1.0)
    assert int(with_time[0, 0]) < int(psnr_only[0, 0])


def test_it_raises_the_harness_psnr_yuv():
    from bench.metrics import create_metric, measure
    from bench.video import rgb_to_yuv420

    torch.manual_seed(2)
    source = torch.rand(3, 3, 64, 64) * 0.6 + 0.2
    x_tilde = source + 0.04 * torch.randn_like(source)
    x_refined = x_tilde + 0.3 * (source - x_tilde) * (torch.rand(1, 1, 64, 64) > 0.5) + 0.02 * torch.randn_like(source)
    x_hat = strength.apply(x_tilde, x_refined, strength.choose(source, x_tilde, x_refined, 16, temporal_weight=0.0), 16)
    ref = rgb_to_yuv420(source)

    def psnr_yuv(x):
        return float(measure(ref, rgb_to_yuv420(x), [create_metric("psnr")])["psnr_yuv"].mean())

    assert psnr_yuv(x_hat) > max(psnr_yuv(x_tilde), psnr_yuv(x_refined))


def test_maps_round_trip_and_corrupt_maps_are_clear_errors():
    maps = [torch.randint(0, strength.LEVELS, (3, 4), dtype=torch.uint8) for _ in range(2)]
    back = strength.unpack(strength.pack(maps), 2, (3, 4))
    assert all(torch.equal(a, b) for a, b in zip(maps, back, strict=True))
    with pytest.raises(BitstreamError, match="holds 24 entries, 3 windows"):
        strength.unpack(strength.pack(maps), 3, (3, 4))
    with pytest.raises(BitstreamError, match="strength level 9"):
        strength.unpack(strength.pack([torch.full((3, 4), 9, dtype=torch.uint8)]), 1, (3, 4))
    with pytest.raises(BitstreamError, match="does not inflate"):
        strength.unpack(b"\xff\xff not deflate", 1, (3, 4))
    with pytest.raises(BitstreamError, match="does not inflate"):
        strength.unpack(strength.pack(maps)[:-2], 2, (3, 4))


def _stream(block: int, payload: bytes = b"") -> Stream:
    recs = [FrameRecord(f.index, f.type, (bytes([f.index]) * 4,)) for f in schedule(5)]
    return Stream("tiny-lambda1", SHA, 176, 144, Fraction(25), 5, -1, recs, strength_block=block, strength=payload, picture_hash="none")


def test_stream_carries_the_map_and_counts_its_bytes():
    payload = strength.pack([torch.zeros(5, 6, dtype=torch.uint8)])
    s = _stream(32, payload)
    back = decode_stream(encode_stream(s))
    assert back.strength_block == 32 and back.strength == payload
    assert len(encode_stream(s)) - len(encode_stream(_stream(32, b""))) == len(payload) == s.strength_bytes() - 4
    without = decode_stream(encode_stream(_stream(0)))
    assert without.strength_block == 0 and without.strength == b"" and without.strength_bytes() == 0


def test_trailing_bytes_after_the_map_are_refused():
    data = encode_stream(_stream(32, b"xy"))
    body = data[:-4] + b"extra"
    with pytest.raises(BitstreamError, match="5 bytes after the last record"):
        decode_stream(body + struct.pack("<I", zlib.crc32(body)))


def test_codec_output_follows_the_map_and_block_zero_is_odfte_as_is():
    pytest.importorskip("compressai")
    pytest.importorskip("diffusers")
    from support import random_video

    from diffsit.model import random_model
    from diffsit.pipeline import decode_intermediate, encode_video, reconstruct

    video = random_video(frames=3, height=64, width=64, seed=2)
    m = random_model(0)
    enc = encode_video(m, video)
    stream, x_tilde = decode_intermediate(m, enc.data)
    assert torch.equal(reconstruct(m, stream, x_tilde), enc.x_hat)
    m.config.strength_block = 0
    plain = encode_video(m, video)
    assert plain.stream.strength_bytes() == 0 and len(plain.data) == enc.stem_bytes
    assert torch.equal(plain.x_hat, plain.x_refined) and torch.equal(plain.x_refined, enc.x_refined)
    stream, x_tilde = decode_intermediate(m, plain.data)
    assert torch.equal(reconstruct(m, stream, x_tilde), plain.x_refined)


def test_strength_block_option_of_the_plugin_and_the_cli(tmp_path, capsys):
    pytest.importorskip("compressai")
    pytest.importorskip("diffusers")
    from support import random_video

    from bench.video import write_yuv
    from diffsit.__main__ import main as diffsit_main
    from diffsit.bitstream import decode_stream
    from diffsit.codec import DiffSITCodec

    video = random_video(frames=2, height=64, width=64, seed=4)
    codec = DiffSITCodec(model="random", allow_untrained=True, strength_block=0)
    path = codec.encode(video, 1, tmp_path).bitstream
    assert decode_stream(path.read_bytes()).strength_block == 0
    assert codec.describe()["strength_block"] == 0
    assert codec.decode(path, tmp_path).frames == 2  # the stream says how to decode
    for bad in (-2, 7, 1 << 16, True):
        with pytest.raises(ValueError, match="strength_block must be 0"):
            DiffSITCodec(strength_block=bad)
    src = write_yuv(video, tmp_path / "c_64x64_25.yuv")
    out = tmp_path / "c.dsit"
    assert diffsit_main(["encode", str(src), "-o", str(out), "--model", "random", "--allow-untrained", "--strength-block", "16"]) == 0
    assert decode_stream(out.read_bytes()).strength_block == 16
    assert diffsit_main(["encode", str(src), "-o", str(tmp_path / "x.dsit"), "--model", "random", "--allow-untrained", "--strength-block", "5"]) == 2
    assert "strength_block must be 0" in capsys.readouterr().err and not (tmp_path / "x.dsit").exists()
