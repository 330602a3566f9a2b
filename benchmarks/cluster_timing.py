"""Timestamps a job takes of itself on a cluster node, for benchmarks/test_cluster_startup.py.

Imported by the job's process (submitit unpickles ``Timed`` there): it imports nothing heavy
of its own, so it adds nothing to the start-up it measures."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path


def process_start() -> float:
    """When this process started (epoch seconds), from /proc."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


class Timed:
    """``fn(job)``, its record stamped with when the process started, when ``fn`` was called
    and when it returned, and in which process."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, job):
        enter, start = time.time(), process_start()
        result = self.fn(job)
        timing = {"process_start": start, "enter": enter, "exit": time.time(), "pid": os.getpid()}
        return dataclasses.replace(result, record=result.record.replace(timing=timing))
