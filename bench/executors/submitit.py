"""The submitit executor: Slurm job arrays (one per resource class, ``--cpus-per-task`` from
the codec's threads), or submitit's local and debug clusters.

A job that ends without a result is recorded as what Slurm says it was (``cancelled``,
``preempted``, ``timed_out``, ``crashed``, or ``lost`` when Slurm no longer knows; see
:mod:`bench.executors.slurm`), and a rerun redoes it. Needs the ``[slurm]`` extra;
``submitit`` is imported only where it is used (it is optional)."""

from __future__ import annotations

import argparse
import faulthandler
import math
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from ..jobs import Job, JobResult
from ..plan import PlanError
from ..records import Status
from ..spec import parse_pairs
from . import slurm
from .base import Executor, JobInterrupted, NodeProblem, log, run_on_node, stop_sweep, worker_init

if TYPE_CHECKING:
    from ..config import SweepConfig

NAME = "submitit"
#: the package it needs, and the extra that installs it
EXTRA = ("submitit", "slurm")


class Options(BaseModel):
    """submitit's section of a sweep configuration."""

    #: where: slurm, local or debug (None: Slurm where ``srun`` is, else local)
    submitit_cluster: Literal["slurm", "local", "debug"] | None = None
    #: submitit's scripts and logs, visible to the nodes (None: OUT/.submitit)
    submitit_folder: str | None = None
    slurm_partition: str | None = None
    #: time limit per job, minutes
    slurm_time_min: float = 60
    #: GPUs of a GPU job (None: 1)
    slurm_gpus_per_task: int | None = None
    #: CPUs per job (None: what the codec declares)
    slurm_cpus_per_task: int | None = None
    #: extra sbatch flags (key: value); a list of KEY=VALUE items is read too
    slurm_flags: dict[str, Any] = Field(default_factory=dict)

    @field_validator("slurm_flags", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {k.lstrip("-"): v for k, v in parse_pairs(map(str, value), what="--slurm-flag", example="account=lab").items()}
        if not isinstance(value, dict):
            raise ValueError("sweep configuration 'slurm_flags' must be a mapping of sbatch flags to values")
        return value


def add_arguments(group: argparse._ArgumentGroup) -> None:
    limit = Options.model_fields["slurm_time_min"].default
    group.add_argument("--submitit-cluster", choices=["slurm", "local", "debug"], help="submitit: where (default: slurm if sbatch is here, else local)")
    group.add_argument("--submitit-folder", help="submitit: scripts and logs, visible to the nodes (default: OUT/.submitit)")
    group.add_argument("--slurm-partition")
    group.add_argument("--slurm-time", dest="slurm_time_min", metavar="SLURM_TIME", type=float, help=f"Slurm: time limit per job, minutes (default {limit:g})")
    group.add_argument("--slurm-gpus-per-task", type=int, help="Slurm: GPUs of a GPU job (default 1)")
    group.add_argument("--slurm-cpus-per-task", type=int, help="Slurm: CPUs per job (default: what the codec declares)")
    group.add_argument(
        "--slurm-flag",
        dest="slurm_flags",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra sbatch flag, e.g. --slurm-flag account=lab (repeatable)",
    )


def check(config: SweepConfig) -> None:
    """On Slurm: Slurm answers, and has the partition."""
    if submitit_cluster(config.submitit_cluster) == "slurm":
        check_slurm(config.slurm_partition)


def make(config: SweepConfig) -> Executor:
    folder = config.submitit_folder or str(Path(config.out or "results") / ".submitit")
    return SubmititExecutor(
        folder,
        config.submitit_cluster,
        config.slurm_partition,
        config.slurm_time_min,
        config.slurm_gpus_per_task,
        config.slurm_cpus_per_task,
        dict(config.slurm_flags),
    )


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
    faulthandler.enable()  # a crash in native code leaves the Python stack in the job's log

    def warned(signum, frame):
        log("Slurm's warning signal (SIGUSR2): the time limit is near; the job runs on until Slurm ends it")

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
        worker_init(self.threads)  # torch and numba; OpenMP's variables are set in the job's script
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
                    raise stop_sweep(problems[0], self._cancel())
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
            status = Status.TIMED_OUT if "timed-out" in text else Status.PREEMPTED
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
            status = Status.TIMED_OUT if "TIMEOUT" in state or "timed-out" in text else Status.PREEMPTED if "preempt" in text.lower() else Status.CRASHED
            return JobInterrupted(status, f"{status} on submitit's {self.cluster or 'cluster'} (state {t.sjob.state}): {text[-1500:]}")

    def _verdict(self, t: _Submitted, s: slurm.SlurmState | None, now: float) -> Any:
        """None while the job may still give a result; else why it will not."""
        jid = t.sjob.job_id
        if s is None:
            if now - t.submitted < self.unknown_s:
                return None  # just submitted: Slurm may not list it yet
            return JobInterrupted(Status.LOST, self._lost_message(jid), {"ran_on": {"engine": "slurm", "job_id": jid}})
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

    def _message(self, t: _Submitted, s: slurm.SlurmState, status: Status) -> str:
        head = f"Slurm job {t.sjob.job_id} on node {s.node or '?'} ended {s.state} without a result"
        why = {
            Status.CANCELLED: "it was cancelled (scancel, by a user or an administrator)",
            Status.PREEMPTED: "a job of a higher-priority partition preempted it (PreemptMode=CANCEL; under REQUEUE Slurm reruns it by itself)",
            Status.TIMED_OUT: f"it reached its time limit of {max(1, math.ceil(self.timeout_min))} min: a rerun with a larger --slurm-time redoes it",
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
            log(f"cancelled the {n} job(s) of this sweep still queued or running (arrays {', '.join(arrays)}); the same command run again redoes them")


def _tail(path: Path, lines: int = 12) -> str:
    """The end of a job's log, each line cut short (faulthandler lists every extension module)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(line if len(line) <= 200 else line[:200] + " ..." for line in text[-lines:])
