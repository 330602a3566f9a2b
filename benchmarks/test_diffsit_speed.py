"""Diff-SIT speed on CPU with the tiny config (random weights: speed does not depend on values).

- ODFTE decode with one step against the same model sampling 4 and 20 steps (the paper's
  "5x faster than multi-step diffusion" claim is about this ratio);
- encode and decode frames per second on the sample sequences;
- ODFTE's 720p window and STEM's 720p P-frame decode, before and after issue 19's speed work.
"""

from __future__ import annotations

import time

import pytest
import torch

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

from diffsit.gop import type_map
from diffsit.pipeline import decode_intermediate, encode_video, reconstruct
from diffsit.zoo import load_model

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


def _before_issue_19(odfte):
    """ODFTE as it ran before issue 19's speed work, on the same weights' shapes: diffusers'
    own WanRMS_norm forward (F.normalize) and the FTE's full-size convolutions."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    for m in odfte.vae.modules():
        if isinstance(m, WanRMS_norm):
            m.__dict__.pop("forward", None)  # back to the class's forward
    fte = odfte.fte
    fte.forward = lambda type_map, like: fte.net(
        type_map.to(like.dtype).view(*type_map.shape[:1], 1, type_map.shape[1], 1, 1).expand(like.shape[0], 1, *like.shape[2:])
    )
    return odfte


def _profile_window(odfte, x, tm, key):
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        odfte(x, tm)
        results[f"{key}_s"] = time.perf_counter() - t0
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    results[f"{key}_ops"] = [(e.key, e.self_cpu_time_total / 1e6, e.count, e.self_cpu_time_total / total) for e in ops[:6]]


@pytest.fixture(scope="module")
def window_720p():
    from bench.datasets import DATASETS

    seq = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"]
    return seq.open(frames=9).rgb(0, 9).permute(1, 0, 2, 3)[None], torch.from_numpy(type_map(9))[None]


@pytest.mark.parametrize("version", ["before", "after", "after_compiled"])
def test_odfte_window_720p_profile(window_720p, version):
    """One 9-frame ODFTE window of bigbuckbunny (1280x720), and where its time goes, before
    and after issue 19 in the same run. before: the tiny config of then (VAE 4x in space, DiT
    patch 4) with diffusers' norms and the full-size FTE; after: the shipped model as it runs
    now (VAE 8x, patch 2, the fast norm and FTE). Speed does not depend on the weights'
    values, so "before" is random weights of the old shapes. after_compiled: "after" with its
    VAE encoder, VAE decoder and DiT under torch.compile (inductor), timed on the run after the
    one that compiles (which takes minutes)."""
    from diffsit.model import DiffSIT, DiffSITConfig
    from diffsit.odfte import tiny_config

    x, tm = window_720p
    if version == "before":
        cfg = tiny_config()
        cfg.vae.update(dim_mult=[1, 2, 2], temperal_downsample=[False, True])
        cfg.transformer.update(patch_size=(1, 4, 4))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            odfte = _before_issue_19(DiffSIT(DiffSITConfig(odfte=cfg)).odfte.eval())
    else:
        odfte = load_model("tiny-lambda1").odfte
    if version == "after_compiled":
        odfte.vae.encoder, odfte.vae.decoder = torch.compile(odfte.vae.encoder), torch.compile(odfte.vae.decoder)
        odfte.transformer = torch.compile(odfte.transformer)
        with torch.no_grad():
            t0 = time.perf_counter()
            odfte(x, tm)
            results["odfte_720p_compile_s"] = time.perf_counter() - t0
    _profile_window(odfte, x, tm, f"odfte_720p_{version}")


def test_bigbuckbunny_encode_decode():
    """The shipped tiny-lambda1 model through the codec on bigbuckbunny's first 9 frames (one
    window), by phase: STEM encode, ODFTE + strength map in the encoder, STEM decode, and
    x^ in the decoder with ODFTE reused from the encoder (the harness's path) and run again
    (a decoder on its own)."""
    from bench.datasets import DATASETS
    from diffsit.pipeline import RefinementCache

    model = load_model("tiny-lambda1")
    seq = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"]
    video = seq.open(frames=9)
    cache = RefinementCache()
    t0 = time.perf_counter()
    enc = encode_video(model, video, output=False, cache=cache)
    t1 = time.perf_counter()
    stream, x_tilde = decode_intermediate(model, enc.data)
    t2 = time.perf_counter()
    reconstruct(model, stream, x_tilde, cache)
    t3 = time.perf_counter()
    reconstruct(model, stream, x_tilde)
    t4 = time.perf_counter()
    results["bbb_codec"] = {"encode": t1 - t0, "STEM decode": t2 - t1, "x^ (ODFTE reused)": t3 - t2, "x^ (ODFTE run again)": t4 - t3}


@pytest.fixture(scope="module")
def pframe_720p():
    """One bigbuckbunny P frame (frame 3 from frame 0 coded intra) of the shipped tiny-lambda1."""
    from bench.datasets import DATASETS

    model = load_model("tiny-lambda1")
    seq = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"]
    frames = seq.open(frames=4).rgb(0, 4)
    _, ref = model.intra.compress_image(frames[0:1])
    strings, decoded = model.pframe.compress(frames[3:4], ref)
    return model.pframe, strings, ref, decoded


@pytest.mark.parametrize("conv", ["conv2d", "gemm"])
def test_exact_pframe_decode_720p(pframe_720p, conv, monkeypatch):
    """STEM's integer-exact P-frame decode at 1280x720 with the exact convolutions as
    PyTorch's float64 conv2d (its slow im2col path on CPU: no oneDNN float64 kernel) and as
    one BLAS GEMM per kernel tap (what runs now). Both are exact, so the frames are equal."""
    import torch.nn.functional as F

    from diffsit.stem import exact

    pm, strings, ref, decoded = pframe_720p
    if conv == "conv2d":
        monkeypatch.setattr(exact.ExactConv, "_gemm_conv", lambda self, x: F.conv2d(x, self.weight, self.bias, self.stride, self.padding))
    t0 = time.perf_counter()
    out = pm.decompress(strings, ref)
    results[f"pframe_720p_{conv}"] = time.perf_counter() - t0
    assert torch.equal(out, decoded)


def pytest_terminal_summary_diffsit(reporter):
    if "odfte_1" in results:
        reporter.section("Diff-SIT tiny on CPU")
        one = results["odfte_1"]
        for k in (4, 20):
            if f"odfte_{k}" in results:
                reporter.write_line(f"ODFTE decode, 9 frames 128x128: {k} steps / 1 step = {results[f'odfte_{k}'] / one:.2f}x ({one * 1e3:.0f} ms for 1 step)")
    for version in ("before", "after", "after_compiled"):
        if f"odfte_720p_{version}_s" in results:
            reporter.section(f"ODFTE, one 9-frame 1280x720 window, {version} issue 19, {torch.get_num_threads()} threads")
            reporter.write_line(f"window: {results[f'odfte_720p_{version}_s']:.1f} s")
            for name, secs, calls, share in results[f"odfte_720p_{version}_ops"]:
                reporter.write_line(f"  {name:<52} {secs:7.2f} s  {100 * share:5.1f} %  {calls} calls")
    if "odfte_720p_before_s" in results and "odfte_720p_after_s" in results:
        reporter.write_line(f"after / before: {results['odfte_720p_after_s'] / results['odfte_720p_before_s']:.2f}")
    if "odfte_720p_after_s" in results and "odfte_720p_after_compiled_s" in results:
        reporter.write_line(
            f"torch.compile: {results['odfte_720p_after_compiled_s'] / results['odfte_720p_after_s']:.2f}x the eager window, "
            f"after a first run of {results['odfte_720p_compile_s']:.0f} s that compiles"
        )
    if "pframe_720p_conv2d" in results and "pframe_720p_gemm" in results:
        reporter.section(f"STEM P-frame decode, 1280x720, tiny-lambda1, {torch.get_num_threads()} threads")
        a, b = results["pframe_720p_conv2d"], results["pframe_720p_gemm"]
        reporter.write_line(f"exact convolutions as float64 conv2d: {a:.1f} s; as a GEMM per tap: {b:.1f} s ({b / a:.2f}x)")
    if "bbb_codec" in results:
        reporter.section("bigbuckbunny 1280x720, 9 frames, tiny-lambda1 through the codec")
        for phase, secs in results["bbb_codec"].items():
            reporter.write_line(f"  {phase:<24} {secs:6.1f} s")
    for k, v in results.items():
        if isinstance(v, tuple):
            reporter.write_line(f"{k:<22} encode {v[0]:6.2f} fps   STEM decode {v[1]:6.2f} fps   full decode (STEM + ODFTE) {v[2]:6.2f} fps")
