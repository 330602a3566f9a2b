"""Where a sweep's jobs run: this machine (with GPU pinning), a Ray cluster, or Slurm (submitit).

Every executor implements ``bench.sweep.Executor``: ``run(fn, jobs)`` yields (job, result or
exception) as jobs finish, and ``close()``, which cancels what is still queued or running
(Ctrl-C). Workers only encode, decode and measure (``bench.sweep.run_job``) and return the
bitstream, per-frame table and logs; the driver alone writes the results store, one atomic
commit per job, so a worker that dies can leave nothing half-written and a job retried
elsewhere is stored once.

Scheduling is by a job's :class:`bench.codec.Resources` (GPU or not, CPU threads, memory):

- local: ``--gpus 0,1`` runs at most one GPU job per device, each in a worker process that
  sees only its device (``CUDA_VISIBLE_DEVICES``); CPU jobs run beside them in their own
  workers, which see no GPU.
- Ray: ``num_gpus``/``num_cpus`` per task (Ray sets ``CUDA_VISIBLE_DEVICES``), bounded
  retries when a worker dies.
- submitit: one job array per resource class, ``--cpus-per-task`` from the codec's threads.
  A job that ends without a result is recorded as what Slurm says it was (``cancelled``,
  ``preempted``, ``timed_out``, ``crashed``, or ``lost`` when Slurm no longer knows; see
  ``bench.slurm``), and a rerun redoes it.

On a cluster every job first checks its node (:func:`node_problem`): a node that cannot read
the data or the weights stops the sweep with the reason (:class:`NodeUnusable`) instead of
failing every job the queue hands it. Records say where they ran (``ran_on``).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import slurm
from .sweep import PINNED_ENV, Job, JobResult, LocalExecutor, PlanError, SweepConfig

EXTRAS = {"ray": ("ray", "ray"), "submitit": ("submitit", "slurm")}


class JobInterrupted(RuntimeError):
    """A job the cluster ended without a result: ``status`` says how (``cancelled``,
    ``preempted``, ``timed_out``, ``crashed``, ``lost``); ``record_fields`` go into its
    record (where it ran, Slurm's state and exit code)."""

    def __init__(self, status: str, message: str, record_fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.record_fields = record_fields or {}


class NodeUnusable(PlanError):
    """A node cannot run the sweep's jobs (it cannot read the data, lacks the weights or an
    encoder, cannot see the submitit folder): the sweep stopped early, and what it had
    submitted was cancelled. Jobs done so far are kept; fix the node and run again."""


@dataclass(frozen=True)
class NodeProblem:
    """What a job found wrong with its node, returned as a value (it travels through submitit
    and Ray as any result does) so the driver can stop the sweep."""

    node: str
    reason: str
    ran_on: dict[str, Any]


def require(executor: str) -> None:
    """Refuse an executor whose package is missing, before anything runs."""
    if executor == "local":
        return
    if executor not in EXTRAS:
        raise PlanError(f"unknown executor {executor!r}: local, ray or submitit")
    module, extra = EXTRAS[executor]
    if importlib.util.find_spec(module) is None:
        raise PlanError(f"--executor {executor} needs the [{extra}] extra ({module} is not installed): pip install 'diffsit-bench[{extra}]'")


def check_executor(config: SweepConfig) -> None:
    """Everything about the executor that can be known before the results folder is made:
    its package, and that its cluster answers (Slurm and the partition; a Ray address)."""
    require(config.executor)
    if config.executor == "submitit" and submitit_cluster(config.submitit_cluster) == "slurm":
        check_slurm(config.slurm_partition)
    if config.executor == "ray" and config.ray_address:
        check_ray(config.ray_address)


def visible_gpus(spec: str | None) -> list[str]:
    """``--gpus``: "0,1,3", "auto" (every GPU torch sees) or None (no pinning)."""
    if not spec:
        return []
    if spec == "auto":
        import torch

        n = torch.cuda.device_count()
        if not n:
            raise PlanError("--gpus auto: no GPU is visible on this machine")
        return [str(i) for i in range(n)]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids or any(not g.isdigit() for g in ids) or len(set(ids)) != len(ids):
        raise PlanError(f"--gpus takes distinct device numbers (0,1,2) or auto, got {spec!r}")
    return ids


# --- on a cluster node --------------------------------------------------------------------------


def _registered_weights(identity: Any) -> list[str]:
    """File names of the registered weights a job's identity names (``weights.fingerprint``)."""
    if isinstance(identity, dict):
        if set(identity) == {"file", "sha256"} and identity["sha256"]:
            return [str(identity["file"])]
        return [name for v in identity.values() for name in _registered_weights(v)]
    if isinstance(identity, list):
        return [name for v in identity for name in _registered_weights(v)]
    return []


def node_problem(job: Job) -> str | None:
    """Why this node cannot run ``job`` at all (None: it can): checked before the job, and
    cheap, so a node without the data does not fail one job after another."""
    from . import weights

    node = socket.gethostname()
    src = Path(job.sequence.path)
    try:
        with open(src, "rb") as f:
            f.read(1)
    except OSError as e:
        return (
            f"node {node} cannot read the source {src} ({e.strerror}): the data root, and the bench cache for the "
            "sample and synthetic sets, must be visible on every node at the same path"
        )
    subdirs = {w.filename: w.hub_subdir for w in weights.WEIGHTS.values()}
    missing = [name for name in _registered_weights(json.loads(job.identity)) if weights.find_file(name, subdirs.get(name, "checkpoints")) is None]
    if missing:
        where = ", ".join(map(str, weights.search_dirs()))
        return f"node {node} lacks the weights file(s) {', '.join(missing)} (looked in {where}): put them on every node, or pass --weights DIR on a shared filesystem"
    return None


def _unavailable_here(record: dict) -> bool:
    """Whether a failed record says the node lacks what the job needs (an encoder, weights),
    which ``run_job`` reports as ``CodecError: on node ...``, ``CodecUnavailable`` or
    ``WeightsMissing``, rather than that the job itself failed."""
    if record.get("status") != "failed":
        return False
    text = f"{record.get('error', '')}\n{record.get('traceback', '')}"
    return str(record.get("error", "")).startswith("CodecError: on node ") or "CodecUnavailable" in text or "WeightsMissing" in text


def run_on_node(fn, job: Job, ran_on: dict[str, Any]) -> JobResult | NodeProblem:
    """``fn(job)`` on a cluster node, after checking the node; the record says where it ran."""
    problem = node_problem(job)
    if problem:
        return NodeProblem(ran_on["node"], problem, ran_on)
    result = fn(job)
    if _unavailable_here(result.record):
        return NodeProblem(ran_on["node"], str(result.record["error"]), ran_on)
    result.record["ran_on"] = ran_on
    return result


def _stop_sweep(problem: NodeProblem, cancelled: int) -> NodeUnusable:
    return NodeUnusable(
        f"the sweep stopped early: {problem.reason} (ran on {problem.ran_on}). "
        f"{cancelled} job(s) not yet run were cancelled; jobs done so far are kept. "
        "Fix the node, or leave it out (--slurm-flag exclude=NODE), and run the same command again."
    )


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- local, with GPU pinning -------------------------------------------------------------------


def _pinned_init(gpu: str | None, threads: int) -> None:
    # before torch initialises CUDA in this process: it reads the variable once
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    if gpu is not None:
        os.environ[PINNED_ENV] = gpu
    from .sweep import _worker_init

    _worker_init(threads)


@dataclass
class PinnedExecutor:
    """One single-process pool per GPU, fed one job at a time, and a pool of CPU workers."""

    gpus: list[str]
    cpu_workers: int = 1
    _pools: list[cf.ProcessPoolExecutor] = field(default_factory=list, init=False)

    def run(self, fn, jobs: list[Job]):
        ctx = multiprocessing.get_context("spawn")
        cores = os.cpu_count() or 1
        threads = max(1, cores // (len(self.gpus) + self.cpu_workers))
        gpu_pools = {g: cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=_pinned_init, initargs=(g, threads)) for g in self.gpus}
        cpu_pool = cf.ProcessPoolExecutor(self.cpu_workers, mp_context=ctx, initializer=_pinned_init, initargs=(None, threads))
        self._pools = [*gpu_pools.values(), cpu_pool]
        pending = deque(j for j in jobs if j.resources.gpu)
        running: dict[cf.Future, tuple[Job, str | None]] = {}
        for job in jobs:
            if not job.resources.gpu:
                running[cpu_pool.submit(fn, job)] = (job, None)

        def feed(gpu: str) -> None:
            if pending:
                job = pending.popleft()
                running[gpu_pools[gpu].submit(fn, job)] = (job, gpu)

        for g in self.gpus:
            feed(g)
        while running:
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                job, gpu = running.pop(fut)
                try:
                    yield job, fut.result()
                except BaseException as e:  # a worker died
                    yield job, e
                if gpu is not None:
                    feed(gpu)

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []


def local_executor(jobs: int = 1, gpus: list[str] | None = None):
    if not gpus:
        return LocalExecutor(jobs)
    return PinnedExecutor(list(gpus), cpu_workers=max(1, jobs - len(gpus)))


# --- Ray ------------------------------------------------------------------------------------------


def has_ray_token() -> bool:
    """Whether this machine holds a Ray auth token (Ray >= 2.60's token authentication)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def ray_auth_env() -> None:
    """A head started where ``~/.ray/auth_token`` exists turns token authentication on by
    itself; a driver connecting to it does not, and fails with ``InvalidAuthToken``. With a
    token here and no ``RAY_AUTH_MODE`` said, ask for token mode (a cluster without
    authentication accepts such a driver too)."""
    if "RAY_AUTH_MODE" in os.environ or not has_ray_token():
        return
    try:  # Ray's own switch: it also refreshes the mode a process that imported ray has read
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication: nothing to ask for
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _ray_host_port(address: str) -> tuple[str, int]:
    """host and GCS port of a Ray address: "auto", "host:port", "ray://host:port"."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
            address = current.read_text().strip() if current.is_file() else ""
        if not address:
            raise PlanError(
                "--ray-address auto: no Ray cluster was started on this machine (no $RAY_ADDRESS, no /tmp/ray/ray_current_cluster): "
                "start one with `ray start --head`, or pass --ray-address HEAD:6379"
            )
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PlanError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:10001, or auto")
    return host, int(port)


def check_ray(address: str) -> None:
    """The Ray head at ``address`` takes connections (a bad address is said here, not as a
    traceback from inside ``ray.init`` after the results folder was made)."""
    host, port = _ray_host_port(address)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise PlanError(
            f"no Ray cluster answers at {host}:{port} ({e.strerror or e}): start it with `ray start --head --port {port}` "
            "on the head node, or fix --ray-address"
        ) from None


def _ray_where() -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "engine": "ray",
        "node": socket.gethostname(),
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "task_id": ctx.get_task_id(),
        "worker_pid": os.getpid(),
    }


def _ray_task(fn, job: Job):
    import ray

    if ray.get_gpu_ids():  # Ray pinned this task: CUDA_VISIBLE_DEVICES holds its GPU
        os.environ[PINNED_ENV] = ",".join(str(g) for g in ray.get_gpu_ids())
    from .sweep import _worker_init

    _worker_init(max(1, job.resources.cpus))
    return run_on_node(fn, job, _ray_where())


def _check_fits(nodes: list[dict[str, float]], jobs: list[Job]) -> None:
    """Ray queues a task no node can hold, forever: refuse it instead (a codec's threads=8
    asks for 8 CPUs)."""
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    for job in jobs:
        if job.resources.cpus > cpus or (job.resources.gpu and gpus < 1):
            need = f"{job.resources.cpus} CPU(s)" + (" and a GPU" if job.resources.gpu else "")
            raise PlanError(
                f"{job.row_label} needs {need} a job, and no node of the Ray cluster has that many (at most {cpus:g} CPUs, {gpus:g} GPUs): "
                "give the codec fewer threads, or add such a node"
            )


@dataclass
class RayExecutor:
    """``address``: a running cluster ("auto", "HEAD:6379", "ray://head:10001"); None starts a
    local Ray with ``num_cpus``/``num_gpus`` (logical resources: ``num_gpus=2`` on a CPU
    machine schedules as if it had two). ``max_retries``: how often a job whose worker died
    is rerun before it is recorded failed."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_retries: int = 2
    _started: bool = field(default=False, init=False)
    _refs: dict[Any, Job] = field(default_factory=dict, init=False)

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_") or k in ("NUMBA_CACHE_DIR", "DIFFSIT_WAN_DIR")}
        if self.address is None:
            # a new local cluster ("local": never one some `ray start` left on this machine),
            # running this checkout: the workers get the driver's import path
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            ray.init(
                address="local", num_cpus=self.num_cpus, num_gpus=self.num_gpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
            )
        else:
            ray_auth_env()
            try:
                ray.init(address=self.address, log_to_driver=False, runtime_env={"env_vars": env})
            except ConnectionError as e:
                raise PlanError(
                    f"cannot join the Ray cluster at {self.address}: {e}. With Ray >= 2.60 and token authentication, "
                    "set RAY_AUTH_MODE=token and give this machine the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
                ) from None
        self._started = True

    def run(self, fn, jobs: list[Job]):
        import ray

        self._init()
        _check_fits([n["Resources"] for n in ray.nodes() if n["Alive"]], jobs)
        task = ray.remote(_ray_task)
        for job in jobs:
            r = job.resources
            opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": 1 if r.gpu else 0, "max_retries": self.max_retries, "retry_exceptions": False}
            if r.memory_gb:
                opts["memory"] = int(r.memory_gb * 2**30)
            self._refs[task.options(**opts).remote(fn, job)] = job
        while self._refs:
            done, _ = ray.wait(list(self._refs), num_returns=1)
            job = self._refs.pop(done[0])
            try:
                res = ray.get(done[0])
            except Exception as e:  # retries exhausted (WorkerCrashedError, ...)
                res = e
            if isinstance(res, NodeProblem):
                raise _stop_sweep(res, self._cancel())
            yield job, res

    def _cancel(self) -> int:
        import ray

        n = len(self._refs)
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        return n

    def close(self) -> None:
        if self._started:
            import ray

            self._cancel()
            ray.shutdown()
            self._started = False


# --- Slurm through submitit -------------------------------------------------------------------------


def submitit_cluster(name: str | None) -> str:
    """submitit's own choice when none is named: Slurm where ``srun`` is, else local."""
    return name or ("slurm" if shutil.which("srun") else "local")


def check_slurm(partition: str | None) -> None:
    """Slurm answers, and has the partition (and it is up)."""
    try:
        parts = slurm.partitions()
    except OSError as e:
        raise PlanError(
            f"Slurm does not answer here (sinfo: {e}): run the sweep on a machine of the cluster, with slurmctld up, "
            "or use --submitit-cluster local to run the jobs on this machine"
        ) from None
    if partition and partition not in parts:
        raise PlanError(f"Slurm has no partition {partition!r}; it has {', '.join(sorted(parts))}: fix --slurm-partition")
    if partition and parts[partition] != "up":
        raise PlanError(f"Slurm's partition {partition!r} is {parts[partition]}, so no job would start: pick another with --slurm-partition")


def _process_start() -> float:
    """When this process started (epoch seconds), from /proc; now where there is no /proc."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _slurm_where() -> dict[str, Any]:
    env = os.environ
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return {
        "engine": "slurm",
        "node": socket.gethostname(),
        "job_id": f"{array}_{task}" if array and task else env.get("SLURM_JOB_ID"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "cpus": int(env.get("SLURM_CPUS_PER_TASK", "1")),
        # times Slurm requeued this job (preemption under PreemptMode=REQUEUE, scontrol requeue)
        "restarts": int(env.get("SLURM_RESTART_COUNT", "0")),
    }


def _on_slurm_signals() -> None:
    """A bench job cannot be resumed midway, so Slurm's signals end it at once, cleanly:
    submitit's own handlers would raise an exception inside whatever runs (a numba kernel
    becomes a SystemError, an interrupted encoder an FFmpegError), recorded as a failure.

    - SIGUSR2, the warning before the time limit, is only logged: the job runs on, and gets
      all of its time.
    - SIGTERM (scancel, preemption, the limit itself) ends the process without a result; the
      driver then asks Slurm which it was. Exiting at once also frees the node for the job
      that preempted this one, rather than after KillWait."""
    import faulthandler

    faulthandler.enable()  # a crash in native code leaves the Python stack in the job's log

    def warned(signum, frame):
        _log("Slurm's warning signal (SIGUSR2): the time limit is near; the job runs on until Slurm ends it")

    def stop(signum, frame):
        os.write(2, b"bench: SIGTERM from Slurm (scancel, preemption or the time limit): ending without a result\n")
        os._exit(128 + signum)

    signal.signal(signal.SIGUSR2, warned)
    signal.signal(signal.SIGTERM, stop)


@dataclass
class SlurmTask:
    """What each array task runs (pickled by submitit): on Slurm, Slurm's signals, this job's
    thread limits and the node check around ``fn(job)``; elsewhere (submitit's local and
    debug clusters, in which time limits are submitit's own) the node check alone."""

    fn: Any
    threads: int = 1

    def __call__(self, job: Job) -> JobResult | NodeProblem:
        if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
            return run_on_node(self.fn, job, {"engine": "submitit", "node": socket.gethostname(), "pid": os.getpid()})
        _on_slurm_signals()
        from .sweep import _worker_init

        _worker_init(self.threads)  # torch and numba; OpenMP's variables are set in the job's script
        where = {**_slurm_where(), "startup_s": round(time.time() - _process_start(), 3)}
        return run_on_node(self.fn, job, where)


def _thread_env(threads: int) -> list[str]:
    """Shell lines for the job's script, so that native libraries size their pools before
    they start: OpenMP (x265 through ffmpeg, torch), BLAS, numba."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    return ["export " + " ".join(f"{n}={threads}" for n in names)]


def signal_delay_s(timeout_min: float) -> int:
    """Seconds before the limit at which Slurm warns: a tenth of the limit, 10 s to 90 s
    (submitit's 90 s warns a 2-minute job almost at once; Slurm may warn up to 60 s early
    too, so it is only logged, see :func:`_on_slurm_signals`)."""
    return int(min(90, max(10, timeout_min * 60 / 10)))


def _sigterm_stops_the_driver() -> Any:
    """SIGTERM (``kill``, or the limit of a Slurm job the driver itself runs in) stops the
    driver as Ctrl-C does, so that ``close()`` cancels what the sweep submitted; Python's
    default ends the process with its arrays still queued. Returns the handler to restore
    (None off the main thread, where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    return signal.signal(signal.SIGTERM, stop)


@dataclass
class _Submitted:
    job: Job
    sjob: Any
    submitted: float
    #: the ended state Slurm first reported, and when: recorded once it has held (settle_s)
    ended: tuple[str, float] | None = None


@dataclass
class SubmititExecutor:
    """Job arrays through submitit: ``cluster`` "slurm", "local" (subprocesses on this
    machine, time limits enforced) or "debug" (in this process), None to let submitit pick.
    The folder holds submitit's scripts and logs (shared with the nodes on Slurm).

    On Slurm the driver checks each job's result file every ``poll_s``, and asks Slurm about
    the jobs without one every ``query_s``. Pending and running jobs are waited for as long
    as Slurm holds them; an ended job without a result is recorded once its state has held
    ``settle_s``; a job Slurm does not know is recorded ``lost`` after ``unknown_s``."""

    folder: str | os.PathLike = "results/.submitit"
    cluster: str | None = None
    partition: str | None = None
    timeout_min: float = 60
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    slurm_flags: dict[str, str] = field(default_factory=dict)
    poll_s: float = 1.0
    query_s: float = 5.0
    settle_s: float = 10.0
    unknown_s: float = 120.0
    _pending: list[_Submitted] = field(default_factory=list, init=False)
    _states: dict[str, slurm.SlurmState] = field(default_factory=dict, init=False)
    _asked: float = field(default=0.0, init=False)

    @property
    def _slurm(self) -> bool:
        return submitit_cluster(self.cluster) == "slurm"

    def _executor(self, kind: str, job: Job):
        import submitit

        ex = submitit.AutoExecutor(folder=str(Path(self.folder) / kind / "%j"), cluster=self.cluster)
        r = job.resources
        # submitit counts whole minutes
        params: dict[str, Any] = {"timeout_min": max(1, math.ceil(self.timeout_min)), "cpus_per_task": self._cpus(job)}
        if r.gpu:
            params["gpus_per_node"] = self.gpus_per_task or 1
        if r.memory_gb:
            params["mem_gb"] = r.memory_gb
        if ex.cluster == "slurm":
            params["slurm_job_name"] = f"bench-{kind}"
            params["slurm_signal_delay_s"] = signal_delay_s(params["timeout_min"])
            params["slurm_setup"] = _thread_env(self._cpus(job))
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.slurm_flags:
                params["slurm_additional_parameters"] = dict(self.slurm_flags)
        ex.update_parameters(**params)
        return ex

    def _cpus(self, job: Job) -> int:
        return max(1, self.cpus_per_task or job.resources.cpus)

    def run(self, fn, jobs: list[Job]):
        previous = _sigterm_stops_the_driver()
        try:
            self._submit(fn, jobs)
            while self._pending:
                finished = self._poll()
                problems = [o for _, o in finished if isinstance(o, NodeProblem)]
                for t, outcome in finished:
                    if not isinstance(outcome, NodeProblem):
                        yield t.job, outcome
                if problems:
                    raise _stop_sweep(problems[0], self._cancel())
                if self._pending:
                    time.sleep(self.poll_s)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _submit(self, fn, jobs: list[Job]) -> None:
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.resources.kind, []).append(job)
        for kind, group in groups.items():
            ex = self._executor(kind, group[0])
            try:
                sjobs = ex.map_array(SlurmTask(fn, self._cpus(group[0])), group)
            except Exception as e:  # sbatch said no: the message is Slurm's
                raise PlanError(f"Slurm refused the sweep's {kind} jobs: {e}") from None
            now = time.time()
            self._pending += [_Submitted(job, s, now) for job, s in zip(group, sjobs, strict=True)]

    def _poll(self) -> list[tuple[_Submitted, Any]]:
        """The jobs that ended since the last poll, each with its result or why it has none."""
        now = time.time()
        waiting = [t for t in self._pending if not t.sjob.paths.result_pickle.exists()]
        if self._slurm and waiting and now - self._asked >= self.query_s:
            since = min(t.submitted for t in waiting) - 60
            self._states = slurm.states(sorted({t.sjob.job_id.split("_")[0] for t in waiting}), since)
            self._asked = now
        finished, still = [], []
        for t in self._pending:
            outcome = self._outcome(t, now)
            if outcome is None:
                still.append(t)
            else:
                finished.append((t, outcome))
        self._pending = still
        return finished

    def _outcome(self, t: _Submitted, now: float) -> Any:
        if t.sjob.paths.result_pickle.exists():
            return self._read(t)
        if not self._slurm:
            return self._generic(t)
        return self._verdict(t, self._states.get(t.sjob.job_id), now)

    def _read(self, t: _Submitted) -> Any:
        """The job's result file: its JobResult (or NodeProblem), or what went wrong around it."""
        from submitit.core.utils import pickle_load

        outcome, value = pickle_load(t.sjob.paths.result_pickle)
        if outcome == "success":
            return value
        text = str(value)
        if "UncompletedJobError" in text:  # submitit's local cluster ending a job at its limit
            status = "timed_out" if "timed-out" in text else "preempted"
            return JobInterrupted(status, f"{status} on submitit's {self.cluster or 'cluster'}: {text[-500:]}")
        # the job failed before or after bench's code: loading it, or submitit itself
        state = self._states.get(t.sjob.job_id)
        node = state.node if state else "?"
        lines = [line for line in text.strip().splitlines() if line.strip()]
        reason = f"job {t.sjob.job_id} could not run on node {node}: {lines[-1] if lines else 'no traceback'} (log: {t.sjob.paths.stderr})"
        return NodeProblem(node, reason, {"engine": self.cluster or "submitit", "node": node, "job_id": t.sjob.job_id})

    def _generic(self, t: _Submitted) -> Any:
        """submitit's local and debug clusters: their own job states."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        if not t.sjob.done():
            return None
        try:
            return t.sjob.result()
        except (UncompletedJobError, FailedJobError) as e:
            text, state = str(e), str(t.sjob.state).upper()
            status = "timed_out" if "TIMEOUT" in state or "timed-out" in text else "preempted" if "preempt" in text.lower() else "crashed"
            return JobInterrupted(status, f"{status} on submitit's {self.cluster or 'cluster'} (state {t.sjob.state}): {text[-1500:]}")

    def _verdict(self, t: _Submitted, s: slurm.SlurmState | None, now: float) -> Any:
        """None while the job may still give a result; else why it will not."""
        jid = t.sjob.job_id
        if s is None:
            if now - t.submitted < self.unknown_s:
                return None  # just submitted: Slurm may not list it yet
            return JobInterrupted("lost", self._lost_message(jid), {"ran_on": {"engine": "slurm", "job_id": jid}})
        if not s.ended:
            t.ended = None
            return None
        if t.ended is None or t.ended[0] != s.state:
            t.ended = (s.state, now)
        if now - t.ended[1] < self.settle_s:
            return None
        where = {"engine": "slurm", "node": s.node, "job_id": jid}
        if s.state == "FAILED" and (s.reason == "JobLaunchFailure" or not (t.sjob.paths.stderr.exists() or t.sjob.paths.stdout.exists())):
            reason = (
                f"Slurm could not start job {jid} on node {s.node or '?'} ({s.reason or 'no log was written'}): the node must see the "
                f"submitit folder {self.folder} at the same path (--submitit-folder on a shared filesystem)"
            )
            return NodeProblem(s.node, reason, where)
        status = slurm.ENDS[s.state]
        fields = {
            "node": s.node,
            "ran_on": where,
            "slurm": {"state": s.state, "reason": s.reason, "exit_code": s.exit_code, "derived_exit_code": s.derived_exit_code},
        }
        return JobInterrupted(status, self._message(t, s, status), fields)

    def _message(self, t: _Submitted, s: slurm.SlurmState, status: str) -> str:
        head = f"Slurm job {t.sjob.job_id} on node {s.node or '?'} ended {s.state} without a result"
        why = {
            "cancelled": "it was cancelled (scancel, by a user or an administrator)",
            "preempted": "a job of a higher-priority partition preempted it (PreemptMode=CANCEL; under REQUEUE Slurm reruns it by itself)",
            "timed_out": f"it reached its time limit of {max(1, math.ceil(self.timeout_min))} min: a rerun with a larger --slurm-time redoes it",
        }.get(status)
        if why is None and s.state == "COMPLETED":
            why = f"its process ended well, yet no result file appeared in {t.sjob.paths.folder}: is the submitit folder shared with the node?"
        if why is None:  # crashed
            how = slurm.describe_exit(s)
            why = "; ".join(p for p in (how, "out of memory: give the codec's Resources.memory_gb" if s.state == "OUT_OF_MEMORY" else "") if p)
            why = (why or f"Slurm's reason: {s.reason or 'none given'}") + f". The job's log ends:\n{_tail(t.sjob.paths.stderr)}"
        return f"{head}: {why}. A rerun of the same command redoes it."

    def _lost_message(self, jid: str) -> str:
        known = "" if slurm.has_accounting() else " and this cluster has no accounting (slurmdbd) to ask"
        return (
            f"Slurm job {jid} left no result, and Slurm no longer knows it: squeue forgets an ended job after MinJobAge{known}. "
            "A rerun of the same command redoes it."
        )

    def _cancel(self) -> int:
        """Cancel every job of this sweep still queued or running; how many there were."""
        ids = [t.sjob.job_id for t in self._pending]
        if self._slurm:
            for i in range(0, len(ids), 500):
                slurm.scancel(ids[i : i + 500])
        else:
            for t in self._pending:
                t.sjob.cancel(check=False)
        self._pending = []
        return len(ids)

    def close(self) -> None:
        if self._pending:  # the driver stopped early (Ctrl-C, an error): leave nothing queued
            arrays = sorted({t.sjob.job_id.split("_")[0] for t in self._pending})
            n = self._cancel()
            _log(f"cancelled the {n} job(s) of this sweep still queued or running (arrays {', '.join(arrays)}); the same command run again redoes them")


def _tail(path: Path, lines: int = 12) -> str:
    """The end of a job's log, each line cut short (faulthandler lists every extension module)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(line if len(line) <= 200 else line[:200] + " ..." for line in text[-lines:])
