"""Per-job scratch folders that a killed job cannot leak.

A job encodes and decodes in a folder of its own (raw input for HM/VTM, decoded video: GBs
at 1080p). A job killed with ``kill -9`` or by the OOM killer runs no cleanup, so every
folder lives under one root that the next job on the machine sweeps: ``$BENCH_WORKDIR``, or
``<system tmp>/bench-work-<uid>`` (per user: a shared ``/tmp`` folder would let one user's
folder block or delete another's).

A folder is ``.work-<job id>.<host>.<pid>.<random>`` (the prefix the results store treats as
scratch, :data:`bench.store.WORK_PREFIX`), and its owner holds an exclusive ``flock`` on it
while it lives. The kernel drops the lock when the owner dies however it dies, so "the lock
can be taken" means "the owner is gone", with no trust in PIDs (which get reused). The
host and PID in the name are for people reading ``ls``; the host also limits the sweep to
this machine's folders, since a shared ``$BENCH_WORKDIR`` may sit on a filesystem whose locks
do not reach across nodes. A folder younger than :data:`GRACE_S` is never touched: its owner
may be between creating it and locking it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .store import WORK_PREFIX

ENV = "BENCH_WORKDIR"
GRACE_S = 60.0


class ScratchError(RuntimeError):
    """The scratch root cannot be used; the message says how to pick another."""


def root() -> Path:
    """The scratch root, created if missing."""
    if os.environ.get(ENV):
        base = Path(os.environ[ENV]).expanduser()
        base.mkdir(parents=True, exist_ok=True)
        return base
    base = Path(tempfile.gettempdir()) / f"bench-work-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ScratchError(f"{base} is not a folder of this user (uid {os.getuid()}); set {ENV} to a folder of yours for the jobs' scratch")
    return base


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


@contextlib.contextmanager
def job_dir(job_id: str) -> Iterator[Path]:
    """A fresh scratch folder for one job, locked while the job runs and removed after it;
    the stale folders of dead jobs on this machine are removed first."""
    base = root()
    remove_stale(base)
    path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{job_id}.{_host()}.{os.getpid()}.", dir=base))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock: the folder is kept from sweeps, not lost
            pass
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def remove_stale(base: Path) -> list[Path]:
    """Remove this machine's scratch folders under ``base`` whose owner is dead; return them."""
    removed = []
    for p in base.glob(f"{WORK_PREFIX}*"):
        fd = _lock_if_stale(p)
        if fd is None:
            continue
        try:  # under the dead owner's lock, so two sweeps do not race on it
            shutil.rmtree(p, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(p)
    return removed


def _lock_if_stale(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its lock if its owner is dead, else None."""
    parts = path.name.rsplit(".", 3)
    if len(parts) != 4 or parts[1] != _host() or not parts[2].isdigit():
        return None  # another machine's, or not made by this module
    try:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or time.time() - st.st_mtime < GRACE_S:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: the owner lives (or the filesystem cannot say: keep it)
        os.close(fd)
        return None
    return fd
