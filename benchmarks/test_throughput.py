from __future__ import annotations

import subprocess

import numpy as np
from conftest import FRAMES, H, W, record

from bench.metrics import create_metric, measure
from bench.video import read_yuv

RAW = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}"]


def _ffmpeg(exe, *args):
    subprocess.run([exe, "-hide_banner", "-nostdin", "-v", "error", *args], check=True)


def test_ffmpeg_rgb(benchmark, clips):
    exe, ref, _ = clips
    benchmark.pedantic(_ffmpeg, args=(exe, *RAW, "-i", str(ref), "-pix_fmt", "rgb24", "-f", "null", "-"), rounds=7, warmup_rounds=1)
    record("ffmpeg_rgb", benchmark)


def test_harness_rgb(benchmark, clips):
    _, ref, _ = clips

    buf = np.empty((4, 3, H, W), np.float32)

    def convert():  # as measure() does it: batches of 4 into a reused buffer
        v = read_yuv(ref, W, H)
        for s in range(0, FRAMES, 4):
            v.rgb(s, s + 4, out=buf[: min(4, FRAMES - s)])

    benchmark.pedantic(convert, rounds=7, warmup_rounds=1)
    record("harness_rgb", benchmark)


def test_ffmpeg_psnr(benchmark, clips):
    exe, ref, dist = clips
    args = (exe, *RAW, "-i", str(dist), *RAW, "-i", str(ref), "-lavfi", "psnr", "-f", "null", "-")
    benchmark.pedantic(_ffmpeg, args=args, rounds=7, warmup_rounds=1)
    record("ffmpeg_psnr", benchmark)


def test_harness_psnr(benchmark, clips):
    _, ref, dist = clips
    metric = create_metric("psnr")

    def psnr():
        out = measure(read_yuv(ref, W, H), read_yuv(dist, W, H), [metric])
        assert len(out["psnr_y"]) == FRAMES

    benchmark.pedantic(psnr, rounds=7, warmup_rounds=1)
    record("harness_psnr", benchmark)
