"""What every executor shares: the interface, the worker set-up, and the node check.

An executor's ``run(fn, jobs)`` yields (job, result or exception) as jobs finish, and its
``close()`` cancels what is still queued or running (Ctrl-C). Workers only encode, decode and
measure (``bench.jobs.run_job``) and return the bitstream, per-frame table and logs; the
driver alone writes the results store, one atomic commit per job, so a worker that dies can
leave nothing half-written and a job retried elsewhere is stored once.

On a cluster every job first checks its node (:func:`node_problem`): a node that cannot read
the data or the weights stops the sweep with the reason (:class:`NodeUnusable`) instead of
failing every job the queue hands it. Records say where they ran (``ran_on``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import children, weights
from ..jobs import PINNED_ENV, Job, JobResult
from ..plan import PlanError
from ..records import JobRecord, Status


class Executor(Protocol):
    def run(self, fn: Callable[[Job], JobResult], jobs: list[Job]) -> Iterator[tuple[Job, JobResult | BaseException]]:
        """Yield (job, result or exception) as jobs finish, in any order."""

    def close(self) -> None: ...


def worker_init(threads: int) -> None:
    """A worker process's set-up: it dies with its parent, and torch and numba use
    ``threads`` threads."""
    children.die_with_pool_parent()
    import torch  # heavy (seconds): only in worker processes, which run jobs that need it

    torch.set_num_threads(threads)
    try:  # numba: imported here with torch, where the threads are set
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # pragma: no cover - numba is a dependency, threads are a hint
        pass


def pinned_init(gpu: str | None, threads: int) -> None:
    """A local pool worker's start: pinned to ``gpu`` (None: no GPU), ``threads`` threads.
    Here, not in .local, so that a worker never imports the options' schema library."""
    # before torch initialises CUDA in this process: it reads the variable once
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    if gpu is not None:
        os.environ[PINNED_ENV] = gpu
    worker_init(threads)


class JobInterrupted(RuntimeError):
    """A job the cluster ended without a result: ``status`` says how (``cancelled``,
    ``preempted``, ``timed_out``, ``crashed``, ``lost``); ``record_fields`` go into its
    record (where it ran, Slurm's state and exit code)."""

    def __init__(self, status: Status | str, message: str, record_fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = Status(status)
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


def _unavailable_here(record: JobRecord) -> bool:
    """Whether a failed record says the node lacks what the job needs (an encoder, weights),
    which ``run_job`` reports as ``CodecError: on node ...``, ``CodecUnavailable`` or
    ``WeightsMissing``, rather than that the job itself failed."""
    if record.get("status") != Status.FAILED:
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
    return dataclasses.replace(result, record=result.record.replace(ran_on=ran_on))


def stop_sweep(problem: NodeProblem, cancelled: int) -> NodeUnusable:
    return NodeUnusable(
        f"the sweep stopped early: {problem.reason} (ran on {problem.ran_on}). "
        f"{cancelled} job(s) not yet run were cancelled; jobs done so far are kept. "
        "Fix the node, or leave it out (--slurm-flag exclude=NODE), and run the same command again."
    )


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
