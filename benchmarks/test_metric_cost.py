"""Per-frame cost of each metric on 1080p frames, on this machine's CPU.

Networks use random weights (built explicitly): the cost does not depend on the values.
Ewarp's cost is per frame pair (two flow estimates and a warp).
"""

from __future__ import annotations

import pytest
import torch
from conftest import H, W

from bench.metrics import create_metric, measure
from bench.video import read_yuv

FRAMES = 3
SPECS = {
    "psnr": {},
    "psnr_rgb": {},
    "ms_ssim_rgb": {},
    "lpips": {"random_weights": True},
    "dists": {"random_weights": True},
    "vmaf": {},
    "ewarp:flow=dis": {},
    # RAFT-large at 1080p takes minutes per frame pair on 2 CPU cores (a GPU job); the small
    # variant shows the order of magnitude
    "ewarp:flow=raft_small": {"random_weights": True},
}
costs: dict[str, float] = {}


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


def pytest_terminal_summary_metric_costs(reporter):  # called from conftest
    if costs:
        reporter.section(f"metric cost per 1080p frame ({FRAMES} frames, CPU; ewarp per frame pair)")
        for spec, sec in costs.items():
            reporter.write_line(f"{spec:<18} {sec * 1e3:10.1f} ms")
