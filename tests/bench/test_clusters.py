"""The cluster executors on real engines: a single-node Slurm cluster (slurm-wlm 22.05 with
munge and slurmdbd, and preemption partitions: .ci/cluster-up) and a two-node Ray cluster on
this host (a head and a second raylet on loopback, started and stopped here).

Where an engine is absent (a user's machine) its tests skip and say so. The slow jobs are
test codecs that wait on a file (tests/fakes/device_codec.py, ``hold=``), so a stopped job's
rerun is quick, and the scenarios share the node's CPUs concurrently where they can.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

FAKES = Path(__file__).parents[1] / "fakes"

from device_codec import FakeCPUCodec

from bench.codec import register_codec
from bench.config import SweepConfig
from bench.executors import slurm
from bench.executors.base import NodeUnusable
from bench.executors.ray import has_ray_token
from bench.executors.registry import make_executor
from bench.plan import PlanError
from bench.store import ResultsStore
from bench.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
PREEMPTION = ("lowcancel", "lowrequeue", "urgent")


def _slurm_absent() -> str | None:
    if shutil.which("sbatch") is None:
        return "no Slurm cluster here (a user's machine): .ci/run brings one up"
    try:
        slurm.partitions()
    except OSError as e:
        return f"no Slurm controller answers here ({e}): .ci/run brings one up"
    return None


@pytest.fixture(scope="module", autouse=True)
def _fake_codec():
    """Registered when this module's tests run, not when it is imported: the codec contract
    tests, collected after it, check every codec registered by then."""
    register_codec("fake-cpu", FakeCPUCodec)


@pytest.fixture(scope="module")
def job_env():
    """Jobs on the nodes import this checkout and the test codecs (Slurm passes the driver's
    environment to its jobs; the Ray nodes are started with it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(FAKES), os.environ.get("PYTHONPATH", "")]))
        yield


@pytest.fixture(scope="module")
def slurm_cluster(job_env):
    reason = _slurm_absent()
    if reason:
        pytest.skip(reason)
    return slurm.partitions()


@pytest.fixture(scope="module")
def preemption(slurm_cluster):
    missing = [p for p in PREEMPTION if p not in slurm_cluster]
    if missing:
        pytest.skip(f"this Slurm cluster has no preemption partitions ({', '.join(missing)}): .ci/cluster-up makes them")


def _config(out, codecs, rates="1,2", **kw) -> SweepConfig:
    return SweepConfig(
        codecs=codecs, dataset="synthetic", sequences=["testsrc2"], frames=2, rates=rates.split(","), metrics=["psnr"], out=str(out), progress=False, **kw
    )


def _on_slurm(out, codec, rates="1,2", **kw) -> SweepConfig:
    return _config(out, [codec], rates, executor="submitit", submitit_cluster="slurm", **kw)


def _brisk(config: SweepConfig):
    """The configuration's executor, asking Slurm more often and settling sooner (tests)."""
    return dataclasses.replace(make_executor(config), poll_s=0.5, query_s=1.0, settle_s=3.0)


class Sweep(threading.Thread):
    """run_sweep in a thread: the scenarios' sweeps wait on Slurm side by side."""

    def __init__(self, config: SweepConfig):
        super().__init__(daemon=True)
        self.config, self.result, self.error = config, None, None
        self.start()

    def run(self):
        try:
            self.result = run_sweep(self.config, executor=_brisk)
        except BaseException as e:
            self.error = e

    def records(self, timeout: float = 300) -> dict[int, dict]:
        """This run's records by rate."""
        self.join(timeout)
        assert not self.is_alive(), f"{self.config.out}: still running after {timeout} s"
        assert self.error is None, self.error
        return {int(r["rate"]): r for r in self.result.parts[0].records}


