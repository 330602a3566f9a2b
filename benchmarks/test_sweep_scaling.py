"""The harness's own cost per job, and what a second worker buys, on the anchors' sample sweep
(results/golden/sample's configuration: x265 and vvenc, one thread each, 3 clips x 2 QPs,
9 frames).

- overhead: 1 - (sum of the jobs' encode + decode + metric seconds) / wall time, with one
  worker: planning, reading sources, the store's commits and table updates, and the process
  itself, as a share of the sweep;
- scaling: wall time with 1 worker / with 2 (local executor), with run_sweep called in this
  process (imports done, the pool's fork server warm after the first round), and with
  ``python -m bench run`` started afresh each time, as a user runs it (its imports, and the
  fork server's, included).

Printed at the end of the run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
results: dict[str, float] = {}


def _sweep(out: Path, jobs: int) -> tuple[float, float]:
    from bench.drift import Golden
    from bench.sweep import run_sweep

    cfg = Golden.load(ROOT / "results" / "golden" / "sample").sweep_config(out)
    cfg.jobs = jobs
    t = time.perf_counter()
    result = run_sweep(cfg)
    wall = time.perf_counter() - t
    assert result.ok
    work = sum(sum(r.get("timings", {}).values()) for r in result.parts[0].records)
    return wall, work


@pytest.mark.parametrize("jobs", [1, 2])
def test_sample_anchor_sweep(benchmark, tmp_path, jobs):
    walls = []

    def once():
        wall, work = _sweep(tmp_path / f"j{jobs}-{len(walls)}", jobs)
        walls.append((wall, work))

    benchmark.pedantic(once, rounds=2, warmup_rounds=0)
    wall = min(w for w, _ in walls)
    results[f"wall_{jobs}"] = wall
    if jobs == 1:
        work = min(k for _, k in walls)
        results["overhead"] = 1 - work / wall


def _cli_args(out: Path, jobs: int) -> list[str]:
    from bench.drift import Golden

    cfg = Golden.load(ROOT / "results" / "golden" / "sample").sweep_config(out)
    return ["run", "--codec", ",".join(cfg.codecs), "--dataset", cfg.dataset, "--rates", ",".join(map(str, cfg.rates))] + [
        *("--frames", str(cfg.frames), "--metrics", ",".join(cfg.metrics), "--jobs", str(jobs), "--out", str(out), "--quiet")
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_sample_anchor_sweep_cli(benchmark, tmp_path, jobs):
    walls = []

    def once():
        out = tmp_path / f"cli{jobs}-{len(walls)}"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", *_cli_args(out, jobs)], cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - t)

    benchmark.pedantic(once, rounds=2, warmup_rounds=0)
    results[f"cli_{jobs}"] = min(walls)


def pytest_terminal_summary_sweep(reporter):
    if "wall_1" in results:
        reporter.section("sweep scaling, anchors' sample sweep (results/golden/sample)")
        reporter.write_line(f"1 worker: {results['wall_1']:.1f} s, harness overhead {100 * results['overhead']:.1f} % of wall time")
        if "wall_2" in results:
            reporter.write_line(f"2 workers: {results['wall_2']:.1f} s, {results['wall_1'] / results['wall_2']:.2f}x one worker")
    if "cli_1" in results and "cli_2" in results:
        c1, c2 = results["cli_1"], results["cli_2"]
        reporter.write_line(f"python -m bench run, a fresh process each: --jobs 1 {c1:.1f} s, --jobs 2 {c2:.1f} s, {c1 / c2:.2f}x")
