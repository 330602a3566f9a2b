"""What Slurm says about a sweep's jobs, and what each end is recorded as.

submitit learns a job's end from its result file, or from ``sacct``; it counts ``PREEMPTED``
as unfinished and, without accounting, never learns that a job ended without a result. The
driver asks the scheduler itself instead: ``squeue`` first (slurmctld's live view, which still
holds an ended job for ``MinJobAge``, 300 s by default, accounting or not), then ``sacct``
for what squeue no longer holds and for exit codes. A job that ended without a result is
recorded as what Slurm says it was (:data:`ENDS`), once that state has held for a moment: a
job preempted under ``PreemptMode=REQUEUE`` shows ``PREEMPTED`` in sacct for a few seconds
before it is pending again.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass

from ..records import Status

#: Slurm job states after which no result will come, and the record status of each
ENDS = {
    "CANCELLED": Status.CANCELLED,
    "PREEMPTED": Status.PREEMPTED,
    "TIMEOUT": Status.TIMED_OUT,
    "DEADLINE": Status.TIMED_OUT,
    "FAILED": Status.CRASHED,
    "OUT_OF_MEMORY": Status.CRASHED,
    "NODE_FAIL": Status.CRASHED,
    "BOOT_FAIL": Status.CRASHED,
    # ended well, yet no result file: the node could not write the submitit folder
    "COMPLETED": Status.CRASHED,
}

_TIMEOUT_S = 60  # a slurmctld that does not answer a query in a minute is not there


@dataclass(frozen=True)
class SlurmState:
    """One job (``123`` or array task ``123_4``) as Slurm reports it."""

    state: str
    node: str = ""
    reason: str = ""
    #: ``sacct``'s ExitCode and DerivedExitCode, ``status:signal``; "" without accounting
    exit_code: str = ""
    derived_exit_code: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDS


def _run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _expand(job_id: str) -> list[str]:
    """``123_[2-4,7]`` -> 123_2, 123_3, 123_4, 123_7 (sacct's pending array tasks)."""
    m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def squeue(array_ids: list[str]) -> dict[str, SlurmState]:
    """slurmctld's view of these jobs' tasks, ended ones included while it holds them."""
    proc = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(array_ids), "-o", "%i|%T|%N|%r"])
    if proc is None or proc.returncode:  # one id it no longer holds, alone, is an error
        return {}
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            states[parts[0]] = SlurmState(parts[1], parts[2], parts[3])
    return states


def sacct(array_ids: list[str], since: float | None = None) -> dict[str, SlurmState] | None:
    """The accounting database's view (None: no accounting, e.g. no slurmdbd). ``since``
    (epoch seconds) leaves out older jobs of the same id: a controller whose state was reset
    numbers its jobs from 1 again, while the database keeps the old ones."""
    fields = "JobID,State,NodeList,Reason,ExitCode,DerivedExitCode"
    window = ["-S", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))] if since else []
    proc = _run(["sacct", "-n", "-P", *window, "-j", ",".join(array_ids), "-o", fields])
    if proc is None or proc.returncode:
        return None
    states, step_signals = {}, {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        job_id, _, step = parts[0].partition(".")
        if step:  # srun's step: where a signal that killed the job's process shows (0:11)
            if parts[4].partition(":")[2] not in ("", "0"):
                step_signals.setdefault(job_id, parts[4])
            continue
        # "CANCELLED by 0": the state, then who
        state = SlurmState(parts[1].split()[0] if parts[1] else "", parts[2], parts[3], parts[4], parts[5])
        for one in _expand(job_id):
            states[one] = state
    for job_id, code in step_signals.items():
        s = states.get(job_id)
        if s and s.derived_exit_code.partition(":")[2] in ("", "0"):
            states[job_id] = SlurmState(s.state, s.node, s.reason, s.exit_code, code)
    return states


def states(array_ids: list[str], since: float | None = None) -> dict[str, SlurmState]:
    """Every task of these arrays Slurm knows: squeue's state (live), sacct's exit codes."""
    if not array_ids:
        return {}
    live = squeue(array_ids)
    acct = sacct(array_ids, since) or {}
    merged = dict(acct)
    for job_id, s in live.items():
        a = acct.get(job_id)
        merged[job_id] = SlurmState(s.state, s.node or (a.node if a else ""), s.reason, a.exit_code if a else "", a.derived_exit_code if a else "")
    return merged


def has_accounting() -> bool:
    return sacct(["1"]) is not None


def describe_exit(s: SlurmState) -> str:
    """``0:11`` -> "killed by SIGSEGV"; ``1:0`` -> "exit status 1"; "" when unknown."""
    for code in (s.derived_exit_code, s.exit_code):
        status, _, sig = code.partition(":")
        if sig and sig.isdigit() and int(sig):
            try:
                return f"killed by {signal.Signals(int(sig)).name}"
            except ValueError:
                return f"killed by signal {sig}"
        if status.isdigit() and int(status):
            return f"exit status {status}"
    return ""


def scancel(job_ids: list[str]) -> bool:
    """Cancel these jobs (array tasks or whole arrays); whether scancel ran."""
    if not job_ids:
        return True
    proc = _run(["scancel", *job_ids])
    return proc is not None and proc.returncode == 0


def partitions() -> dict[str, str]:
    """Partition -> availability ("up", "down", ...); raises OSError with sinfo's words when
    Slurm does not answer."""
    proc = _run(["sinfo", "-h", "-o", "%P|%a"])
    if proc is None:
        raise OSError("sinfo could not be run, or did not answer within a minute")
    if proc.returncode:
        raise OSError(proc.stderr.strip() or f"sinfo exited with status {proc.returncode}")
    parts = {}
    for line in proc.stdout.splitlines():
        name, _, avail = line.partition("|")
        parts[name.rstrip("*")] = avail
    return parts
