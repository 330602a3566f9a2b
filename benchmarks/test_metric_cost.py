"""Per-frame cost of each metric on 1080p frames, on this machine's CPU, and of the default
metric set measured together, against ffmpeg doing the work it can in the same run.

Networks use random weights (built explicitly): the cost does not depend on the values.
Ewarp's cost is per frame pair (two flow estimates and a warp).

The default set is what ``bench run`` measures on a machine without network weights: psnr,
psnr_rgb, ms_ssim_rgb, vmaf, ewarp with DIS flow, all in one ``measure()`` call (so shared
work, such as the RGB conversion, is counted once); it is timed again with
``ewarp:flow=dis_fast`` in place of ``flow=dis``. Its ffmpeg peer is one ffmpeg pass over
the same raw files: libvmaf's vmaf model with its ``psnr`` and ``float_ms_ssim`` features
(luma only; ffmpeg has no PSNR-RGB, RGB MS-SSIM or flow-warping error). The single-metric
peers are the ``psnr`` and ``ssim`` filters and libvmaf alone. Beside the wall times the
summary gives CPU seconds (all threads, children included), which a busy machine moves less.
"""

from __future__ import annotations

import os
import resource
import subprocess

import pytest
import torch
from conftest import H, W

from bench.metrics import create_metric, measure
from bench.video import read_yuv

FRAMES = 3
#: frames of the default-set comparison: enough that ffmpeg's start is a small part
SET_FRAMES = 12
DEFAULT_SET = ("psnr", "psnr_rgb", "ms_ssim_rgb", "vmaf", "ewarp:flow=dis")
#: the default set's Ewarp, and the cheaper flow in its place
SET_FLOWS = ("dis", "dis_fast")
SPECS = {
    "psnr": {},
    "psnr_rgb": {},
    "ms_ssim_rgb": {},
    "lpips": {"random_weights": True},
    "dists": {"random_weights": True},
    "vmaf": {},
    "ewarp:flow=dis": {},
    "ewarp:flow=dis_fast": {},
    # RAFT-large at 1080p takes minutes per frame pair on 2 CPU cores (a GPU job); the small
    # variant shows the order of magnitude
    "ewarp:flow=raft_small": {"random_weights": True},
}
RAW = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}"]
FFMPEG_PEERS = {
    "psnr filter": "[0:v][1:v]psnr",
    "ssim filter": "[0:v][1:v]ssim",
    "libvmaf vmaf": "[0:v][1:v]libvmaf=n_threads={threads}",
    "libvmaf vmaf+psnr+float_ms_ssim": "[0:v][1:v]libvmaf=n_threads={threads}:feature=name=psnr|name=float_ms_ssim",
}
costs: dict[str, float] = {}
peers: dict[str, float] = {}
#: CPU seconds a frame (this process and its children, all threads), beside the wall times:
#: on a shared machine the wall time depends on the load, the CPU time much less
cpu: dict[str, float] = {}


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.mark.parametrize("spec", list(SPECS))
def test_metric_cost_1080p(benchmark, clips, spec):
    _, ref_path, dist_path = clips
    torch.manual_seed(0)
    metric = create_metric(spec, **SPECS[spec])
    slow = "raft" in spec or "dists" in spec
    n = 2 if "raft" in spec else FRAMES
    ref, dist = read_yuv(ref_path, W, H, frames=n), read_yuv(dist_path, W, H, frames=n)
    if not slow:
        measure(ref[:2], dist[:2], [metric])  # compile kernels outside the timing
    elif hasattr(metric, "net"):
        _ = metric.net  # build the network outside the timing
    benchmark.pedantic(measure, args=(ref, dist, [metric]), kwargs={"batch": n}, rounds=1 if slow else 3)
    per = benchmark.stats.stats.median / (n - 1 if spec.startswith("ewarp") else n)
    costs[spec] = per


@pytest.mark.parametrize("flow", SET_FLOWS)
def test_default_set_1080p(benchmark, clips, flow):
    """The default metric set in one measure() call, as a sweep job runs it (batch 4)."""
    _, ref_path, dist_path = clips
    metrics = [create_metric(s.replace("flow=dis", f"flow={flow}")) for s in DEFAULT_SET]
    ref, dist = read_yuv(ref_path, W, H, frames=SET_FRAMES), read_yuv(dist_path, W, H, frames=SET_FRAMES)
    measure(ref[:2], dist[:2], metrics)  # compile kernels outside the timing
    c0 = _cpu_seconds()
    benchmark.pedantic(measure, args=(ref, dist, metrics), rounds=3)
    costs[f"default set, {flow}"] = benchmark.stats.stats.median / SET_FRAMES
    cpu[f"default set, {flow}"] = (_cpu_seconds() - c0) / 3 / SET_FRAMES


@pytest.mark.parametrize("peer", list(FFMPEG_PEERS))
def test_ffmpeg_peer_1080p(benchmark, clips, peer):
    exe, ref_path, dist_path = clips
    graph = FFMPEG_PEERS[peer].format(threads=os.cpu_count() or 1)
    cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", *RAW, "-i", str(dist_path), *RAW, "-i", str(ref_path)]
    cmd += ["-frames:v", str(SET_FRAMES), "-lavfi", graph, "-f", "null", "-"]
    c0 = _cpu_seconds()
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True, "capture_output": True}, rounds=3, warmup_rounds=1)
    peers[peer] = benchmark.stats.stats.median / SET_FRAMES
    cpu[peer] = (_cpu_seconds() - c0) / 4 / SET_FRAMES


def pytest_terminal_summary_metric_costs(reporter):  # called from conftest
    if costs:
        reporter.section(f"metric cost per 1080p frame ({FRAMES} frames, default set {SET_FRAMES}; CPU, {os.cpu_count()} cores; ewarp per frame pair)")
        for spec, sec in costs.items():
            extra = f"   ({cpu[spec] * 1e3:.1f} ms of CPU)" if spec in cpu else ""
            reporter.write_line(f"{spec:<22} {sec * 1e3:10.1f} ms{extra}")
    if peers:
        reporter.section(f"ffmpeg on the same {SET_FRAMES} frames of 1080p, per frame (process start included)")
        for peer, sec in peers.items():
            reporter.write_line(f"{peer:<33} {sec * 1e3:8.1f} ms   ({cpu[peer] * 1e3:.1f} ms of CPU)")
        full = "libvmaf vmaf+psnr+float_ms_ssim"
        for flow in SET_FLOWS:
            ours = f"default set, {flow}"
            if full in peers and ours in costs:
                reporter.write_line(f"default set ({flow}) / {full}: {costs[ours] / peers[full]:.2f}x wall, {cpu[ours] / cpu[full]:.2f}x CPU")
