"""Sweeps as a library: ``run_sweep(SweepConfig(...)) -> SweepResult``.

A sweep is codec x sequence x rate jobs. ``run_sweep`` plans every results folder of the
sweep first (:mod:`bench.plan`: nothing is encoded or written until all of it checks), then
runs each folder's jobs (:mod:`bench.jobs`) through its executor (:mod:`bench.executors`)
and commits each finished job to the results store; the manifest records the provenance
(:mod:`bench.provenance`). The configuration is :class:`bench.config.SweepConfig`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import progress as progress_bars
from . import weights
from .config import SweepConfig
from .executors.base import Executor
from .executors.registry import check_executor, make_executor
from .jobs import JobResult, base_record, run_job
from .metrics import default_metrics, resolve_metrics
from .plan import CONFLICT_FIX, Plan, PlanError, apply_conditions, codec_specs, curve_conflicts, foreign_tables, partition, plan_dataset
from .provenance import now, provenance
from .records import JobRecord, Status
from .store import ResultsStore, TableWriter, read_summaries


@dataclass
class SweepPart:
    """One results folder of a sweep: what ran there, what was skipped, what was noted."""

    out: Path
    records: list[JobRecord]
    skipped: int
    notes: list[str]

    @property
    def failed(self) -> list[JobRecord]:
        return [r for r in self.records if not r.done]


@dataclass
class SweepResult:
    parts: list[SweepPart]

    @property
    def failed(self) -> list[JobRecord]:
        return [r for p in self.parts for r in p.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> pd.DataFrame:
        """The summary.csv rows of every folder the sweep wrote to."""
        return read_summaries([p.out for p in self.parts])


def execute(p: Plan, executor: Executor, store: ResultsStore, prov: dict, progress: bool = True) -> list[JobRecord]:
    """Run the plan, committing each finished job; returns the records of this run's jobs."""
    tables = TableWriter(store, prov)
    results = []
    bar = tqdm(total=len(p.jobs), desc="bench run", unit="job", disable=not progress, file=sys.stderr)
    # a bar per running job redraws lines in place: on a terminal only, never in a log
    bars = progress_bars.JobBars(
        {j.job_id: (f"{j.row_label} {j.sequence.name} {j.rate}", j.row_label, j.frames, j.sequence.width * j.sequence.height) for j in p.jobs},
        enabled=progress and sys.stderr.isatty(),
    )
    try:
        for job, res in _with_bars(executor.run(run_job, p.jobs), bars):
            if isinstance(res, BaseException):
                status = Status(getattr(res, "status", Status.FAILED))  # JobInterrupted: timed_out, preempted
                what = "" if status is not Status.FAILED else "worker crashed: "
                error = f"{what}{type(res).__name__}: {res}"[-4000:]
                # WorkerDied: the signal that ended the worker (SIGABRT, SIGSEGV, SIGKILL)
                fields = {**base_record(job), "status": status, "error": error, **getattr(res, "record_fields", {}), "finished": now()}
                res = JobResult(JobRecord.from_dict(fields))
            # the files first, then the record that names them: a driver killed in between
            # leaves a job without a record, which a rerun redoes
            store.write_files(res.files)
            store.write_files(res.decoded, ResultsStore.DECODED)
            tables.add(res.record, res.frames)
            results.append(res.record)
            bars.finished(job.job_id, res.record.get("timings", {}))
            bar.set_postfix_str(f"{job.row_label} {job.sequence.name} {job.rate}: {res.record.status}")
            bar.update()
    finally:
        bars.close()
        bar.close()
        executor.close()
        tables.finish()
    return results


def _with_bars(results: Iterator, bars: progress_bars.JobBars) -> Iterator:
    """The executor's results, with the jobs' progress going to ``bars`` while it runs them
    (only while the executor is inside, never while the driver commits)."""
    while True:
        with progress_bars.sink(bars if bars.enabled else None):
            item = next(results, None)
        if item is None:
            return
        yield item


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _recheck(p: Plan, store: ResultsStore, force: bool, notify: Callable[[str], None]) -> None:
    """The plan's folder checks once more, under the store's lock; with --force, the records
    of the curves this run replaces are removed before any job runs, so no curve is half old."""
    problems = foreign_tables(store)
    conflicts = curve_conflicts(p.jobs + p.skipped, store)
    if conflicts and not force:
        problems.append(f"{store.root} holds jobs made with other settings:\n  " + "\n  ".join(conflicts.values()) + CONFLICT_FIX)
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))
    for job_id in conflicts:
        store.remove(job_id)
    if conflicts:
        notify(f"{store.root}: --force removed {len(conflicts)} job(s) made with other settings")


def run_sweep(
    config: SweepConfig,
    *,
    executor: Callable[[SweepConfig], Executor] | None = None,
    notify: Callable[[str], None] = _stderr,
    argv: list[str] | None = None,
) -> SweepResult:
    """Plan every results folder of the sweep (all of them before any job runs), then run
    each. ``executor`` makes the executor of one folder's jobs (default: the one the
    configuration names, ``bench.executors.registry.make_executor``); ``notify`` receives the notes
    (skipped metrics, conversions, options not taken, jobs already done)."""
    if config.jobs < 1:
        raise PlanError("jobs must be at least 1")
    # a missing extra, Slurm or a partition that is not there, a Ray head that does not
    # answer: said before anything is planned, run or written
    check_executor(config)
    if config.weights:
        os.environ[weights.ENV] = str(Path(config.weights).expanduser())  # workers inherit it
    config, conditions = apply_conditions(config)
    metrics = resolve_metrics(config.metrics) if config.metrics else default_metrics()
    specs, option_notes = codec_specs(config)
    names = [config.dataset] if config.dataset else list(conditions["datasets"])
    planned = [item for name in names for item in plan_dataset(config, name, specs, metrics, conditions)]
    for note in option_notes:
        notify(f"note: {note}")
    parts = []
    make = executor or make_executor
    for out, p in planned:
        store = ResultsStore(out)
        with store.lock():
            # under the lock: another sweep may have written here meanwhile
            _recheck(p, store, config.force, notify)
            p.jobs, p.skipped = partition(p.jobs + p.skipped, store, config.force)
            notes = [*option_notes, *p.notes, *(f"metric {m} skipped: {why}" for m, why in p.skipped_metrics.items())]
            for note in notes[len(option_notes) :]:
                notify(f"note: {note}")
            if p.skipped:
                notify(f"{out}: {len(p.skipped)} job(s) already done, skipped (--force to redo)")
            prov = provenance(p.codecs, argv=argv, skipped_metrics=p.skipped_metrics, config=config, notes=notes)
            prov["conditions"] = conditions
            records = execute(p, make(config), store, prov, progress=config.progress)
        parts.append(SweepPart(out, records, len(p.skipped), notes))
    return SweepResult(parts)
