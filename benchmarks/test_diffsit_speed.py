"""Diff-SIT speed on CPU with the tiny config (random weights: speed does not depend on values).

- ODFTE decode with one step against the same model sampling 4 and 20 steps (the paper's
  "5x faster than multi-step diffusion" claim is about this ratio);
- encode and decode frames per second on the sample sequences.
"""

from __future__ import annotations

import time

import pytest
import torch

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

from diffsit.codec import decode_intermediate, encode_video, load_model, reconstruct
from diffsit.gop import type_map

results: dict[str, float] = {}


@pytest.fixture(scope="module")
def model():
    return load_model("random", allow_untrained=True)


@pytest.mark.parametrize("steps", [1, 4, 20])
def test_odfte_steps(benchmark, model, steps):
    x = torch.rand(1, 3, 9, 128, 128)
    tm = torch.from_numpy(type_map(9))[None]
    with torch.no_grad():
        benchmark.pedantic(lambda: model.odfte(x, tm, steps=steps), rounds=3, warmup_rounds=1)
    results[f"odfte_{steps}"] = benchmark.stats.stats.median


@pytest.mark.parametrize("name", ["carphone", "bikes", "bigbuckbunny"])
def test_encode_decode_fps(model, name):
    from bench.datasets import DATASETS

    seq = {s.name: s for s in DATASETS["sample"].resolve(None)}[name]
    video = seq.open(frames=9)
    t0 = time.perf_counter()
    data = encode_video(model, video, output=False).data
    t1 = time.perf_counter()
    stream, x_tilde = decode_intermediate(model, data)
    t2 = time.perf_counter()
    reconstruct(model, stream, x_tilde)
    t3 = time.perf_counter()
    results[f"{name} {video.width}x{video.height}"] = (9 / (t1 - t0), 9 / (t2 - t1), 9 / (t3 - t1))


def test_odfte_window_720p_profile():
    """One 9-frame ODFTE window of bigbuckbunny (1280x720) with the shipped tiny model, and
    where its time goes: the before/after reference for CPU speed work (issue 19)."""
    from torch.profiler import ProfilerActivity, profile

    from bench.datasets import DATASETS

    shipped = load_model("tiny-lambda1")
    seq = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"]
    x = seq.open(frames=9).rgb(0, 9).permute(1, 0, 2, 3)[None]
    tm = torch.from_numpy(type_map(9))[None]
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        shipped.odfte(x, tm)
        results["odfte_720p_window_s"] = time.perf_counter() - t0
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    results["odfte_720p_ops"] = [(e.key, e.self_cpu_time_total / 1e6, e.count, e.self_cpu_time_total / total) for e in ops[:6]]


def pytest_terminal_summary_diffsit(reporter):
    if "odfte_1" in results:
        reporter.section("Diff-SIT tiny on CPU")
        one = results["odfte_1"]
        for k in (4, 20):
            if f"odfte_{k}" in results:
                reporter.write_line(f"ODFTE decode, 9 frames 128x128: {k} steps / 1 step = {results[f'odfte_{k}'] / one:.2f}x ({one * 1e3:.0f} ms for 1 step)")
    if "odfte_720p_window_s" in results:
        reporter.section(f"ODFTE, one 9-frame 1280x720 window, shipped tiny model, {torch.get_num_threads()} threads")
        reporter.write_line(f"window: {results['odfte_720p_window_s']:.1f} s")
        for name, secs, calls, share in results["odfte_720p_ops"]:
            reporter.write_line(f"  {name:<52} {secs:7.2f} s  {100 * share:5.1f} %  {calls} calls")
    for k, v in results.items():
        if isinstance(v, tuple):
            reporter.write_line(f"{k:<22} encode {v[0]:6.2f} fps   STEM decode {v[1]:6.2f} fps   full decode (STEM + ODFTE) {v[2]:6.2f} fps")
