"""Where a sweep's jobs run: this machine (with GPU pinning), a Ray cluster, or Slurm (submitit).

Every executor implements ``bench.sweep.Executor``: ``run(fn, jobs)`` yields (job, result or
exception) as jobs finish, and ``close()``. Workers only encode, decode and measure
(``bench.sweep.run_job``) and return the bitstream, per-frame table and logs; the driver
alone writes the results store, one atomic commit per job, so a worker that dies can leave
nothing half-written and a job retried elsewhere is stored once.

Scheduling is by a job's :class:`bench.codec.Resources` (GPU or not, CPU threads, memory):

- local: ``--gpus 0,1`` runs at most one GPU job per device, each in a worker process that
  sees only its device (``CUDA_VISIBLE_DEVICES``); CPU jobs run beside them in their own
  workers, which see no GPU.
- Ray: ``num_gpus``/``num_cpus`` per task (Ray sets ``CUDA_VISIBLE_DEVICES``), bounded
  retries when a worker dies.
- submitit: one job array per resource class; a job past its time limit or preempted comes
  back as :class:`JobInterrupted` and is recorded so, and a rerun redoes it.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sweep import PINNED_ENV, Job, LocalExecutor, PlanError

EXTRAS = {"ray": ("ray", "ray"), "submitit": ("submitit", "slurm")}


class JobInterrupted(RuntimeError):
    """A job the cluster stopped (time limit, preemption, node failure): ``status`` says which."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def require(executor: str) -> None:
    """Refuse an executor whose package is missing, before anything runs."""
    if executor == "local":
        return
    if executor not in EXTRAS:
        raise PlanError(f"unknown executor {executor!r}: local, ray or submitit")
    module, extra = EXTRAS[executor]
    if importlib.util.find_spec(module) is None:
        raise PlanError(f"--executor {executor} needs the [{extra}] extra ({module} is not installed): pip install 'diffsit-bench[{extra}]'")


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


def _ray_task(fn, job: Job):
    import ray

    if ray.get_gpu_ids():  # Ray pinned this task: CUDA_VISIBLE_DEVICES holds its GPU
        os.environ[PINNED_ENV] = ",".join(str(g) for g in ray.get_gpu_ids())
    from .sweep import _worker_init

    _worker_init(max(1, job.resources.cpus))
    return fn(job)


@dataclass
class RayExecutor:
    """``address``: a running cluster ("auto", "ray://head:10001"); None starts a local Ray
    with ``num_cpus``/``num_gpus`` (logical resources: ``num_gpus=2`` on a CPU machine
    schedules as if it had two). ``max_retries``: how often a job whose worker died is
    rerun before it is recorded failed."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_retries: int = 2
    _started: bool = field(default=False, init=False)

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_") or k in ("NUMBA_CACHE_DIR", "DIFFSIT_WAN_DIR")}
        if self.address is None:
            # a local cluster runs this checkout: the workers get the driver's import path
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            ray.init(num_cpus=self.num_cpus, num_gpus=self.num_gpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        else:
            ray.init(address=self.address, log_to_driver=False, runtime_env={"env_vars": env})
        self._started = True

    def run(self, fn, jobs: list[Job]):
        import ray

        self._init()
        task = ray.remote(_ray_task)
        refs: dict[Any, Job] = {}
        for job in jobs:
            r = job.resources
            opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": 1 if r.gpu else 0, "max_retries": self.max_retries, "retry_exceptions": False}
            if r.memory_gb:
                opts["memory"] = int(r.memory_gb * 2**30)
            refs[task.options(**opts).remote(fn, job)] = job
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                yield job, ray.get(done[0])
            except Exception as e:  # retries exhausted (WorkerCrashedError, ...)
                yield job, e

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


# --- Slurm through submitit -------------------------------------------------------------------------


@dataclass
class SubmititExecutor:
    """Job arrays through submitit: ``cluster`` "slurm", "local" (subprocesses on this
    machine, time limits enforced) or "debug" (in this process), None to let submitit pick.
    The folder holds submitit's scripts and logs (shared with the nodes on Slurm)."""

    folder: str | os.PathLike = "results/.submitit"
    cluster: str | None = None
    partition: str | None = None
    timeout_min: float = 60
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    slurm_flags: dict[str, str] = field(default_factory=dict)
    poll_s: float = 2.0

    def _executor(self, kind: str, job: Job):
        import submitit

        ex = submitit.AutoExecutor(folder=str(Path(self.folder) / kind / "%j"), cluster=self.cluster)
        r = job.resources
        # submitit counts whole minutes
        params: dict[str, Any] = {"timeout_min": max(1, math.ceil(self.timeout_min)), "cpus_per_task": self.cpus_per_task or r.cpus}
        if r.gpu:
            params["gpus_per_node"] = self.gpus_per_task or 1
        if r.memory_gb:
            params["mem_gb"] = r.memory_gb
        if ex.cluster == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.slurm_flags:
                params["slurm_additional_parameters"] = dict(self.slurm_flags)
        ex.update_parameters(**params)
        return ex

    def run(self, fn, jobs: list[Job]):
        from submitit.core.utils import FailedJobError, UncompletedJobError

        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.resources.kind, []).append(job)
        pending = []
        for kind, group in groups.items():
            ex = self._executor(kind, group[0])
            pending += list(zip(ex.map_array(fn, group), group, strict=True))
        while pending:
            still = []
            for sjob, job in pending:
                if not sjob.done():
                    still.append((sjob, job))
                    continue
                try:
                    yield job, sjob.result()
                except (UncompletedJobError, FailedJobError) as e:
                    text, state = str(e), str(sjob.state).upper()
                    if "TIMEOUT" in state or "timed-out" in text or "TimeoutError" in text:
                        status = "timed_out"
                    elif "PREEMPT" in state or "preempt" in text.lower():
                        status = "preempted"
                    elif isinstance(e, UncompletedJobError) or "UncompletedJobError" in text:
                        status = "interrupted"
                    else:
                        yield job, e
                        continue
                    yield job, JobInterrupted(status, f"{status} on {self.cluster or 'the cluster'} (state {sjob.state}): {text[-500:]}")
                except Exception as e:
                    yield job, e
            pending = still
            if pending:
                time.sleep(self.poll_s)

    def close(self) -> None:
        pass
