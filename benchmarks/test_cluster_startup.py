"""What a job costs on a cluster besides its own work: a Slurm job (a new process each time:
Python, submitit, the imports of torch and the harness, numba's cached kernels, then the
result file) beside a warm Ray worker (its imports paid by earlier jobs).

Each engine runs 12 small real jobs (x265 at one thread on 2 frames of the synthetic clip,
PSNR) after a warm-up run of the same jobs, so imports come from a warm page cache and numba
loads its compiled kernels from $NUMBA_CACHE_DIR instead of compiling them. A job's own work
is its encode + decode + metrics seconds (``record["timings"]``); what else a CPU slot spends
on it is its overhead:

- Slurm, per job: the process's start to its result file, less the work (``start-up`` alone:
  the process's start to the job's code), from timestamps the job takes
  (benchmarks/cluster_timing.py) and the result file's time. Slurm's own launch of the
  process and its scheduling between jobs come on top;
- Ray, per warm job (each worker's first job left out): the previous job's return to this
  job's return on one worker, less the work;
- both: the sweep's wall time per job and CPU slot, less the work.

Needs a Slurm cluster (.ci/cluster-up); the Ray half runs anywhere. Printed at the end."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JOBS, SLOTS = 12, 2
results: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def job_env():
    """The jobs import this checkout and the timing helper."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
        sys.path.insert(0, str(HERE))
        yield


def _jobs(out: Path):
    from bench.datasets import get_dataset
    from bench.plan import plan

    seqs = get_dataset("synthetic").resolve(None, ["testsrc2"])
    rates = [str(q) for q in range(22, 22 + JOBS)]
    return plan(codecs=[("x265", {"threads": 1})], dataset="synthetic", sequences=seqs, rates=rates, frames=2, metrics=["psnr"], device="cpu", out=out).jobs


def _run(executor, out: Path) -> tuple[list[dict], float]:
    from cluster_timing import Timed

    from bench.jobs import run_job

    t = time.time()
    try:
        records = [res.record for _, res in executor.run(Timed(run_job), _jobs(out))]
    finally:
        executor.close()
    assert all(r["status"] == "done" for r in records), [r.get("error") for r in records]
    return records, time.time() - t


def _work(record: dict) -> float:
    """The job's own work: encode, decode, metrics."""
    return sum(record["timings"].values())


def _slurm_absent() -> str | None:
    """(Asked with sinfo itself: the benchmark also measures the code before bench.executors.slurm.)"""
    import subprocess

    try:
        ok = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return None if ok else "no Slurm cluster here: .ci/cluster-up brings one up"


def test_slurm_job_startup(benchmark, tmp_path):
    reason = _slurm_absent()
    if reason:
        pytest.skip(reason)
    import pickle

    from bench.executors.submitit import SubmititExecutor

    _run(SubmititExecutor(tmp_path / "warm" / ".submitit", cluster="slurm"), tmp_path / "warm")
    box = {}
    benchmark.pedantic(lambda: box.update(run=_run(SubmititExecutor(tmp_path / "s" / ".submitit", cluster="slurm"), tmp_path / "s")), rounds=1)
    records, wall = box["run"]
    written = {}
    for f in (tmp_path / "s" / ".submitit").glob("*/*/*_result.pkl"):
        _, res = pickle.loads(f.read_bytes())
        written[res.record["job_id"]] = f.stat().st_mtime
    results["slurm"] = {
        "start-up": statistics.median(r["timing"]["enter"] - r["timing"]["process_start"] for r in records),
        "per job": statistics.median(written[r["job_id"]] - r["timing"]["process_start"] - _work(r) for r in records),
        "wall per job and slot": wall * SLOTS / JOBS - statistics.mean(map(_work, records)),
    }


def test_ray_warm_job_overhead(benchmark, tmp_path):
    from bench.executors.ray import RayExecutor

    box = {}
    benchmark.pedantic(lambda: box.update(run=_run(RayExecutor(num_cpus=SLOTS), tmp_path / "r")), rounds=1)
    records, wall = box["run"]
    by_worker: dict[int, list[dict]] = {}
    for r in records:
        by_worker.setdefault(r["timing"]["pid"], []).append(r)
    overheads = []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["timing"]["enter"])
        overheads += [b["timing"]["exit"] - a["timing"]["exit"] - _work(b) for a, b in zip(runs, runs[1:], strict=False)]
    assert overheads, "no worker ran two jobs"
    results["ray"] = {"per job": statistics.median(overheads), "wall per job and slot": wall * SLOTS / JOBS - statistics.mean(map(_work, records))}


def pytest_terminal_summary_cluster(reporter):
    if not results:
        return
    reporter.section(f"cluster start-up per job ({JOBS} x265 jobs, 2 frames; {SLOTS} CPU slots; warm page cache and numba cache)")
    if "slurm" in results:
        s = results["slurm"]
        reporter.write_line(
            f"Slurm: {s['per job']:.2f} s a job besides its work (median; start-up alone {s['start-up']:.2f} s); "
            f"sweep wall per job and slot, less the work: {s['wall per job and slot']:.2f} s"
        )
    if "ray" in results:
        r = results["ray"]
        reporter.write_line(
            f"Ray, warm worker: {r['per job']:.3f} s a job besides its work (median); sweep wall per job and slot, less the work: {r['wall per job and slot']:.2f} s"
        )
