"""Perceptual and temporal metrics, offline, with random weights built explicitly."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from support import random_video

from bench import weights
from bench.cli import main
from bench.metrics import MetricUnavailable, create_metric, measure
from bench.metrics.temporal import occlusion_mask, warp, warp_error
from bench.video import rgb_to_yuv420


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and no --weights folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.ENV, raising=False)
    return tmp_path


def _pair(seed=0, h=96, w=128):
    ref = random_video(frames=3, height=h, width=w, seed=seed)
    dist = ref.copy()
    rng = np.random.default_rng(seed + 1)
    dist.y[...] = np.clip(dist.y.astype(int) + rng.integers(-20, 21, dist.y.shape), 0, 255)
    return ref, dist


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_wrapper_equals_the_reference_network_on_the_same_random_weights(name):
    torch.manual_seed(0)
    metric = create_metric(name, random_weights=True)
    ref, dist = _pair()
    ours = measure(ref, dist, [metric], batch=2)[name]
    x, y = ref.rgb(), dist.rgb()
    with torch.no_grad():
        if name == "lpips":
            direct = metric.net(x * 2 - 1, y * 2 - 1).reshape(-1)  # lpips.LPIPS on [-1, 1]
        else:
            direct = metric.net(x, y, batch_average=False).reshape(-1)  # DISTS on [0, 1]
    np.testing.assert_allclose(ours, direct.double().numpy(), rtol=1e-5, atol=1e-7)
    assert np.all(ours > 0)
    same = measure(ref, ref.copy(), [metric])[name]
    np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_lpips_is_the_lpips_package_v01_alex_with_its_own_linear_layers():
    import lpips

    m = create_metric("lpips", random_weights=True)
    assert isinstance(m.net, lpips.LPIPS) and m.net.version == "0.1" and m.net.pnet_type == "alex"
    shipped = torch.load(resources.files("lpips") / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    assert torch.equal(m.net.state_dict()["lin0.model.1.weight"], shipped["lin0.model.1.weight"])


def test_dists_reads_alpha_beta_from_the_package_not_sys_prefix():
    m = create_metric("dists", random_weights=True)
    ab = torch.load(resources.files("DISTS_pytorch") / "weights.pt", map_location="cpu", weights_only=True)
    assert torch.equal(m.net.alpha, ab["alpha"]) and torch.equal(m.net.beta, ab["beta"])


def test_backbone_weights_are_loaded_from_the_located_file(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(3)
    state = torchvision.models.alexnet(weights=None).state_dict()
    (tmp_path / "w").mkdir()
    torch.save(state, tmp_path / "w" / weights.WEIGHTS["alexnet"].filename)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weights.ENV, str(tmp_path / "w"))
    m = create_metric("lpips")
    m.check()
    assert torch.equal(m.net.net.slice1[0].weight, state["features.0.weight"])


@pytest.mark.parametrize("name, key", [("lpips", "alexnet"), ("dists", "vgg16")])
def test_missing_weights_say_which_file_and_where(no_weights, name, key):
    with pytest.raises(MetricUnavailable) as e:
        create_metric(name).check()
    msg = str(e.value)
    assert weights.WEIGHTS[key].filename in msg and "hub/checkpoints" in msg and "--weights" in msg


def test_missing_weights_fail_at_plan_time_and_defaults_skip_them(no_weights, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(
        ["run", "--codec", "x265:preset=ultrafast", "--dataset", "synthetic", "--frames", "2", "--rates", "40", "--out", str(out), "--metrics", "psnr,lpips"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and "doctor" in err
    assert not list(out.rglob("*.hevc"))
    # without --metrics: what can run runs, and the manifest says what was skipped and why
    rc = main(
        [
            "run",
            "--codec",
            "x265:preset=ultrafast",
            "--dataset",
            "synthetic",
            "--sequences",
            "testsrc2",
            "--frames",
            "3",
            "--rates",
            "40",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    prov = json.loads((out / "manifest.json").read_text())["provenance"]
    assert "alexnet-owt-7be5be79.pth" in prov["metrics_skipped"]["lpips"] and "dists" in prov["metrics_skipped"]
    import pandas as pd

    s = pd.read_csv(out / "summary.csv")
    assert {"psnr_yuv", "vmaf", "ewarp"} <= set(s.columns) and "lpips" not in s.columns
    f = pd.read_csv(out / "frames.csv")
    assert np.isnan(f.ewarp[0]) and np.isfinite(f.ewarp[1:]).all()  # a frame-pair metric
    job = next(iter(json.loads((out / "manifest.json").read_text())["jobs"]))
    rec = json.loads((out / "jobs" / f"{job}.json").read_text())
    assert rec["metrics"]["ewarp"]["flow"] == "dis" and "decoded" in rec["metrics"]["ewarp"]["flow_on"]


def test_doctor_lists_every_weights_file(no_weights, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for wf in weights.WEIGHTS.values():
        assert wf.filename in out
    assert "MISSING" in out and "lpips" in out and "cannot run" in out


# --- Ewarp --------------------------------------------------------------------------------


def test_occlusion_mask_on_hand_built_flows():
    h, w = 8, 10
    fw = torch.zeros(1, 2, h, w)
    fw[:, 0] = 2.0
    bw = torch.zeros(1, 2, h, w)
    bw[:, 0] = -2.0
    assert not occlusion_mask(fw, bw).any()  # consistent forward/backward motion
    bw_bad = torch.zeros(1, 2, h, w)  # backward flow says "did not move"
    assert occlusion_mask(fw, bw_bad).all()  # |F + B~|^2 = 4 > 0.01 * 4 + 0.5
    # a motion boundary: left half still, right half moving 5 px right (and back)
    fw2 = torch.zeros(1, 2, h, w)
    fw2[..., 5:] = torch.tensor([5.0, 0.0]).view(1, 2, 1, 1)
    mask = occlusion_mask(fw2, -fw2)
    # forward difference fw[:, 4] - fw[:, 5] = -5 gives |grad|^2 = 25 > 0.01 |F|^2 + 0.002 at column 4
    assert mask[0, :, 4].all() and not mask[0, :, :4].any()
    # right of the step, B~ = -F sampled 5 px further right is still -F: consistent, except
    # where the sample is clamped at the border
    consistent = ~_consistency_only(fw2, -fw2)
    assert not mask[0, :, 5:][consistent[:, 5:]].any()


def _consistency_only(fw, bw):
    bw_w = warp(bw, fw)
    mag = lambda f: f[:, 0] ** 2 + f[:, 1] ** 2
    return (mag(fw + bw_w) > 0.01 * (mag(fw) + mag(bw_w)) + 0.5)[0]


def _panning_clip(frames=6, d=(3, 2), flicker=0.0):
    """Shifted crops of a real still image (a frame of the sample clip)."""
    from bench.datasets import DATASETS

    still = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"].open(frames=1, start=60).rgb()[0]
    h, w = 128, 160
    crops = []
    for t in range(frames):
        y0, x0 = 100 + t * d[1], 200 + t * d[0]
        c = still[:, y0 : y0 + h, x0 : x0 + w]
        crops.append((c + (flicker if t % 2 else -flicker)).clamp(0, 1))
    return torch.stack(crops)


def test_ewarp_is_about_zero_for_exact_motion():
    rgb = _panning_clip()
    d = torch.tensor([3.0, 2.0]).view(1, 2, 1, 1)
    fw = (-d).expand(1, 2, *rgb.shape[-2:]).contiguous()  # frame t-1 -> t: content moves by -d
    errs = [float(warp_error(rgb[t - 1 : t], rgb[t : t + 1], fw, -fw)) for t in range(1, len(rgb))]
    assert max(errs) < 5e-4  # only the border rows/columns, clamped by the warp, differ
    flick = _panning_clip(flicker=0.05)
    errs_f = [float(warp_error(flick[t - 1 : t], flick[t : t + 1], fw, -fw)) for t in range(1, len(flick))]
    assert min(errs_f) > 20 * max(errs)
    assert min(errs_f) == pytest.approx(0.01, rel=0.2)  # a 0.1 step between frames: 0.1^2, less clipping


def test_cpu_warp_kernel_is_the_torch_definition():
    """The fused CPU pass equals warp_error() (grid_sample, occlusion_mask) on DIS flows of
    a real pan, on hand-built flows, and where every pixel is occluded (E = 0)."""
    from bench._kernels import warp_error_cpu
    from bench.metrics.temporal import _DIS

    clip = rgb_to_yuv420(_panning_clip(frames=3, flicker=0.02))
    rgb = clip.rgb()
    dis = _DIS()
    fw, bw = dis.flows(dis.luma(clip, 0), dis.luma(clip, 1))
    as_t = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None]
    ours = warp_error_cpu(rgb[0].numpy(), rgb[1].numpy(), fw, bw)
    theirs = float(warp_error(rgb[:1], rgb[1:2], as_t(fw), as_t(bw))[0])
    assert ours == pytest.approx(theirs, rel=1e-5) and ours > 0
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 3, 37, 53, generator=g)
    f = torch.full((1, 2, 37, 53), 1.5)
    f[:, :, :, 30:] = torch.tensor([-2.0, 0.5]).view(1, 2, 1, 1)  # a motion boundary
    for fw_t, bw_t in ((f, -f), (f, torch.zeros_like(f)), (torch.randn(1, 2, 37, 53, generator=g) * 3, torch.randn(1, 2, 37, 53, generator=g) * 3)):
        want = float(warp_error(x, y, fw_t, bw_t)[0])
        got = warp_error_cpu(x[0].numpy(), y[0].numpy(), fw_t[0].numpy(), bw_t[0].numpy())  # (2, H, W) flows too
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("on", ["decoded", "source"])
def test_ewarp_does_not_depend_on_the_batches(on):
    """Pairs that straddle two batches take frame start-1 from the previous batch."""
    clip = rgb_to_yuv420(_panning_clip(frames=6))
    flick = rgb_to_yuv420(_panning_clip(frames=6, flicker=0.03))
    m = create_metric(f"ewarp:flow=dis:on={on}")
    one = measure(clip, flick, [m], batch=6)["ewarp"]
    assert np.isnan(one[0]) and np.all(one[1:] > 0)
    for b in (1, 2, 4):
        np.testing.assert_array_equal(measure(clip, flick, [m], batch=b)["ewarp"], one)
    np.testing.assert_array_equal(m.compute_sequence(clip, flick)["ewarp"], one)


def test_ewarp_dis_fast_is_a_separate_labelled_flow():
    clip = rgb_to_yuv420(_panning_clip(frames=3))
    fast, medium = create_metric("ewarp:flow=dis_fast"), create_metric("ewarp:flow=dis")
    assert fast.identity()["flow"] == "dis_fast" and fast.identity() != medium.identity()
    vals = measure(clip, clip, [fast])["ewarp"]
    assert np.isnan(vals[0]) and np.isfinite(vals[1:]).all()
    assert "fast preset" in fast.describe()["flow_backend"]
    assert medium.backend.label == "OpenCV DIS (medium preset) on luma"  # what flow=dis always was


def test_ewarp_metric_rises_with_flicker():
    clip = rgb_to_yuv420(_panning_clip())
    flick = rgb_to_yuv420(_panning_clip(flicker=0.05))
    m = create_metric("ewarp:flow=dis")
    steady = measure(clip, clip, [m])["ewarp"]
    flickery = measure(flick, flick, [m])["ewarp"]
    assert np.isnan(steady[0]) and np.isnan(flickery[0])
    assert np.nanmean(steady) < 1.0  # x1e-3: a clean pan, estimated flow
    assert np.nanmean(flickery) > 3 * np.nanmean(steady)


def test_ewarp_raft_plumbing_with_random_weights():
    """RAFT with random weights gives meaningless flow (so every pixel may be occluded and
    E = 0, as the reference defines it); this checks shapes, padding to /8 and labels."""
    torch.manual_seed(0)
    clip = rgb_to_yuv420(_panning_clip(frames=3)[..., :100, :150])  # not a multiple of 8
    m = create_metric("ewarp:flow=raft_small", random_weights=True)
    flow = m.backend(clip, 0, 1, "cpu")
    assert flow.shape == (1, 2, 100, 150) and torch.isfinite(flow).all()
    vals = m.compute_sequence(clip, clip)["ewarp"]
    assert np.isnan(vals[0]) and np.isfinite(vals[1:]).all()
    assert "RAFT-small" in m.describe()["flow_backend"]


def test_ewarp_flow_on_source_or_decoded():
    clip = rgb_to_yuv420(_panning_clip(frames=3))
    flick = rgb_to_yuv420(_panning_clip(frames=3, flicker=0.05))
    on_src = create_metric("ewarp:flow=dis:on=source").compute_sequence(clip, flick)["ewarp"]
    on_dec = create_metric("ewarp:flow=dis:on=decoded").compute_sequence(clip, flick)["ewarp"]
    assert np.isfinite(on_src[1:]).all() and np.isfinite(on_dec[1:]).all()
    with pytest.raises(ValueError, match="on= must be"):
        create_metric("ewarp:on=reference")


# --- VMAF ---------------------------------------------------------------------------------


def test_vmaf_identical_is_about_100_and_an_anchor_is_lower(synthetic, tmp_path):
    from bench.codec import create_codec

    ref = synthetic["testsrc2"].open(frames=4)
    same = create_metric("vmaf").compute_sequence(ref, ref)["vmaf"]
    assert len(same) == 4 and np.all(same > 97)
    codec = create_codec("x265", preset="ultrafast")
    dist = codec.decode(codec.encode(ref, 45, tmp_path).bitstream, tmp_path)
    coded = create_metric("vmaf").compute_sequence(ref, dist)["vmaf"]
    assert np.all(coded < same - 5)


def test_vmaf_models_and_upscaling_are_options_with_their_own_columns(synthetic, tmp_path):
    from bench.codec import create_codec
    from bench.metrics import resolve_metrics

    ref = synthetic["testsrc2"].open(frames=3)  # 352x288: below 1080p
    codec = create_codec("x265", preset="ultrafast")
    dist = codec.decode(codec.encode(ref, 40, tmp_path).bitstream, tmp_path)
    got = {}
    for spec in ("vmaf", "vmaf:model=neg", "vmaf:model=4k", "vmaf:scale=1080p"):
        m = create_metric(spec)
        ((col, values),) = m.compute_sequence(ref, dist).items()
        got[col] = float(np.mean(values))
        assert m.identity()["model"] in ("vmaf_v0.6.1", "vmaf_v0.6.1neg", "vmaf_4k_v0.6.1")
    assert set(got) == {"vmaf", "vmaf_neg", "vmaf_4k", "vmaf_1080p"}
    # neg never credits enhancement; the 4k model assumes a closer view of a bigger picture;
    # upscaling a small picture to the default model's 1080p shows its blur
    assert got["vmaf_neg"] <= got["vmaf"] < got["vmaf_4k"] and got["vmaf_1080p"] < got["vmaf"]
    assert "scale" not in create_metric("vmaf").identity()  # results measured before keep their key
    assert create_metric("vmaf:scale=1080p").identity()["scale"] == "1080p"
    assert resolve_metrics(["vmaf_neg_1080p"]) == ["vmaf:model=neg:scale=1080p"]
    with pytest.raises(ValueError, match="vmaf model 'hd': one of default, neg, 4k"):
        create_metric("vmaf:model=hd")
