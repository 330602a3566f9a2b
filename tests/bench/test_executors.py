"""Sweeps past one process: GPU pinning, Ray and submitit, with the same store semantics.

The fake codecs (tests/fakes/device_codec.py) are lossless and slow on purpose, and record
the CUDA_VISIBLE_DEVICES and the time span each job ran with, so scheduling can be checked on
a machine without GPUs (Ray's logical resources, the local executor's pinning variable)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

FAKES = Path(__file__).parents[1] / "fakes"

from device_codec import FakeCPUCodec, FakeGPUCodec

from bench.codec import register_codec
from bench.config import SweepConfig
from bench.drift import Golden
from bench.plan import PlanError
from bench.store import ResultsStore
from bench.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
register_codec("fake-cpu", FakeCPUCodec)
register_codec("fake-gpu", FakeGPUCodec)


def _config(out, codecs, rates="1,2", **kw) -> SweepConfig:
    return SweepConfig(
        codecs=codecs, dataset="synthetic", sequences=["testsrc2"], frames=2, rates=rates.split(","), metrics=["psnr"], out=str(out), progress=False, **kw
    )


def _spans(out) -> list[dict]:
    rows = []
    for rec in ResultsStore(out).records():
        tools = rec["encoder"]["tools"]
        rows.append({"codec": rec["codec"], "job": rec["job_id"], "dev": tools["cuda_visible_devices"], "start": tools["start"], "end": tools["end"]})
    return rows


def _check_schedule(rows: list[dict]) -> None:
    gpu = [r for r in rows if r["codec"] == "fake-gpu"]
    cpu = [r for r in rows if r["codec"] == "fake-cpu"]
    assert gpu and cpu
    # every GPU job saw exactly one device; CPU jobs none
    assert all(r["dev"] in ("0", "1") for r in gpu), [r["dev"] for r in gpu]
    assert all(not r["dev"] for r in cpu), [r["dev"] for r in cpu]
    # no two jobs on one device at once
    for d in ("0", "1"):
        spans = sorted((r["start"], r["end"]) for r in gpu if r["dev"] == d)
        assert all(a_end <= b_start + 1e-3 for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans
    # both devices were used, and CPU jobs ran while GPU jobs did
    assert {r["dev"] for r in gpu} == {"0", "1"}
    assert any(c["start"] < g["end"] and g["start"] < c["end"] for c in cpu for g in gpu)


def test_a_missing_extra_is_named_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("ray", "submitit") else real(name, *a))
    for executor, extra in (("ray", "[ray]"), ("submitit", "[slurm]")):
        with pytest.raises(PlanError, match=re.escape(f"--executor {executor} needs the {extra} extra")):
            run_sweep(_config(tmp_path / executor, ["fake-cpu"], executor=executor))
        assert not (tmp_path / executor).exists()


def test_local_gpus_pin_each_worker_to_one_device(tmp_path):
    out = tmp_path / "pinned"
    cfg = _config(out, ["fake-gpu:sleep=1.5", "fake-cpu:sleep=1.5"], rates="1,2,3,4", gpus="0,1", jobs=3)
    result = run_sweep(cfg)
    assert result.ok and len(result.parts[0].records) == 8
    _check_schedule(_spans(out))


def test_bad_gpus_are_refused(tmp_path):
    with pytest.raises(PlanError, match="distinct device numbers"):
        run_sweep(_config(tmp_path / "x", ["fake-cpu"], gpus="0,0"))


needs_ray = pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="the [ray] extra")
needs_submitit = pytest.mark.skipif(__import__("importlib").util.find_spec("submitit") is None, reason="the [slurm] extra")


@needs_ray
def test_ray_logical_gpus_one_job_per_device_and_cpu_jobs_beside(tmp_path):
    out = tmp_path / "ray"
    cfg = _config(out, ["fake-gpu:sleep=1.5", "fake-cpu:sleep=1.5"], rates="1,2,3,4", executor="ray", ray_num_cpus=4, ray_num_gpus=2)
    result = run_sweep(cfg)
    assert result.ok and len(result.parts[0].records) == 8
    _check_schedule(_spans(out))


@needs_ray
def test_ray_retries_a_job_whose_worker_died_and_stores_it_once(tmp_path):
    out = tmp_path / "crash"
    marker = tmp_path / "crashed-once"
    cfg = _config(out, [f"fake-cpu:sleep=0.2:crash_marker={marker}"], executor="ray", ray_num_cpus=2, ray_max_retries=2)
    result = run_sweep(cfg)
    assert marker.exists()  # a worker did die mid-job
    assert result.ok and len(result.parts[0].records) == 2
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and summary.rate.tolist() == [1, 2]
    assert len(list((out / "jobs").glob("*.json"))) == 2


def _golden_md5s(out) -> dict[str, str]:
    return {r["job_id"]: r["bitstream_md5"] for r in ResultsStore(out).records()}


@pytest.fixture(scope="module")
def golden_local(tmp_path_factory):
    """The sample golden through the local executor: its values and bitstream md5s."""
    golden = Golden.load(ROOT / "results" / "golden" / "sample")
    out = tmp_path_factory.mktemp("golden") / "local"
    cfg = golden.sweep_config(out)
    cfg.progress = False
    assert run_sweep(cfg).ok
    return golden, pd.read_csv(out / "summary.csv"), _golden_md5s(out)


def _same_as_golden(golden, local, out) -> None:
    """The golden's check passes, and every summary value is the local executor's, exactly."""
    from bench.drift import compare

    new = pd.read_csv(out / "summary.csv")
    table = compare(golden.summary(), new.astype({"rate": str}), golden.tolerances)
    assert len(table) and (table["status"] == "ok").all(), table[table["status"] != "ok"]
    keys = ["sequence", "codec", "rate"]
    timing = [c for c in local.columns if c.endswith(("_s", "_per_frame"))]
    a = new.sort_values(keys).drop(columns=timing).reset_index(drop=True)
    b = local.sort_values(keys).drop(columns=timing).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[b.columns], b, check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor,settings",
    [
        pytest.param("ray", {"ray_num_cpus": 2}, marks=needs_ray, id="ray-local-2cpus"),
        pytest.param("submitit", {"submitit_cluster": "debug"}, marks=needs_submitit, id="submitit-debug"),
    ],
)
def test_cluster_executors_reproduce_the_sample_golden_exactly(golden_local, tmp_path, executor, settings):
    golden, local, md5 = golden_local
    cfg = golden.sweep_config(tmp_path / executor).replace(progress=False, executor=executor, **settings)
    assert run_sweep(cfg).ok
    _same_as_golden(golden, local, tmp_path / executor)
    assert _golden_md5s(tmp_path / executor) == md5


@pytest.mark.slow
@needs_submitit
def test_submitit_job_past_its_time_limit_is_recorded_and_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKES), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "slow"
    # submitit's limits are whole minutes: a job of 75 s against a limit of one
    cfg = _config(out, ["fake-cpu:sleep=75"], rates="1", executor="submitit", submitit_cluster="local", slurm_time_min=1)
    result = run_sweep(cfg)
    (rec,) = result.parts[0].records
    assert rec["status"] == "timed_out" and not result.ok, rec
    assert json.loads((out / "manifest.json").read_text())["counts"]["timed_out"] == 1
    # the rerun, with time enough, redoes it, and it is stored once
    cfg.slurm_time_min = 3
    again = run_sweep(cfg)
    assert again.ok and len(again.parts[0].records) == 1 and again.parts[0].skipped == 0
    assert len(pd.read_csv(out / "summary.csv")) == 1


def test_a_killed_driver_leaves_a_store_the_rerun_completes_without_duplicates(tmp_path):
    out = tmp_path / "killed"
    script = (
        f"import sys; sys.path.insert(0, {str(FAKES)!r})\n"
        "from device_codec import FakeCPUCodec\n"
        "from bench.codec import register_codec\n"
        "from bench.config import SweepConfig\nfrom bench.sweep import run_sweep\n"
        "register_codec('fake-cpu', FakeCPUCodec)\n"
        "run_sweep(SweepConfig(codecs=['fake-cpu:sleep=1.5'], dataset='synthetic', sequences=['testsrc2'], frames=2,"
        f" rates=['1','2','3','4'], metrics=['psnr'], out={str(out)!r}, progress=False))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "jobs").glob("*.json"))) < 1:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    before = len(list((out / "jobs").glob("*.json")))
    assert 1 <= before < 4
    result = run_sweep(_config(out, ["fake-cpu:sleep=1.5"], rates="1,2,3,4"))
    assert result.ok and len(result.parts[0].records) == 4 - before and result.parts[0].skipped == before
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary.rate.tolist()) == [1, 2, 3, 4]


def test_a_node_without_the_encoder_or_the_data_fails_its_jobs_by_name(tmp_path):
    """The plan passes on the driver; the workers (other processes, as other nodes) lack the
    encoder: each job fails with an error naming the node, and the sweep goes on."""
    import socket

    out = tmp_path / "nodes"
    result = run_sweep(_config(out, [f"fake-gpu:sleep=0:only_in_pid={os.getpid()}"], gpus="0", jobs=1))
    assert not result.ok and len(result.failed) == 2
    assert all(f"on node {socket.gethostname()}: fake-encoder is not installed here" in r["error"] for r in result.failed)
    # a source the worker cannot see
    from bench.jobs import run_job
    from bench.plan import plan

    planned = plan(
        codecs=[("fake-cpu", {"sleep": 0})],
        dataset="synthetic",
        sequences=_synthetic(),
        rates=["1"],
        frames=2,
        metrics=["psnr"],
        device="cpu",
        out=tmp_path / "p",
    )
    job = planned.jobs[0]
    missing = dataclasses.replace(job, sequence=dataclasses.replace(job.sequence, path=tmp_path / "elsewhere" / "clip.yuv"))
    rec = run_job(missing).record
    assert rec["status"] == "failed" and f"node {socket.gethostname()} cannot read the source" in rec["error"] and "data root must be visible" in rec["error"]


def _synthetic():
    from bench.datasets import get_dataset

    return get_dataset("synthetic").resolve(None, ["testsrc2"])


def test_a_warm_process_keeps_its_metrics_not_its_codecs(tmp_path, monkeypatch):
    """A worker serving many jobs builds a metric's network once; a new environment (another
    weights folder) builds it again; codecs are built per job (a Diff-SIT codec keeps every
    model it loaded)."""
    from bench.jobs import _build
    from bench.plan import plan

    job = plan(
        codecs=[("x265", {})],
        dataset="synthetic",
        sequences=_synthetic(),
        rates=["37"],
        frames=2,
        metrics=["psnr", "lpips:random_weights=true"],
        device="cpu",
        out=tmp_path / "p",
    ).jobs[0]
    codec1, metrics1, _ = _build(job, "here")
    codec2, metrics2, _ = _build(job, "here")
    assert all(a is b for a, b in zip(metrics1, metrics2, strict=True)) and codec1 is not codec2
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    _, metrics3, _ = _build(job, "here")
    assert metrics3[1] is not metrics1[1]
