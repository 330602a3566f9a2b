"""Throughput of the harness's per-frame hot paths against ffmpeg doing the same work.

Not part of the default test run. Run with ``python3 -m tox -- benchmarks`` (pytest in tox's
``py3`` env, then its golden checks) or ``python -m pytest benchmarks`` where the package and
its ``test`` extra are installed (docs/performance.md). Each pair reads the same 1080p 4:2:0
frames from the page cache; ffmpeg's times include its process start, which is why the clip
is long enough (60 frames) for that to be a small part. The ratios are printed at the end.
"""

from __future__ import annotations

import os
import subprocess

import pytest

FRAMES, W, H = 60, 1920, 1080
medians: dict[str, float] = {}


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    from bench.datasets import DATASETS
    from bench.ffmpeg import ffmpeg_exe

    if not os.environ.get("BENCH_CACHE"):
        os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    exe = ffmpeg_exe()
    src = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"].path
    d = tmp_path_factory.mktemp("clips")
    ref, dist = d / "ref_1920x1080.yuv", d / "dist_1920x1080.yuv"
    common = ["-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1280x720", "-i", str(src)]
    subprocess.run([exe, *common, "-vf", "scale=1920:1080", "-frames:v", str(FRAMES), "-f", "rawvideo", "-pix_fmt", "yuv420p", str(ref)], check=True)
    subprocess.run(
        [exe, *common, "-vf", "scale=1920:1080,noise=alls=12:allf=t", "-frames:v", str(FRAMES), "-f", "rawvideo", "-pix_fmt", "yuv420p", str(dist)], check=True
    )
    return exe, ref, dist


def record(name: str, benchmark) -> None:
    medians[name] = benchmark.stats.stats.median


def pytest_terminal_summary(terminalreporter):
    pairs = [("yuv->rgb", "harness_rgb", "ffmpeg_rgb"), ("psnr y/u/v", "harness_psnr", "ffmpeg_psnr")]
    lines = []
    for label, ours, theirs in pairs:
        if ours in medians and theirs in medians:
            per = medians[ours] / FRAMES * 1e3
            ref = medians[theirs] / FRAMES * 1e3
            lines.append(f"{label:<11} harness {per:7.2f} ms/frame   ffmpeg {ref:7.2f} ms/frame   ratio {medians[ours] / medians[theirs]:.2f}x")
    if lines:
        terminalreporter.section(f"harness / ffmpeg, {FRAMES} frames of {W}x{H}, {os.cpu_count()} cores (target <= 1.5x)")
        for line in lines:
            terminalreporter.write_line(line)
    import sys

    # each benchmark module prints its own section, when it ran
    for module, hook in (
        ("test_metric_cost", "pytest_terminal_summary_metric_costs"),
        ("test_diffsit_speed", "pytest_terminal_summary_diffsit"),
        ("test_fullscale", "pytest_terminal_summary_fullscale"),
        ("test_diffsit_memory", "pytest_terminal_summary_memory"),
        ("test_sweep_scaling", "pytest_terminal_summary_sweep"),
        ("test_cluster_startup", "pytest_terminal_summary_cluster"),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            getattr(mod, hook)(terminalreporter)
