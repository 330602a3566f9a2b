"""10-bit 4:2:0 end to end: a sample clip converted to yuv420p10le runs through x265 and vvenc
(Main10) and is measured at 10 bits, with PSNR peak 1023 (2^10 - 1), as ffmpeg's psnr filter."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest

from bench.config import SweepConfig
from bench.sweep import run_sweep


@pytest.fixture(scope="module")
def ten_bit_clip(tmp_path_factory, ffmpeg_exe):
    from bench.datasets import DATASETS

    carphone = next(s for s in DATASETS["sample"].resolve(None) if s.name == "carphone")
    out = tmp_path_factory.mktemp("ten") / "Carphone_176x144_30_10bit.yuv"
    subprocess.run(
        [
            ffmpeg_exe,
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            "176x144",
            "-r",
            "30",
            "-i",
            str(carphone.path),
            "-frames:v",
            "4",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p10le",
            str(out),
        ],
        check=True,
    )
    return out


def _ffmpeg_psnr_y(exe, ref, dist, workdir) -> list[float]:
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", "176x144", "-r", "30"]
    subprocess.run(
        [exe, "-hide_banner", "-loglevel", "error", *raw, "-i", str(dist), *raw, "-i", str(ref), "-lavfi", "psnr=stats_file=psnr.log", "-f", "null", "-"],
        cwd=workdir,
        check=True,
    )
    return [float(m) for m in re.findall(r"psnr_y:([0-9.]+)", (workdir / "psnr.log").read_text())]


@pytest.mark.parametrize("codec", ["x265:preset=ultrafast", "vvenc:preset=faster"])
def test_ten_bit_source_through_main10_measured_at_ten_bits(codec, ten_bit_clip, tmp_path, ffmpeg_exe):
    out = tmp_path / "res"
    result = run_sweep(
        SweepConfig(codecs=[codec], dataset=str(ten_bit_clip), rates=["37"], metrics=["psnr", "psnr_rgb", "ms_ssim_rgb"], out=str(out), progress=False)
    )
    assert result.ok, result.failed
    s = result.summary()
    assert s.bit_depth.tolist() == [10]
    frames = pd.read_csv(out / "frames.csv")
    assert frames.bits.notna().all() and frames.bits.sum() == 8 * s.bytes[0] and frames.frame_type[0] == "I"
    # decode the measured stream to 10-bit samples with ffmpeg and let its psnr filter judge
    stream = out / s.bitstream[0]
    dec = tmp_path / "dec.yuv"
    subprocess.run([ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-i", str(stream), "-f", "rawvideo", "-pix_fmt", "yuv420p10le", str(dec)], check=True)
    theirs = _ffmpeg_psnr_y(ffmpeg_exe, ten_bit_clip, dec, tmp_path)
    assert len(theirs) == 4
    assert frames.psnr_y.tolist() == pytest.approx(theirs, abs=0.01)
    assert s.psnr_y[0] == pytest.approx(sum(theirs) / 4, abs=0.01)  # the mean of per-frame PSNRs
