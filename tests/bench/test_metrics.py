from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import pytorch_msssim
import torch
from support import random_video

from bench.metrics import MetricError, UnknownMetric, create_metric, measure, resolve_metrics
from bench.metrics.fidelity import PSNR_MAX, ms_ssim, psnr
from bench.video import read_yuv, write_yuv


def _ffmpeg_psnr(exe, ref_path, dist_path, w, h, tmp_path):
    stats = tmp_path / "psnr.log"
    # run from tmp_path with a relative stats name: the filter-graph syntax would need
    # escaping for an absolute path, and this keeps the test about the numbers
    subprocess.run(
        [
            exe,
            "-hide_banner",
            "-nostdin",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{w}x{h}",
            "-i",
            str(dist_path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{w}x{h}",
            "-i",
            str(ref_path),
            "-lavfi",
            "psnr=stats_file=psnr.log",
            "-f",
            "null",
            "-",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    rows = []
    for line in stats.read_text().splitlines():
        vals = dict(re.findall(r"(\w+):(\S+)", line))
        rows.append([float(vals[f"psnr_{p}"]) for p in "yuv"])
    return np.array(rows)


def test_psnr_agrees_with_ffmpeg_psnr_filter_on_a_decoded_anchor(ffmpeg_exe, synthetic, tmp_path):
    from bench.codec import create_codec

    seq = synthetic["testsrc2"]
    ref = seq.open(frames=5)
    codec = create_codec("x265", preset="ultrafast")
    dist = codec.decode(codec.encode(ref, 40, tmp_path).bitstream, tmp_path)
    ref_path = write_yuv(ref, tmp_path / "ref.yuv")
    dist_path = write_yuv(dist, tmp_path / "dist.yuv")
    theirs = _ffmpeg_psnr(ffmpeg_exe, ref_path, dist_path, ref.width, ref.height, tmp_path)
    ours = measure(read_yuv(ref_path, ref.width, ref.height), read_yuv(dist_path, ref.width, ref.height), [create_metric("psnr")])
    assert theirs.shape == (5, 3)
    for i, p in enumerate("yuv"):
        np.testing.assert_allclose(ours[f"psnr_{p}"], theirs[:, i], atol=0.01)
    np.testing.assert_allclose(ours["psnr_yuv"], (6 * ours["psnr_y"] + ours["psnr_u"] + ours["psnr_v"]) / 8)
    assert 25 < ours["psnr_y"].mean() < 45


def test_psnr_10bit_uses_10bit_peak():
    ref = random_video(frames=1, bit_depth=10, seed=1)
    dist = ref.copy()
    dist.y[...] = np.clip(dist.y.astype(int) + 4, 0, 1023)
    vals = create_metric("psnr").compute(__import__("bench.metrics", fromlist=["FrameBatch"]).FrameBatch(ref, dist, 0, 1))
    mse = np.mean((ref.y.astype(float) - dist.y) ** 2)
    assert vals["psnr_y"][0] == pytest.approx(10 * np.log10(1023**2 / mse))


def test_identical_frames():
    v = random_video(frames=2, height=192, width=192, seed=4)
    out = measure(v, v.copy(), [create_metric(m) for m in ("psnr", "psnr_rgb", "ms_ssim_rgb")])
    assert np.all(out["psnr_y"] == PSNR_MAX) and np.all(out["psnr_rgb"] == PSNR_MAX)
    np.testing.assert_allclose(out["ms_ssim_rgb"], 1.0, atol=1e-12)


def test_the_one_psnr_helper_agrees_with_the_metric_and_caps_zero_error():
    ref, dist = random_video(frames=1, seed=1), random_video(frames=1, seed=2)
    out = measure(ref, dist, [create_metric("psnr_rgb")])
    assert psnr(ref.rgb(), dist.rgb()) == pytest.approx(out["psnr_rgb"][0], abs=1e-9)
    assert psnr(ref.rgb(), ref.rgb()) == PSNR_MAX  # never inf: one zero-error convention
    assert psnr(torch.zeros(4), torch.full((4,), 2.0), peak=255.0) == pytest.approx(10 * np.log10(255.0**2 / 4))


def test_psnr_rgb_is_over_all_rgb_samples():
    ref, dist = random_video(frames=2, seed=1), random_video(frames=2, seed=2)
    out = measure(ref, dist, [create_metric("psnr_rgb")])
    a, b = ref.rgb().double(), dist.rgb().double()
    expected = [10 * np.log10(1 / ((a[i] - b[i]) ** 2).mean().item()) for i in range(2)]
    np.testing.assert_allclose(out["psnr_rgb"], expected, rtol=1e-7)


def test_ms_ssim_equals_pytorch_msssim_on_large_frames():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 256, 320, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ms_ssim(x, y).mean(dim=1)
    theirs = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_cpu_ssim_kernel_equals_torch_convolutions():
    from bench._kernels import ssim_cs
    from bench.metrics.fidelity import _K1, _K2, _gaussian, _ssim_cs

    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 40, 57, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    win = _gaussian()
    s_t, cs_t = _ssim_cs(x, y, win)
    s_k, cs_k = ssim_cs(x[:, 0].numpy(), y[:, 0].numpy(), win.numpy(), _K1**2, _K2**2)
    np.testing.assert_allclose(s_k, s_t.numpy(), rtol=1e-12)
    np.testing.assert_allclose(cs_k, cs_t.numpy(), rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 40, 57), (3, 41, 55), (1, 129, 100)])
def test_cpu_ssim_kernel_halves_in_the_same_pass_whatever_the_strips(shape):
    """The next scale's 2x2 means come out of the SSIM pass equal to a separate 2x2 mean
    (torch's replicate-padded avg_pool, DCVC's filter), and strips change nothing."""
    from bench._kernels import halve, ssim_cs
    from bench.metrics.fidelity import _K1, _K2, _gaussian, _halve

    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.rand(shape, generator=g).float()  # float32 frames are read as they are
    win = _gaussian().numpy()
    half = (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2)
    base = ssim_cs(x.numpy(), y.numpy(), win, _K1**2, _K2**2)
    for strip in (2, 8, 64):
        hx, hy = np.full(half, np.nan), np.full(half, np.nan)
        got = ssim_cs(x.numpy(), y.numpy(), win, _K1**2, _K2**2, halves=(hx, hy), strip=strip)
        assert all(np.array_equal(a, b) for a, b in zip(got, base))
        assert np.array_equal(hx, halve(x.numpy())) and np.array_equal(hy, halve(y.numpy()))
    np.testing.assert_allclose(hx, _halve(x[:, None])[:, 0].numpy(), rtol=1e-15)
    np.testing.assert_allclose(hy, _halve(y.double()[:, None])[:, 0].numpy(), rtol=1e-15)


def test_ms_ssim_small_frames_use_four_scales():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 144, 176, generator=g, dtype=torch.float64)  # QCIF: carphone
    y = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    v = ms_ssim(x, y)
    assert v.shape == (1, 3) and torch.all((v > 0) & (v < 1))
    with pytest.raises(MetricError, match="at least 88x88"):
        ms_ssim(x[..., :80, :80], y[..., :80, :80])


def test_mismatched_videos_are_a_clear_error():
    a = random_video(frames=3, height=64, width=96)
    with pytest.raises(MetricError, match="3 frames of 96x64 but the distorted video is 2 frames of 96x64"):
        measure(a, a[0:2], [create_metric("psnr")])
    with pytest.raises(MetricError, match="cannot be compared"):
        measure(a, random_video(frames=3, height=64, width=64), [create_metric("psnr")])


def test_non_finite_values_are_failures_not_averages():
    from bench.metrics import Metric

    class Broken(Metric):
        name, columns = "broken", ("broken",)

        def compute(self, batch):
            return {"broken": np.array([1.0, np.nan, np.inf])[: len(batch)]}

    a = random_video(frames=3)
    with pytest.raises(MetricError, match=r"broken at frames \[1, 2\]"):
        measure(a, a, [Broken()], batch=3)


def test_metric_names_and_columns():
    assert resolve_metrics(["psnr_y", "psnr_u", "ms_ssim_rgb"]) == ["psnr", "ms_ssim_rgb"]
    with pytest.raises(UnknownMetric, match="psnr_y"):
        resolve_metrics(["nope"])
