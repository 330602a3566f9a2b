"""External processes (encoders, decoders, ffmpeg) that die with the harness process.

A driver or worker killed by ``kill -9``, the OOM killer or a scheduler runs no cleanup, and
its encoder would run on for hours, writing into a scratch folder nobody reads. On Linux
every child started here asks the kernel to send it SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere children start as usual.

The kernel's "parent" is the *thread* that forked, not the process: the child is killed when
that thread ends, even while the process lives. Every call site waits for its child in the
thread that started it (``run``, or ``popen`` followed by ``communicate``), so the child has
ended before that thread can. Do not hand a ``popen`` child to another thread to wait for.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with(parent: int) -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # the parent may have died between fork and prctl: then no signal will ever come
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    if _prctl is None:
        return None
    parent = os.getpid()
    return lambda: _die_with(parent)


def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` whose child is killed when this process (this thread) dies."""
    return subprocess.Popen(cmd, preexec_fn=_preexec(), **kwargs)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose child is killed when this process (this thread) dies."""
    return subprocess.run(cmd, preexec_fn=_preexec(), **kwargs)


def die_with_pool_parent() -> None:
    """In a multiprocessing worker: die when the process that started it dies.

    A pool worker outlives a killed driver until its job ends (its encoder with it); with
    this it dies at once, and its own children after it. The pool's processes are started
    by the thread that submits the jobs, which waits for them all before it returns. A
    worker forked by a fork server (bench.executors.pool) is the server's child: it watches
    the driver itself. A process multiprocessing did not start (a Ray worker) is left alone."""
    parent = multiprocessing.parent_process()
    if _prctl is None or parent is None:
        return
    if os.getppid() in (parent.pid, 1):  # 1: the parent is already gone
        _die_with(parent.pid)
    else:  # forked by a fork server, which outlives the driver while its workers live
        _watch(parent.sentinel)


def _watch(sentinel: int) -> None:
    """Kill this process when the process behind ``sentinel`` ends (multiprocessing's parent
    sentinel: a pipe whose other end only that process holds): a thread waits on it."""

    def wait() -> None:
        multiprocessing.connection.wait([sentinel])
        os.kill(os.getpid(), signal.SIGKILL)  # our own children get theirs from the kernel

    threading.Thread(target=wait, name="bench-dies-with-driver", daemon=True).start()
