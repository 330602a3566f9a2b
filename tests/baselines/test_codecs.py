from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from bench.codec import CodecUnavailable, RateError, UnknownCodec, codec_names, create_codec, parse_codec_spec
from bench.ffmpeg import FFmpegError, ffmpeg_exe


def _frame_types(exe, path):
    out = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(path), "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True)
    return "".join(t for t in __import__("re").findall(r"type:([IPB])", out.stderr))


def test_registry_lists_the_anchors():
    assert {"x265", "vvenc", "x264", "svtav1"} <= set(codec_names())


def test_unknown_codec_lists_valid_names():
    with pytest.raises(UnknownCodec) as e:
        create_codec("x266")
    assert "x265" in str(e.value) and "vvenc" in str(e.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(TypeError, match="intra_period"):
        create_codec("x265", qp=3)


def test_codec_spec_parsing():
    assert parse_codec_spec("x265:preset=slow:threads=1:intra-period=-1") == ("x265", {"preset": "slow", "threads": 1, "intra_period": -1})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_codec_spec("x265:slow")


def test_rates_are_validated():
    c = create_codec("x265")
    assert c.parse_rate("37") == 37
    with pytest.raises(RateError, match="out of range: it must be an integer in 0..51"):
        c.parse_rate("60")
    with pytest.raises(RateError, match="not a number"):
        c.parse_rate("high")
    with pytest.raises(RateError, match="not an integer"):
        c.parse_rate("37.5")


@pytest.mark.parametrize(
    "name, options, types",
    [
        ("x265", {"preset": "ultrafast"}, "IPPPPP"),
        ("x264", {"preset": "ultrafast"}, "IPPPPP"),
        ("svtav1", {"preset": 12}, "IPPPPP"),
        # VVC low delay uses B slices that only reference the past (no reordering)
        ("vvenc", {"preset": "faster"}, "IBBBBB"),
    ],
)
def test_anchor_low_delay_one_intra_and_bits_from_file(name, options, types, synthetic, tmp_path, ffmpeg_exe):
    ref = synthetic["mandelbrot"].open(frames=6)
    codec = create_codec(name, **options)
    rate = codec.default_rates[2]
    result = codec.encode(ref, rate, tmp_path)
    path = result.bitstream
    assert path.suffix == codec.extension and path.stat().st_size > 0
    assert _frame_types(ffmpeg_exe, path) == types
    assert "".join(result.frame_types) == types  # read from the stream's headers, without decoding
    sizes = result.frame_bytes
    assert len(sizes) == 6 and sum(sizes) <= path.stat().st_size
    dist = codec.decode(path, tmp_path, bit_depth=8)
    assert (dist.frames, dist.height, dist.width, dist.bit_depth) == (6, ref.height, ref.width, 8)
    mse = np.mean((dist.y.astype(float) - ref.y) ** 2)
    assert 0 < mse < 200  # a real reconstruction of this content, not noise and not a copy


def test_intra_period(synthetic, tmp_path, ffmpeg_exe):
    ref = synthetic["testsrc2"].open(frames=9)
    for name, opts, expect in (("x265", {"preset": "ultrafast"}, "IPPPIPPPI"), ("vvenc", {"preset": "faster"}, "IBBBIBBBI")):
        path = create_codec(name, intra_period=4, **opts).encode(ref, 37, tmp_path).bitstream
        assert _frame_types(ffmpeg_exe, path) == expect, name
    with pytest.raises(ValueError, match="intra_period"):
        create_codec("x265", intra_period=0)


def test_vvenc_rounds_10bit_back_to_8bit(synthetic, tmp_path):
    ref = synthetic["testsrc2"].open(frames=2)
    codec = create_codec("vvenc", preset="faster")
    result = codec.encode(ref, 22, tmp_path)
    assert codec.decode(result.bitstream, tmp_path).bit_depth == 10  # the stream's own depth
    dist = codec.decode(result.bitstream, tmp_path, bit_depth=8)  # as the harness asks for an 8-bit source
    assert dist.bit_depth == 8 and dist.y.dtype == np.uint8
    assert "-qpa" in result.command and "PicReordering=0" in " ".join(result.command)


def test_describe_records_binary_and_arguments():
    d = create_codec("x265").describe()
    assert d["ffmpeg_version"].startswith("ffmpeg version")
    assert any("bframes=0" in a for a in d["encoder_args_template"])


def test_ffmpeg_without_the_encoder_says_which_and_how_to_fix(fake_ffmpeg):
    fake = fake_ffmpeg("libx264")
    with pytest.raises(CodecUnavailable) as e:
        create_codec("x265", ffmpeg=str(fake)).check()
    msg = str(e.value)
    assert "libx265" in msg and "--ffmpeg" in msg and "BENCH_FFMPEG" in msg and "fake-1.0" in msg


def test_no_ffmpeg_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_FFMPEG", str(tmp_path / "nowhere" / "ffmpeg"))
    with pytest.raises(FFmpegError, match="BENCH_FFMPEG"):
        ffmpeg_exe()
    with pytest.raises(CodecUnavailable, match="does not exist"):
        create_codec("vvenc").check()


def test_file_names_reach_ffmpeg_unmangled(synthetic, weird_dir):
    ref = synthetic["testsrc2"].open(frames=2)
    codec = create_codec("x265", preset="ultrafast")
    path = codec.encode(ref, 40, weird_dir).bitstream
    assert path.parent == weird_dir and path.exists()
    assert codec.decode(path, weird_dir).frames == 2
    assert not (weird_dir.parent / "pwned").exists()
    assert sorted(os.listdir(weird_dir.parent)) == [weird_dir.name]
