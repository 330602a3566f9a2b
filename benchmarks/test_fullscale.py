"""Full-scale Diff-SIT (1080p x 96 frames, Wan2.1-1.3B shapes, random weights): peak memory
and time of encode and decode, measured on CUDA and estimated on CPU (``diffsit.experiments.fullscale``
states the method). The report is printed at the end and written to .benchmarks/fullscale.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

report: dict = {}


def test_fullscale_memory_and_time():
    from diffsit.experiments.fullscale import run

    report.update(run())
    out = Path(".benchmarks") / "fullscale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    assert report["decode"]["seconds"] > 0


def pytest_terminal_summary_fullscale(reporter):
    if report:
        kind = "measured" if report["decode"]["measured"] else "estimated"
        reporter.section(f"Diff-SIT full scale, {report['size']} x {report['frames']} frames, {report['device']} ({kind})")
        for phase in ("encode", "decode"):
            r = report[phase]
            peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a"
            reporter.write_line(f"{phase}: {r['seconds']:.0f} s, peak {peak}")