def _wait(what, predicate, timeout: float = 120, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {timeout} s for {what}")


def _task_id(out: Path, index: int) -> str:
    """The Slurm id of the sweep's job ``index`` (its array task), from submitit's folder."""

    def find():
        for d in (Path(out) / ".submitit").glob("*/*"):
            if re.fullmatch(rf"\d+_{index}", d.name):
                return d.name
        return None

    return _wait(f"job {index} of {out} to be submitted", find)


def _state(job_id: str) -> str:
    s = slurm.squeue([job_id.split("_")[0]]).get(job_id)
    return s.state if s else ""


def _quick_job_ended(out: Path) -> None:
    quick = _task_id(out, 0)
    _wait(f"job {quick} to end", lambda: _state(quick) not in ("PENDING", "RUNNING", "COMPLETING"))


def _preempt(victim: str) -> str:
    """A job in the high-priority partition that needs the victim's CPUs: Slurm preempts it."""
    idle = int(subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, check=True).stdout.split("/")[1])
    cmd = ["sbatch", "--parsable", "-p", "urgent", "-c", str(idle + 1), "-o", "/dev/null", "--wrap", "sleep 2"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


# --- equal to the local executor --------------------------------------------------------------------


def _sample_config(out: Path, **kw) -> SweepConfig:
    """The sample anchors' golden sweep, small: two clips, 3 frames."""
    from bench.drift import Golden

    cfg = Golden.load(ROOT / "results" / "golden" / "sample").sweep_config(out)
    return cfg.replace(sequences=["carphone", "bikes"], frames=3, progress=False, **kw)


@pytest.fixture(scope="module")
def local_sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sample"
    assert run_sweep(_sample_config(out)).ok
    return _values(out)


def _values(out: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every summary value (timings aside) and every bitstream's MD5."""
    summary = pd.read_csv(out / "summary.csv")
    summary = summary.drop(columns=[c for c in summary.columns if c.endswith(("_s", "_per_frame"))])
    summary = summary.sort_values(["sequence", "codec", "rate"]).reset_index(drop=True)
    return summary, {r["job_id"]: r["bitstream_md5"] for r in ResultsStore(out).records()}


@pytest.mark.slow
def test_sample_sweep_through_slurm_equals_local(slurm_cluster, local_sample, tmp_path):
    out = tmp_path / "slurm"
    assert run_sweep(_sample_config(out, executor="submitit", submitit_cluster="slurm")).ok
    summary, md5 = _values(out)
    pd.testing.assert_frame_equal(summary, local_sample[0], check_exact=True)
    assert md5 == local_sample[1]
    ran = [r["ran_on"] for r in ResultsStore(out).records()]
    assert all(w["engine"] == "slurm" and re.fullmatch(r"\d+_\d+", w["job_id"]) and w["node"] for w in ran), ran
    assert len({w["job_id"] for w in ran}) == len(ran)


# --- every end recorded as what it was ------------------------------------------------------------


@pytest.mark.slow
def test_slurm_records_every_end_as_what_it_was_and_a_rerun_redoes_it(slurm_cluster, preemption, tmp_path):
    """Each sweep has a quick job (rate 1) and one that Slurm ends (rate 2): scancel, a
    segfault, preemption under CANCEL and REQUEUE, a 1-minute limit on a 2-minute job. The
    second job is recorded as what its end was; the rerun redoes exactly it."""
    holds = {k: tmp_path / f"hold-{k}" for k in ("timeout", "cancel", "pcancel", "prequeue")}
    for f in holds.values():
        f.touch()
    segv = tmp_path / "segv"
    segv.touch()
    configs = {k: _on_slurm(tmp_path / k, f"fake-cpu:sleep=300:hold={h}:only_rate=2") for k, h in holds.items()}
    configs["timeout"] = _on_slurm(tmp_path / "timeout", f"fake-cpu:sleep=120:hold={holds['timeout']}:only_rate=2", slurm_time_min=1)
    configs["crash"] = _on_slurm(tmp_path / "crash", f"fake-cpu:sleep=0:segv_if={segv}:only_rate=2")
    configs["pcancel"].slurm_partition, configs["prequeue"].slurm_partition = "lowcancel", "lowrequeue"
    t0 = time.time()
    timeout = Sweep(configs["timeout"])  # about 70 s, while the others share the other CPU(s)

    cancel = Sweep(configs["cancel"])
    _wait("the job to cancel to start", lambda: Path(f"{holds['cancel']}.started.2").exists())
    subprocess.run(["scancel", _task_id(tmp_path / "cancel", 1)], check=True)
    crash = Sweep(configs["crash"])
    ended = {"cancel": cancel.records(), "crash": crash.records()}

    pcancel = Sweep(configs["pcancel"])
    _wait("the CANCEL victim to start", lambda: Path(f"{holds['pcancel']}.started.2").exists())
    _quick_job_ended(tmp_path / "pcancel")  # the victim is then the one job Slurm can preempt
    _preempt(_task_id(tmp_path / "pcancel", 1))
    ended["pcancel"] = pcancel.records()

    prequeue = Sweep(configs["prequeue"])
    _wait("the REQUEUE victim to start", lambda: Path(f"{holds['prequeue']}.started.2").exists())
    victim = _task_id(tmp_path / "prequeue", 1)
    _quick_job_ended(tmp_path / "prequeue")
    _preempt(victim)
    _wait("Slurm to requeue the victim", lambda: _state(victim) == "PENDING")
    holds["prequeue"].unlink()  # its second run is quick; Slurm would hold it back 2 minutes
    subprocess.run(["scontrol", "update", f"JobId={victim}", "StartTime=now"], check=True)
    ended["prequeue"] = prequeue.records()
    ended["timeout"] = timeout.records()
    print(f"scenarios took {time.time() - t0:.0f} s")

    expected = {"cancel": "cancelled", "crash": "crashed", "pcancel": "preempted", "timeout": "timed_out", "prequeue": "done"}
    for name, status in expected.items():
        quick, stopped = ended[name][1], ended[name][2]
        assert quick["status"] == "done", (name, quick)
        assert stopped["status"] == status, (name, stopped)
        assert stopped["ran_on"]["engine"] == "slurm" and stopped["ran_on"]["job_id"] == _task_id(tmp_path / name, 1)
        assert stopped["node"] == socket.gethostname()
    assert "killed by SIGSEGV" in ended["crash"][2]["error"] and "Segmentation fault" in ended["crash"][2]["error"]
    assert "time limit of 1 min" in ended["timeout"][2]["error"]
    assert ended["prequeue"][2]["ran_on"]["restarts"] == 1
    # each job ran with its CPUs' threads: torch, numba and OpenMP
    for name in expected:
        tools = ended[name][1]["encoder"]["tools"]
        assert (tools["torch_threads"], tools["numba_threads"], tools["omp_num_threads"]) == (1, 1, "1"), (name, tools)
        assert ended[name][1]["ran_on"]["cpus"] == 1

    for f in [*holds.values(), segv]:
        f.unlink(missing_ok=True)
    cpus = min(2, int(subprocess.run(["nproc"], capture_output=True, text=True).stdout))
    wide = Sweep(_on_slurm(tmp_path / "wide", f"fake-cpu:sleep=0:threads={cpus}", rates="1"))
    again = {k: Sweep(c) for k, c in configs.items()}
    for name, sweep in again.items():
        redone = sweep.records()
        assert sweep.result.parts[0].skipped == (2 if name == "prequeue" else 1), name
        assert [r["status"] for r in redone.values()] == ([] if name == "prequeue" else ["done"]), (name, redone)
        manifest = ResultsStore(tmp_path / name).records()
        assert sorted(r["status"] for r in manifest) == ["done", "done"], name
    (w,) = wide.records().values()
    assert w["ran_on"]["cpus"] == cpus and w["encoder"]["tools"]["torch_threads"] == cpus
    assert w["encoder"]["tools"]["omp_num_threads"] == str(cpus)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_cancels_the_submitted_jobs_and_the_rerun_redoes_them(slurm_cluster, tmp_path, stop):
    out, hold = tmp_path / "sweep", tmp_path / "hold"
    hold.touch()
    script = (
        # a shell that starts CI in the background ignores SIGINT, and a child inherits that;
        # the driver here stands for a user's foreground run, where Ctrl-C is KeyboardInterrupt
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"import sys; sys.path.insert(0, {str(FAKES)!r})\n"
        "from device_codec import FakeCPUCodec\n"
        "from bench.codec import register_codec\n"
        "from bench.config import SweepConfig\nfrom bench.sweep import run_sweep\n"
        "register_codec('fake-cpu', FakeCPUCodec)\n"
        f"run_sweep(SweepConfig(codecs=['fake-cpu:sleep=300:hold={hold}:only_rate=2'], dataset='synthetic', sequences=['testsrc2'],"
        f" frames=2, rates=['1', '2', '3'], metrics=['psnr'], out={str(out)!r}, progress=False, executor='submitit', submitit_cluster='slurm'))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    _wait("the held job to start", lambda: Path(f"{hold}.started.2").exists())
    held = _task_id(out, 1)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert re.search(r"cancelled the [123] job\(s\) of this sweep still queued or running", err), err
    _wait("the held job to leave the queue", lambda: _state(held) not in ("RUNNING", "PENDING"), timeout=60)
    before = {str(r["rate"]) for r in ResultsStore(out).records()}
    assert "2" not in before and all(r["status"] == "done" for r in ResultsStore(out).records())
    hold.unlink()
    again = run_sweep(_on_slurm(out, f"fake-cpu:sleep=300:hold={hold}:only_rate=2", rates="1,2,3"), executor=_brisk)
    assert again.ok and again.parts[0].skipped == len(before)
    assert sorted(str(r["rate"]) for r in again.parts[0].records) == sorted({"1", "2", "3"} - before)


# --- nodes that cannot work, clusters that are not there ----------------------------------------


def _private_clip(folder: Path) -> Path:
    """A copy of the synthetic clip in ``folder``, as a dataset of its own."""
    from bench.datasets import get_dataset

    (seq,) = get_dataset("synthetic").resolve(None, ["testsrc2"])
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(seq.path, folder / Path(seq.path).name))


@pytest.mark.slow
def test_a_slurm_node_without_the_data_stops_the_sweep_early(slurm_cluster, tmp_path):
    clip = _private_clip(tmp_path / "data")
    rates = ",".join(str(r) for r in range(1, max(8, 3 * (os.cpu_count() or 2)) + 1))
    cfg = _config(tmp_path / "out", ["fake-cpu:sleep=0"], rates, executor="submitit", submitit_cluster="slurm")
    cfg.dataset, cfg.sequences = str(clip), None

    def data_gone(config):  # planned where the data is; run where it is not
        clip.unlink()
        return _brisk(config)

    with pytest.raises(NodeUnusable, match=rf"node {socket.gethostname()} cannot read the source {re.escape(str(clip))}") as e:
        run_sweep(cfg, executor=data_gone)
    assert "cancelled" in str(e.value)
    ran = list((tmp_path / "out" / ".submitit").glob("*/*/*_result.pkl"))
    assert 0 < len(ran) < len(rates.split(",")), "the queue was drained"
    assert not ResultsStore(tmp_path / "out").records()


def test_a_bad_partition_is_refused_before_the_results_folder_exists(slurm_cluster, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(PlanError, match="Slurm has no partition 'nosuch'; it has .*debug"):
        run_sweep(_on_slurm(out, "fake-cpu", slurm_partition="nosuch"))
    assert not out.exists()


def test_no_slurm_is_refused_before_the_results_folder_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sinfo, no sbatch
    out = tmp_path / "out"
    with pytest.raises(PlanError, match="Slurm does not answer here"):
        run_sweep(_on_slurm(out, "fake-cpu"))
    assert not out.exists()


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra")


@needs_ray
def test_an_unreachable_ray_cluster_is_refused_before_the_results_folder_exists(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    with pytest.raises(PlanError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        run_sweep(_config(out, ["fake-cpu"], executor="ray", ray_address=f"127.0.0.1:{port}"))
    assert not out.exists()


# --- two Ray nodes on one host ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a `ray start --block` and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:  # gcs_server outlives SIGTERM for long
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _private_mounts() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def ray_two_nodes(job_env, tmp_path_factory):
    """A head and a second raylet on this host, 1 CPU each. Where the machine allows (root,
    mount namespaces) the second node cannot see ``hidden``, as a node without the data."""
    ray = Path(sys.executable).with_name("ray")
    if importlib.util.find_spec("ray") is None or not ray.exists():
        pytest.skip("the [ray] extra")
    port, temp = _free_port(), Path(tempfile.mkdtemp(prefix="bray", dir="/tmp"))  # short: Ray's socket paths
    hidden, empty = tmp_path_factory.mktemp("head-only"), tmp_path_factory.mktemp("empty")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if has_ray_token():  # the head turns token auth on by itself; another node must be told
        env["RAY_AUTH_MODE"] = "token"
    common = ["--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--disable-usage-stats", "--block"]
    logs = temp / "logs.txt"
    procs = []
    with open(logs, "w") as log:
        procs.append(
            subprocess.Popen(
                [ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common], env=env, stdout=log, stderr=log, start_new_session=True
            )
        )
        second = [str(ray), "start", "--address", f"127.0.0.1:{port}", *common]
        if _private_mounts():
            second = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'mount --bind "{empty}" "{hidden}" && exec "$@"', "sh", *second]
        else:
            hidden = None
        try:
            _wait("the Ray head", lambda: _listening(port), timeout=120)
            procs.append(subprocess.Popen(second, env=env, stdout=log, stderr=log, start_new_session=True))
            address = f"127.0.0.1:{port}"
            nodes = _wait("two Ray nodes", lambda: _ray_nodes(address, env), timeout=120, every=2)
            yield {"address": address, "hidden": hidden, "nodes": nodes}
        finally:
            for p in reversed(procs):
                _stop(p)
            shutil.rmtree(temp, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _ray_nodes(address: str, env: dict) -> list[str] | None:
    """The ids of the cluster's live nodes, the head's first, once there are two."""
    code = (
        "import json, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        "nodes = [n for n in ray.nodes() if n['Alive']]\n"
        "print(json.dumps(sorted(('node:__internal_head__' not in n['Resources'], n['NodeID']) for n in nodes)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    nodes = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 and proc.stdout.strip() else []
    return [node_id for _, node_id in nodes] if len(nodes) == 2 else None


@pytest.mark.slow
def test_sample_sweep_through_two_ray_nodes_equals_local(ray_two_nodes, local_sample, tmp_path):
    out = tmp_path / "ray"
    assert run_sweep(_sample_config(out, executor="ray", ray_address=ray_two_nodes["address"])).ok
    summary, md5 = _values(out)
    pd.testing.assert_frame_equal(summary, local_sample[0], check_exact=True)
    assert md5 == local_sample[1]
    ran = [r["ran_on"] for r in ResultsStore(out).records()]
    assert {w["node_id"] for w in ran} == set(ray_two_nodes["nodes"]), "jobs ran on both nodes"
    assert all(w["engine"] == "ray" and w["task_id"] and w["node"] for w in ran)


@pytest.mark.slow
def test_a_ray_node_without_the_data_stops_the_sweep_early(ray_two_nodes, tmp_path):
    if ray_two_nodes["hidden"] is None:
        pytest.skip("hiding a folder from one Ray node needs root and mount namespaces (unshare)")
    clip = _private_clip(ray_two_nodes["hidden"] / "data")
    cfg = _config(tmp_path / "out", ["fake-cpu:sleep=1"], ",".join(map(str, range(1, 9))), executor="ray", ray_address=ray_two_nodes["address"])
    cfg.dataset, cfg.sequences = str(clip), None
    with pytest.raises(NodeUnusable, match=rf"cannot read the source {re.escape(str(clip))}") as e:
        run_sweep(cfg)
    head, second = ray_two_nodes["nodes"]
    assert second in str(e.value) and head not in str(e.value), "the node named is the one without the data"
    done = ResultsStore(tmp_path / "out").records()
    assert len(done) < 8 and all(r["status"] == "done" and r["ran_on"]["node_id"] == head for r in done)


# --- Slurm's answers, read (no cluster needed) ----------------------------------------------------


@dataclasses.dataclass
class _Paths:
    folder: Path

    @property
    def stdout(self):
        return self.folder / "log.out"

    @property
    def stderr(self):
        return self.folder / "log.err"

    @property
    def result_pickle(self):
        return self.folder / "result.pkl"


@dataclasses.dataclass
class _FakeSlurmJob:
    job_id: str
    paths: _Paths


def _submitted(tmp_path, job_id="7_1", log=True):
    from bench.executors.submitit import _Submitted

    paths = _Paths(tmp_path)
    if log:
        paths.stderr.write_text("line 1\n" + "x" * 500 + "\nsrun: error: vm: task 0: Segmentation fault\n")
    return _Submitted(job=None, sjob=_FakeSlurmJob(job_id, paths), submitted=0.0)


def _ex(**kw):
    from bench.executors.submitit import SubmititExecutor

    return SubmititExecutor("f", cluster="slurm", settle_s=10, unknown_s=60, timeout_min=2, **kw)


def test_sacct_array_ranges_and_exit_codes_are_read():
    assert slurm._expand("123_[2-4,7]") == ["123_2", "123_3", "123_4", "123_7"]
    assert slurm._expand("123_[5-6%2]") == ["123_5", "123_6"] and slurm._expand("123_4") == ["123_4"]
    assert slurm.describe_exit(slurm.SlurmState("FAILED", exit_code="11:0", derived_exit_code="0:11")) == "killed by SIGSEGV"
    assert slurm.describe_exit(slurm.SlurmState("FAILED", exit_code="1:0")) == "exit status 1"
    assert slurm.describe_exit(slurm.SlurmState("FAILED")) == ""


def test_sacct_reads_the_signal_from_the_step_and_expands_pending_tasks(monkeypatch):
    # what sacct said of a segfaulted array task: the job 11:0 (srun's status), the step 0:11
    out = "14_0|COMPLETED|vm|None|0:0|0:0\n14_1|FAILED|vm|None|11:0|0:0\n14_1.batch|FAILED|vm||11:0|\n14_1.0|CANCELLED|vm||0:11|\n"
    out += "14_[2-3]|PENDING|None assigned|Resources|0:0|0:0\n"
    monkeypatch.setattr(slurm, "_run", lambda cmd: subprocess.CompletedProcess(cmd, 0, out, ""))
    states = slurm.sacct(["14"])
    assert sorted(states) == ["14_0", "14_1", "14_2", "14_3"] and states["14_3"].state == "PENDING"
    assert slurm.describe_exit(states["14_1"]) == "killed by SIGSEGV" and slurm.describe_exit(states["14_0"]) == ""


def test_an_ended_state_is_recorded_once_it_has_held(tmp_path):
    from bench.executors.base import JobInterrupted

    ex, t = _ex(), _submitted(tmp_path)
    cancelled = slurm.SlurmState("CANCELLED", "vm", "None")
    assert ex._verdict(t, cancelled, 100.0) is None  # first seen
    assert ex._verdict(t, cancelled, 105.0) is None
    out = ex._verdict(t, cancelled, 110.0)
    assert isinstance(out, JobInterrupted) and out.status == "cancelled"
    assert out.record_fields["ran_on"] == {"engine": "slurm", "node": "vm", "job_id": "7_1"} and out.record_fields["slurm"]["state"] == "CANCELLED"
    t = _submitted(tmp_path)
    assert ex._verdict(t, slurm.SlurmState("TIMEOUT", "vm"), 0.0) is None
    assert ex._verdict(t, slurm.SlurmState("TIMEOUT", "vm"), 20.0).status == "timed_out"


def test_a_requeued_job_is_waited_for_not_recorded_preempted(tmp_path):
    """Under PreemptMode=REQUEUE sacct shows PREEMPTED for a few seconds, then PENDING."""
    ex, t = _ex(), _submitted(tmp_path)
    assert ex._verdict(t, slurm.SlurmState("PREEMPTED", "vm"), 0.0) is None
    assert ex._verdict(t, slurm.SlurmState("PENDING", "", "BeginTime"), 8.0) is None
    assert ex._verdict(t, slurm.SlurmState("PREEMPTED", "vm"), 12.0) is None  # held anew, from here
    assert ex._verdict(t, slurm.SlurmState("PREEMPTED", "vm"), 22.0).status == "preempted"


def test_a_crash_says_how_with_the_end_of_the_log(tmp_path):
    ex, t = _ex(), _submitted(tmp_path)
    segv = slurm.SlurmState("FAILED", "vm", "NonZeroExitCode", "11:0", "0:11")
    ex._verdict(t, segv, 0.0)
    out = ex._verdict(t, segv, 10.0)
    assert out.status == "crashed" and "killed by SIGSEGV" in str(out) and "task 0: Segmentation fault" in str(out)
    assert "x" * 201 not in str(out), "a long log line is cut"


def test_a_job_that_completed_without_a_result_is_a_crash_that_says_where_to_look(tmp_path):
    ex, t = _ex(), _submitted(tmp_path)
    ex._verdict(t, slurm.SlurmState("COMPLETED", "vm"), 0.0)
    out = ex._verdict(t, slurm.SlurmState("COMPLETED", "vm"), 10.0)
    assert out.status == "crashed" and f"no result file appeared in {tmp_path}: is the submitit folder shared" in str(out)


def test_a_job_slurm_does_not_know_is_lost_after_a_stated_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "has_accounting", lambda: False)
    ex, t = _ex(), _submitted(tmp_path)
    assert ex._verdict(t, None, 59.0) is None
    out = ex._verdict(t, None, 61.0)
    assert out.status == "lost" and "no accounting (slurmdbd)" in str(out)


def test_a_job_slurm_could_not_launch_stops_the_sweep(tmp_path):
    from bench.executors.base import NodeProblem

    ex, t = _ex(), _submitted(tmp_path, log=False)
    failed = slurm.SlurmState("FAILED", "gpu7", "JobLaunchFailure", "0:53")
    ex._verdict(t, failed, 0.0)
    out = ex._verdict(t, failed, 10.0)
    assert isinstance(out, NodeProblem) and out.node == "gpu7" and "must see the submitit folder" in out.reason


def test_a_job_no_ray_node_can_hold_is_refused_not_queued_forever():
    from bench.codec import Resources
    from bench.executors.ray import _check_fits

    job = type("J", (), {"resources": Resources(cpus=8), "row_label": "x265:threads=8"})()
    with pytest.raises(PlanError, match=r"x265:threads=8 needs 8 CPU\(s\) a job, and no node of the Ray cluster has that many \(at most 4 CPUs"):
        _check_fits([{"CPU": 4.0}, {"CPU": 2.0}], [job])
    _check_fits([{"CPU": 8.0}], [job])


def test_a_node_without_the_encoder_or_the_data_is_a_node_problem(tmp_path):
    """On a cluster (unlike the local executor) such a job stops the sweep: it comes back
    as a NodeProblem that names the node, not as a failed record."""
    from bench.datasets import get_dataset
    from bench.executors.base import NodeProblem, run_on_node
    from bench.jobs import run_job
    from bench.plan import plan

    seqs = get_dataset("synthetic").resolve(None, ["testsrc2"])
    (job,) = plan(
        codecs=[("fake-cpu", {"sleep": 0, "only_in_pid": os.getpid()})],
        dataset="synthetic",
        sequences=seqs,
        rates=["1"],
        frames=2,
        metrics=["psnr"],
        device="cpu",
        out=tmp_path,
    ).jobs
    where = {"engine": "test", "node": socket.gethostname()}
    elsewhere = dataclasses.replace(job, codec_options=(("only_in_pid", 1), ("sleep", 0)))
    out = run_on_node(run_job, elsewhere, where)
    assert isinstance(out, NodeProblem) and "fake-encoder is not installed here" in out.reason and out.ran_on == where
    gone = dataclasses.replace(job, sequence=dataclasses.replace(job.sequence, path=tmp_path / "nowhere.yuv"))
    out = run_on_node(run_job, gone, where)
    assert isinstance(out, NodeProblem) and f"node {socket.gethostname()} cannot read the source {tmp_path / 'nowhere.yuv'}" in out.reason
    done = run_on_node(run_job, job, where)
    assert done.record["status"] == "done" and done.record["ran_on"] == where
