"""Local worker processes that survive their jobs' crashes.

A learned codec runs native code (a C++ entropy coder, CUDA kernels) inside the Python process
that calls it: a ``double free`` or an ``abort()`` there kills the process, not just the job.
``WorkerPool`` runs jobs in long-lived worker processes, one job at a time each, so such a
crash costs the job that was running (reported as :class:`WorkerDied`, with the signal) and
the worker is replaced; the other jobs go on. ``concurrent.futures.ProcessPoolExecutor`` is
not used because one dead worker breaks the whole pool and fails every pending job.

A worker also serves many jobs, and starts warm: workers are forked from a fork server that
has imported the harness (torch, pandas, numba's kernels) once per sweep, which
:func:`start_early` starts while the driver plans. A spawned worker took 1.5-4 s to import
them, longer than a short job.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from .. import progress

#: what ``_collect`` returns for a progress message: the job has not answered yet
_PROGRESS = object()


class WorkerDied(RuntimeError):
    """The process running a job ended without answering (a signal, or ``os._exit``)."""

    def __init__(self, exitcode: int | None):
        self.exitcode = exitcode
        self.signal = signal.Signals(-exitcode).name if exitcode is not None and exitcode < 0 else None
        how = f"killed by {self.signal}" if self.signal else f"exited with status {exitcode}"
        super().__init__(f"the worker process running this job was {how} (a crash in native code, or out of memory); the other jobs went on")

    @property
    def record_fields(self) -> dict[str, Any]:
        return {"signal": self.signal, "exitcode": self.exitcode}


class WorkerError(RuntimeError):
    """``fn`` raised in the worker; the message carries the worker's traceback."""


#: what the fork server imports once, so that each worker forked from it starts with them
#: (torch, pandas, numba's compiled kernels: 1.5-4 s a process, longer than a short job)
PRELOAD = ["bench.jobs", "bench._kernels"]


def context() -> multiprocessing.context.BaseContext:
    """Where the platform has it, a fork server that imports :data:`PRELOAD` once (a fresh,
    single-threaded process: never one that ran OpenMP or CUDA, so forking it is safe); each
    worker forks from it warm. Elsewhere, spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early() -> None:
    """Start the fork server now, so that its imports overlap the driver's planning."""
    if context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _serve(conn: Connection, init: Callable[..., None] | None, initargs: tuple, env: dict[str, str], path: list[str]) -> None:
    # a worker forked from the fork server has the server's environment and path, which
    # were the driver's when the server started: take the driver's as they are now
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = path
    if init is not None:
        init(*initargs)
    # a job's progress goes to the driver on the job's own pipe, before its answer; progress
    # may come from another thread (ffmpeg's reader), and a message larger than a pipe's
    # buffer is written in parts, so one lock keeps every message whole
    sending = threading.Lock()

    def send(message: tuple) -> None:
        with sending:
            conn.send(message)

    with progress.sink(lambda event: send(("progress", event))):
        while True:
            msg = conn.recv()
            if msg is None:
                return
            fn, job = msg
            try:
                send(("ok", fn(job)))
            except BaseException as e:  # sent back as text: an exception may not pickle
                send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Any = None


@dataclass
class WorkerPool:
    """``size`` workers (:func:`context`), each fed one job at a time; ``init(*initargs)`` runs
    once in each."""

    size: int
    init: Callable[..., None] | None = None
    initargs: tuple = ()
    _workers: list[_Worker] = field(default_factory=list, init=False)

    def _start(self) -> _Worker:
        ctx = context()
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, self.init, self.initargs, dict(os.environ), list(sys.path)), daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def run(self, fn: Callable, jobs: list) -> Iterator[tuple[Any, Any]]:
        """Yield (job, result, or WorkerDied / WorkerError) as jobs finish."""
        pending = deque(jobs)
        while pending or any(w.job is not None for w in self._workers):
            self._feed(fn, pending)
            busy = [w for w in self._workers if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                if w.conn in ready or w.process.sentinel in ready:
                    job, answer = w.job, self._collect(w)
                    if answer is not _PROGRESS:
                        yield job, answer

    def _feed(self, fn: Callable, pending: deque) -> None:
        while pending and (idle := self._idle()) is not None:
            idle.job = pending.popleft()
            idle.conn.send((fn, idle.job))

    def _idle(self) -> _Worker | None:
        for w in self._workers:
            if w.job is None:
                return w
        return self._start() if len(self._workers) < self.size else None

    def _collect(self, w: _Worker) -> Any:
        """The answer of a worker that is ready, or WorkerDied (and the worker is dropped)."""
        try:
            kind, value = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=10)
            self._workers.remove(w)
            return WorkerDied(w.process.exitcode)
        if kind == "progress":  # the job goes on
            progress.forward(value)
            return _PROGRESS
        w.job = None
        return value if kind == "ok" else WorkerError(value)

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(timeout=30)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        self._workers = []
