"""One job's record, typed: what ``bench run`` writes to ``jobs/<job id>.json`` and every
reader takes from it.

A record is the commit point of a job (``bench.store``). Its JSON is unchanged by this
module: :meth:`JobRecord.from_dict` reads any record written so far, and
:meth:`JobRecord.to_dict` gives back the same keys, in the same order, with the same
values, so a record read and written again is the same file. Keys this module does not
know (a newer bench, another tool) are kept in :attr:`JobRecord.extra` and written back
where they were: a reader never loses what it did not understand. What cannot be a record
at all (not an object, no job id, a status no bench writes) is a :class:`RecordError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """A job's ``status``. A ``str`` subclass: ``Status.DONE == "done"``, and JSON holds the
    bare string, as it always did."""

    DONE = "done"
    FAILED = "failed"
    # what a cluster ended without a result (bench.executors.base.JobInterrupted, bench.executors.slurm.ENDS)
    TIMED_OUT = "timed_out"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


class RecordError(ValueError):
    """A file or object that is not a job record; the message says what is wrong."""


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """One job's record. Fields are declared in the order the worker writes them; a field
    that is None and absent from the file stays absent (:meth:`to_dict`). Every job has an
    id and a status; the rest depends on how far it got."""

    job_id: str
    # what the job is (bench.jobs.base_record): the key of its summary row and its config
    config_hash: str | None = None
    config: dict[str, Any] | None = None
    dataset: str | None = None
    sequence: str | None = None
    codec: str | None = None  # the row label (the codec column of the tables)
    codec_name: str | None = None  # the registered codec it ran
    rate: Any = None  # as planned: int, float or str
    # where and when it ran (bench.jobs.run_job)
    source: dict[str, Any] | None = None
    node: str | None = None
    started: str | None = None
    decoded: dict[str, Any] | None = None  # --save-decoded: path (under the store), format, bytes, samples_md5
    status: Status
    # a done job
    summary: dict[str, Any] | None = None  # its summary.csv row
    bitstream: str | None = None  # path under the store
    bitstream_md5: str | None = None
    bitstream_hash: str | None = None
    samples_md5: str | None = None
    metric_specs: list[str] | None = None
    codec_config: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    encoder: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    decode_leaves_out: str | None = None  # bench.codec.EncodeResult.decode_leaves_out
    # a job that did not finish
    error: str | None = None
    traceback: str | None = None
    logs: list[str] | None = None  # the encoder's logs, paths under the store
    signal: str | None = None  # bench.executors.pool.WorkerDied
    exitcode: int | None = None
    slurm: dict[str, Any] | None = None  # bench.executors: the Slurm state that ended it
    ran_on: dict[str, Any] | None = None  # bench.executors: engine, node, cluster job id
    # every job
    notes: list[str] | None = None
    timings: dict[str, float] | None = None
    finished: str | None = None
    #: keys this module does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)
    #: the keys of the file, in its order (empty: every field that is not None, in field order)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise RecordError(f"a job record needs a job_id (a non-empty string), got {self.job_id!r}")
        try:
            object.__setattr__(self, "status", Status(self.status))
        except ValueError:
            known = ", ".join(s.value for s in Status)
            raise RecordError(f"job {self.job_id}: status {self.status!r} is none that bench writes ({known})") from None

    # --- JSON -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        """The record of a ``jobs/<job id>.json`` as parsed; unknown keys go to ``extra``."""
        if isinstance(data, JobRecord):
            return data
        if not isinstance(data, dict):
            raise RecordError(f"a job record is a JSON object, got {type(data).__name__}")
        if "job_id" not in data:
            raise RecordError(f"a job record needs a job_id; this one has {', '.join(map(str, data)) or 'no keys'}")
        if "status" not in data:
            raise RecordError(f"job {data['job_id']!r}: the record has no status")
        known = {k: v for k, v in data.items() if k in _FIELDS}
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**known, extra=extra, keys=tuple(data))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data: the keys it was read with, in their order (then any
        field set since), or, for a record made here, every field that is not None."""
        values = {f: getattr(self, f) for f in _FIELDS}
        values["status"] = self.status.value
        values.update(self.extra)
        order = list(self.keys) + [k for k in (*_FIELDS, *self.extra) if k not in self.keys and values.get(k) is not None]
        return {k: values[k] for k in order if k in values}

    def replace(self, **changes: Any) -> JobRecord:
        """A copy with ``changes`` (a known field, or a key kept in ``extra``)."""
        extra = {k: v for k, v in changes.items() if k not in _FIELDS}
        known = {k: v for k, v in changes.items() if k in _FIELDS}
        return dataclasses.replace(self, **known, extra={**self.extra, **extra})

    # --- reading ----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status is Status.DONE

    def __getitem__(self, key: str) -> Any:
        """``record["summary"]``, as the dicts this type replaces were read (KeyError when the
        record has no such key)."""
        data = self.to_dict()
        return data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord) if f.name not in ("extra", "keys"))


def as_dict(record: JobRecord | dict[str, Any]) -> dict[str, Any]:
    """A record as JSON-ready data, checked: a dict is read as a :class:`JobRecord` first."""
    return JobRecord.from_dict(record).to_dict()
