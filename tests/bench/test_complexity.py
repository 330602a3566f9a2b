"""Complexity and timing as results (issue 35): learned codecs' jobs count MACs per pixel with
one declared method, and every job's per-frame times say what they include."""

from __future__ import annotations

import re

import pytest
import torch

from bench.complexity import counted
from bench.config import SweepConfig
from bench.sweep import run_sweep


def test_a_convolution_counts_its_macs():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    with counted(True) as c:
        conv(torch.randn(1, 3, 16, 16))
    assert c.flops == 2 * (8 * 3 * 9 * 16 * 16)  # 2 FLOPs a MAC
    assert c.kmac_per_pixel(16 * 16) == pytest.approx(8 * 3 * 9 / 1000)
    with counted(False) as off:
        conv(torch.randn(1, 3, 16, 16))
    assert off.flops == 0


def test_learned_jobs_report_kmac_per_pixel_and_anchors_their_times(tmp_path):
    base = dict(dataset="synthetic", sequences=["testsrc2"], frames=2, metrics=["psnr"], progress=False)
    learned = run_sweep(
        SweepConfig.from_dict({**base, "codecs": ["bmshj2018-hyperprior:random_weights_for_tests=true"], "rates": ["1"], "out": str(tmp_path / "l")})
    )
    (rec,) = learned.parts[0].records
    s = rec["summary"]
    assert s["encode_kmac_per_px"] > 1 and s["decode_kmac_per_px"] > 1  # a hyperprior model is tens of kMAC/px
    assert s["encode_s_per_frame"] == pytest.approx(s["encode_s"] / 2, abs=1e-3)
    assert "FlopCounterMode" in rec["cost"]["method"] and rec["cost"]["torch_threads"] >= 1 and rec["cost"]["cpu"]
    anchor = run_sweep(SweepConfig.from_dict({**base, "codecs": ["x265:preset=ultrafast"], "rates": ["40"], "out": str(tmp_path / "a")}))
    s = anchor.parts[0].records[0]["summary"]
    assert "encode_kmac_per_px" not in s and s["decode_s_per_frame"] > 0


def _kmac(line: str, part: str) -> float:
    m = re.search(rf"{part} ([0-9.]+) kMAC/px, ([0-9.]+) s/frame", line)
    assert m, f"no {part} figures in {line!r}"
    return float(m.group(1))


def test_bench_codecs_states_both_directions_of_every_runnable_learned_codec(capsys):
    """Diff-SIT's decoder is measured as a receiver runs it (ODFTE included): the sweep's
    encoder keeps ODFTE's output for its own decoder, which would show 0 kMAC/px here."""
    from bench.cli import main

    assert main(["codecs", "--complexity", "64x64"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    (i,) = [k for k, line in enumerate(lines) if line.startswith("diffsit ")]
    if " ok " not in lines[i]:
        pytest.skip(f"Diff-SIT cannot run here: {lines[i]}")
    assert _kmac(lines[i + 1], "encode") > 0 and _kmac(lines[i + 1], "decode") > 0
    assert "complexity: kMAC/pixel: torch FlopCounterMode" in out


def test_a_compressai_model_has_its_complexity_line():
    from bench.cli import _complexity_line
    from bench.codec import create_codec

    make = lambda: create_codec("bmshj2018-hyperprior", random_weights_for_tests=True)
    line = _complexity_line(make(), make(), 64, 64)
    assert _kmac(line, "encode") > 1 and _kmac(line, "decode") > 1


def test_the_reports_cost_table_takes_only_what_was_measured_here():
    """Imported rows (published timings, another machine) are left out; a missing size, a
    missing or zero frame count and text in a number column neither crash nor count."""
    import pandas as pd

    from bench.complexity import cost_table

    rows = [
        {"results_dir": "r", "codec": "x265", "frames": 2, "width": 64, "height": 64, "encode_s_per_frame": 1.0, "decode_s_per_frame": 0.5},
        {"results_dir": "r", "codec": "x265", "frames": 6, "width": 64, "height": 64, "encode_s_per_frame": 3.0, "decode_s_per_frame": "<b>"},
        {"results_dir": "r", "codec": "x265", "frames": 0, "width": None, "height": None, "encode_s_per_frame": 99.0},
        {"results_dir": "p", "codec": "DCVC-FM", "frames": 96, "width": None, "height": None, "encode_s_per_frame": 0.2, "imported": True},
    ]
    (row,) = cost_table(pd.DataFrame(rows))
    assert row["codec"] == "x265" and row["jobs"] == 2 and row["sizes"] == "64x64"
    assert row["values"]["encode_s_per_frame"] == pytest.approx((2 * 1.0 + 6 * 3.0) / 8)
    assert row["values"]["decode_s_per_frame"] == pytest.approx(0.5)
    assert cost_table(pd.DataFrame(rows[3:])) == []
