"""The local executor: jobs on this machine, in this process or in worker processes, with
optional GPU pinning (``--gpus 0,1``: at most one GPU job per device, each in a worker process
that sees only its device through ``CUDA_VISIBLE_DEVICES``; CPU jobs run beside them in their
own workers, which see no GPU)."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..jobs import Job
from ..plan import PlanError
from .base import Executor, pinned_init, worker_init
from .pool import WorkerPool, start_early

if TYPE_CHECKING:
    from ..config import SweepConfig

NAME = "local"
#: the package it needs, and the extra that installs it (None: nothing beyond bench)
EXTRA = None


class Options(BaseModel):
    """The local executor's section of a sweep configuration."""

    #: GPUs to pin jobs to, one job per GPU at a time: "0,1", "auto", or None (no pinning)
    gpus: str | None = None


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--gpus", help="local: pin jobs to these GPUs, one job per GPU at a time (0,1,2 or auto); CPU jobs run beside them")


def check(config: SweepConfig) -> None:
    """Nothing to ask before planning (``--gpus`` is read when the executor is made); with
    worker processes to come, their fork server starts now, importing while the sweep plans."""
    if config.jobs > 1 and not config.gpus:
        start_early()


def make(config: SweepConfig) -> Executor:
    return local_executor(config.jobs, visible_gpus(config.gpus))


def visible_gpus(spec: str | None) -> list[str]:
    """``--gpus``: "0,1,3", "auto" (every GPU torch sees) or None (no pinning)."""
    if not spec:
        return []
    if spec == "auto":
        import torch  # heavy (seconds) and only needed to count the GPUs

        n = torch.cuda.device_count()
        if not n:
            raise PlanError("--gpus auto: no GPU is visible on this machine")
        return [str(i) for i in range(n)]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids or any(not g.isdigit() for g in ids) or len(set(ids)) != len(ids):
        raise PlanError(f"--gpus takes distinct device numbers (0,1,2) or auto, got {spec!r}")
    return ids


@dataclass
class LocalExecutor:
    """``jobs=1``: in this process (easy to debug), unless a job's codec runs native code
    (``Resources.isolate``); ``jobs>1``, or such a job: worker processes that outlive their
    jobs' crashes (:class:`bench.executors.pool.WorkerPool`)."""

    jobs: int = 1
    _pool: Any = field(default=None, init=False)

    def run(self, fn, jobs):
        if self.jobs <= 1 and not any(j.resources.isolate for j in jobs):
            for job in jobs:
                try:
                    yield job, fn(job)
                except BaseException as e:  # fn records its own failures; this is a crash
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    yield job, e
            return
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self._pool = WorkerPool(self.jobs, worker_init, (threads,))
        yield from self._pool.run(fn, jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


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
        gpu_pools = {g: cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=pinned_init, initargs=(g, threads)) for g in self.gpus}
        cpu_pool = cf.ProcessPoolExecutor(self.cpu_workers, mp_context=ctx, initializer=pinned_init, initargs=(None, threads))
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
