"""Sweeps as a library: ``run_sweep(SweepConfig(...)) -> SweepResult``.

A sweep is codec x sequence x rate jobs. Planning checks everything that can be checked
before encoding anything (codec runnable, rates of the right type and range, bit depth the
codec can code, options the codec takes, metrics runnable, sequence files present and long
enough), so that an offline node or a missing encoder fails in the first second, not deep
inside a sweep, and nothing is written.

A job's identity (its cache key) is its configuration *resolved*: the codec's settings and
tool versions (``Codec.identity()``), and each metric's (``Metric.identity()``: which flow
network Ewarp really uses, which weights file and its hash). A recorded job stands for a new
one only if all of it is equal; ``force`` redoes it anyway.

Execution is behind :class:`Executor`: ``LocalExecutor`` runs jobs in this process or in a
process pool; a cluster engine is another implementation of the same two-method interface.
Workers only encode, decode and measure; the parent process alone writes the results store,
one atomic commit per finished job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from . import children, complexity, ffmpeg, scratch, weights
from . import datasets as ds
from . import decoded as decoded_store
from .codec import (
    BitDepthError,
    Codec,
    CodecError,
    EncodeResult,
    Resources,
    ToolFailed,
    UnknownCodec,
    accepted_options,
    codec_class,
    contributed_options,
    create_codec,
    parse_codec_spec,
    register_codec,
)
from .conditions import check_harness, get_conditions
from .conditions import label as conditions_label
from .datasets import Sequence
from .metrics import create_metric, default_metrics, measure, resolve_metrics
from .store import ResultsStore, TableWriter, dumps, file_digest, safe_name
from .video import Video


class PlanError(ValueError):
    """The sweep cannot start; nothing was encoded."""


class SweepConfigError(ValueError):
    """A sweep configuration that cannot be read (unknown key, wrong type)."""


# --- the configuration -----------------------------------------------------------------------


@dataclass
class SweepConfig:
    """Everything a sweep needs; the CLI's ``run`` flags and a golden set's config.json map
    onto it one to one (``SweepConfig.from_dict``)."""

    #: codec specs, ``name[:key=value...]``
    codecs: list[str]
    #: a registered dataset name, or a .yuv file / folder of them
    dataset: str | None
    #: rate points in each codec's own knob; None: each codec's default ladder
    rates: list[str] | None = None
    sequences: list[str] | None = None
    #: first N frames; None: the dataset's default length; 0: all
    frames: int | None = None
    #: metric specs or column names; None: every metric that can run here
    metrics: list[str] | None = None
    #: results folder; None: results/<dataset>/<codec>/ per codec
    out: str | None = None
    data_root: str | None = None
    #: geometry, rate and depth of raw .yuv input whose name does not say
    size: tuple[int, int] | None = None
    fps: float | None = None
    bit_depth: int | None = None
    #: frames between intra frames, for every codec of the sweep (each must take it)
    intra_period: int | None = None
    #: device for metrics and for codecs that take one
    device: str = "cpu"
    #: parallel jobs (processes) of the local executor
    jobs: int = 1
    #: where jobs run: local, ray or submitit (bench.executors)
    executor: str = "local"
    #: GPUs to pin jobs to, one job per GPU at a time: "0,1", "auto", or None (no pinning)
    gpus: str | None = None
    #: Ray: a cluster address (None: start a local Ray) and a local Ray's logical resources
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    ray_num_gpus: int | None = None
    ray_max_retries: int = 2
    #: submitit: cluster (slurm, local, debug; None: submitit's choice), its folder, and Slurm's
    #: partition, time limit (minutes), GPUs and CPUs per task, extra sbatch flags (key: value)
    submitit_cluster: str | None = None
    submitit_folder: str | None = None
    slurm_partition: str | None = None
    slurm_time_min: float = 60
    slurm_gpus_per_task: int | None = None
    slurm_cpus_per_task: int | None = None
    slurm_flags: dict[str, str] = field(default_factory=dict)
    force: bool = False
    #: keep each job's decoded video (decoded/<job>.mkv, lossless FFV1) for `bench visualize`
    save_decoded: bool = False
    #: the most raw video (GB) --save-decoded may keep in one sweep; the plan refuses more
    save_decoded_limit_gb: float = 20.0
    #: folder of pretrained weights files (sets $BENCH_WEIGHTS)
    weights: str | None = None
    #: harness-wide codec options (``ffmpeg``, and the locations plugins contribute),
    #: passed to every codec of the sweep that takes them
    codec_options: dict[str, Any] = field(default_factory=dict)
    #: named test conditions (bench.conditions): frames, intra period, datasets and anchor
    #: ladders where no other field says otherwise
    conditions: str | None = None
    #: free text (a golden set says what it is for)
    about: str = ""
    progress: bool = True

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """From a mapping (JSON); an unknown key or a value of the wrong type is a
        SweepConfigError naming it and the valid keys."""
        if not isinstance(data, dict):
            raise SweepConfigError(f"a sweep configuration is a mapping of keys to values, not {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise SweepConfigError(f"unknown sweep configuration key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(cls.keys())}")
        missing = [k for k in ("codecs", "dataset") if k not in data and not (k == "dataset" and data.get("conditions"))]
        if missing:
            raise SweepConfigError(f"the sweep configuration needs {' and '.join(missing)}")
        d = dict(data)

        def listify(key):
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, str):
                v = [t.strip() for t in v.split(",") if t.strip()]
            if not isinstance(v, (list, tuple)):
                raise SweepConfigError(f"sweep configuration {key!r} must be a list or a comma-separated string, got {v!r}")
            return [str(x) for x in v]

        d["codecs"] = listify("codecs")
        for key in ("rates", "sequences", "metrics"):
            d[key] = listify(key)
        if str(d.get("frames", "")).lower() == "all":
            d["frames"] = 0
        for key, kind in (
            ("frames", int),
            ("intra_period", int),
            ("bit_depth", int),
            ("jobs", int),
            ("fps", float),
            ("ray_num_cpus", int),
            ("ray_num_gpus", int),
            ("ray_max_retries", int),
            ("slurm_time_min", float),
            ("slurm_gpus_per_task", int),
            ("slurm_cpus_per_task", int),
        ):
            if d.get(key) is not None:
                try:
                    d[key] = kind(d[key])
                except (TypeError, ValueError):
                    raise SweepConfigError(f"sweep configuration {key!r} must be {'an integer' if kind is int else 'a number'}, got {d[key]!r}") from None
        if d.get("size") is not None:
            try:
                w, h = d["size"].lower().split("x") if isinstance(d["size"], str) else d["size"]
                d["size"] = (int(w), int(h))
            except (TypeError, ValueError):
                raise SweepConfigError(f"sweep configuration 'size' must be WxH or [W, H], got {d['size']!r}") from None
        if d.get("executor", "local") not in ("local", "ray", "submitit"):
            raise SweepConfigError(f"sweep configuration 'executor' must be local, ray or submitit, got {d['executor']!r}")
        if not isinstance(d.get("slurm_flags", {}), dict):
            raise SweepConfigError("sweep configuration 'slurm_flags' must be a mapping of sbatch flags to values")
        if not isinstance(d.get("codec_options", {}), dict):
            raise SweepConfigError("sweep configuration 'codec_options' must be a mapping of option names to values")
        for key in ("out", "data_root", "weights", "dataset"):
            if d.get(key) is not None:
                d[key] = str(d[key])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "", {}) or k in ("codecs", "dataset")}


@dataclass
class SweepPart:
    """One results folder of a sweep: what ran there, what was skipped, what was noted."""

    out: Path
    records: list[dict]
    skipped: int
    notes: list[str]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") != "done"]


@dataclass
class SweepResult:
    parts: list[SweepPart]

    @property
    def failed(self) -> list[dict]:
        return [r for p in self.parts for r in p.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> pd.DataFrame:
        """The summary.csv rows of every folder the sweep wrote to."""
        from .store import read_summaries

        return read_summaries([p.out for p in self.parts])


@dataclass(frozen=True)
class CodecSpec:
    """One ``--codec`` item: the registry name, its options (harness-wide ones merged in), and
    its label, the ``codec`` column its rows carry (``label_specs``)."""

    label: str
    name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Job:
    dataset: str
    sequence: Sequence
    #: the registry name (what a worker builds); its rows carry ``label``
    codec: str
    codec_options: tuple[tuple[str, Any], ...]
    rate: Any
    frames: int
    metrics: tuple[str, ...]
    device: str = "cpu"
    start: int = 0
    out: str = "results"
    #: the depth the codec codes this source at (the source's, unless the codec declares a
    #: conversion)
    coded_bit_depth: int = 8
    #: JSON of the resolved codec and metric identities (see the module's docstring)
    identity: str = "{}"
    #: what the job needs (executors schedule by it; not part of its identity)
    resources: Resources = Resources()
    #: "module:Class" of the codec, so a worker on any node builds it without the driver's
    #: runtime registrations
    codec_target: str = ""
    #: keep the decoded video (not part of the job's identity: it changes no number)
    save_decoded: bool = False
    #: the codec column of its rows; the registry name unless the sweep labels it
    label: str = ""
    #: the named test conditions it was made under (bench.conditions.label), or ""
    conditions: str = ""
    #: the recorded bitstream and what was measured of it, when only the metrics changed
    #: (``partition``): the worker decodes it again instead of encoding (not part of identity)
    reuse: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def row_label(self) -> str:
        return self.label or self.codec

    @property
    def job_id(self) -> str:
        """Readable, and unique for everything that changes the bitstream: a short hash of the
        unsanitised parts and the settings behind them (two options or frame counts never share
        an id, nor do names that ``safe_name`` would map to one)."""
        c = self.config()
        made_of = {"label": self.row_label, "dataset": self.dataset, "sequence": self.sequence.name, **{k: c[k] for k in _ID_KEYS}}
        digest = hashlib.sha256(dumps(made_of).encode()).hexdigest()[:10]
        return f"{safe_name(f'{self.row_label}-{self.dataset}-{self.sequence.name}-{self.rate}')}-{digest}"

    def config(self) -> dict[str, Any]:
        """What must be equal for a recorded job to stand for this one."""
        return {
            "codec": self.codec,
            "codec_options": dict(self.codec_options),
            "rate": self.rate,
            "source": str(self.sequence.path),
            "geometry": [self.sequence.width, self.sequence.height, self.sequence.bit_depth],
            "coded_bit_depth": self.coded_bit_depth,
            "start": self.start,
            "frames": self.frames,
            **json.loads(self.identity),
            # only when named: a result made without conditions keeps its cache key
            **({"conditions": self.conditions} if self.conditions else {}),
        }

    def bitstream_hash(self) -> str:
        """What makes the bitstream: the configuration without the metrics (and without the
        conditions' label, which names the experiment, not the stream)."""
        return _bitstream_hash(self.config())

    def config_hash(self) -> str:
        return hashlib.sha256(dumps(self.config()).encode()).hexdigest()[:16]


#: the parts of a job's configuration that change its bitstream (its id); the source's path and
#: the tools' versions stay in the cache key only, so a moved data root or an upgrade finds the job
_ID_KEYS = ("codec", "codec_options", "rate", "geometry", "coded_bit_depth", "start", "frames")


def _bitstream_hash(config: dict[str, Any]) -> str:
    made_of = {k: v for k, v in config.items() if k not in ("metrics", "conditions")}
    return hashlib.sha256(dumps(made_of).encode()).hexdigest()[:16]


@dataclass
class JobResult:
    record: dict[str, Any]
    frames: pd.DataFrame | None = None
    #: what travels back to the driver, which alone writes the store: the bitstream and the
    #: encoder's logs, by their name under bitstreams/ (never the decoded video)
    files: dict[str, bytes] = field(default_factory=dict)
    #: the decoded video (--save-decoded), by its name under decoded/
    decoded: dict[str, bytes] = field(default_factory=dict)


class Executor(Protocol):
    def run(self, fn: Callable[[Job], JobResult], jobs: list[Job]) -> Iterator[tuple[Job, JobResult | BaseException]]:
        """Yield (job, result or exception) as jobs finish, in any order."""

    def close(self) -> None: ...


#: set in a worker the executor pinned to one GPU (CUDA_VISIBLE_DEVICES holds only it)
PINNED_ENV = "BENCH_PINNED_GPU"


def _worker_init(threads: int) -> None:
    children.die_with_pool_parent()
    import torch

    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # pragma: no cover - numba is a dependency, threads are a hint
        pass


@dataclass
class LocalExecutor:
    """``jobs=1``: in this process (easy to debug), unless a job's codec runs native code
    (``Resources.isolate``); ``jobs>1``, or such a job: worker processes that outlive their
    jobs' crashes (``bench.workers.WorkerPool``)."""

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
        from .workers import WorkerPool

        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self._pool = WorkerPool(self.jobs, _worker_init, (threads,))
        yield from self._pool.run(fn, jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


# --- the job --------------------------------------------------------------------------------


def _same_video(a: Video, b: Video) -> bool:
    return (a.frames, a.height, a.width, a.bit_depth) == (b.frames, b.height, b.width, b.bit_depth) and all(
        np.array_equal(getattr(a, p), getattr(b, p)) for p in "yuv"
    )


def _base_record(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "config_hash": job.config_hash(),
        "config": job.config(),
        "dataset": job.dataset,
        "sequence": job.sequence.name,
        "codec": job.row_label,
        "codec_name": job.codec,
        "rate": job.rate,
    }


def run_job(job: Job) -> JobResult:
    """Encode (or reuse the recorded bitstream, ``job.reuse``), decode from the file, measure.
    Never raises: failures become records.

    Runs wherever the executor puts it: it works in a local scratch folder, reads the source
    from the data root, and returns the bitstream and logs in the result for the driver to
    store."""
    node = socket.gethostname()
    record: dict[str, Any] = {
        **_base_record(job),
        "source": {"path": str(job.sequence.path), "start": job.start, "frames": job.frames, "bit_depth": job.sequence.bit_depth},
        "node": node,
        "started": _now(),
    }
    timings: dict[str, float] = {}
    notes: list[str] = []
    files: dict[str, bytes] = {}
    try:
        codec, metrics, options = _build(job, node)
        ref = job.sequence.open(frames=job.frames, start=job.start)
        if job.coded_bit_depth != ref.bit_depth:
            notes.append(f"{job.codec} codes {job.coded_bit_depth}-bit: the {ref.bit_depth}-bit source was converted for it and its output back")
        with scratch.job_dir(job.job_id) as tmp:
            coded = _coded(job, codec, ref, Path(tmp), timings, files, notes)
            dist = _decoded(job, codec, coded, Path(tmp), timings).to_bit_depth(ref.bit_depth)
            samples = decoded_store.samples_md5(dist)
            values = _measured(job, ref, dist, metrics, samples, timings, notes)
            decoded_files = _kept_decoded(job, dist, Path(tmp), options, samples, record)
            frames, summary = _tables(job, ref, coded, values, timings)
        record.update(
            status="done",
            summary=summary,
            bitstream=summary["bitstream"],
            bitstream_md5=summary["bitstream_md5"],
            bitstream_hash=job.bitstream_hash(),
            samples_md5=samples,
            metric_specs=list(job.metrics),
            codec_config=codec.describe(),
            cost=complexity.host(job.device),
            encoder=coded.encoder,
            metrics={m.name: m.describe() for m in metrics},
        )
        result = JobResult(record, frames, files, decoded_files)
    except Exception as e:  # recorded, the sweep goes on
        if _interrupted(e):  # the scheduler stopped the job (time limit, preemption): not its failure
            raise
        if isinstance(e, ToolFailed):  # its message names the stored log, not the scratch folder now gone
            e.keep(job.job_id)
        record.update(status="failed", error=f"{type(e).__name__}: {e}"[-4000:], traceback=traceback.format_exc()[-4000:])
        kept = _failure_logs(job, e)
        if kept:  # the encoder's own account of why, where the next reader can open it
            record["logs"] = [f"{ResultsStore.BITSTREAMS}/{name}" for name in kept]
        result = JobResult(record, None, kept)
    record["notes"] = notes
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    record["finished"] = _now()
    return result


@dataclass
class _Coded:
    """A job's bitstream in its scratch folder, and what the encoder said of it."""

    path: Path
    per_frame: dict[str, list]
    encoder: dict[str, Any]
    reconstruction: Video | None = None


def _build(job: Job, node: str) -> tuple[Codec, list, dict[str, Any]]:
    """The job's codec (checked here, on the node that runs it) and metrics."""
    if not Path(job.sequence.path).is_file():
        raise FileNotFoundError(
            f"node {node} cannot read the source {job.sequence.path}: the data root must be visible to every worker "
            "(a shared filesystem, mounted at the same path), as must the bench cache for the sample and synthetic sets"
        )
    device = job.device
    options = dict(job.codec_options)
    if os.environ.get(PINNED_ENV):  # the executor pinned this worker to one GPU: it is cuda:0 here
        device = "cuda" if device.startswith("cuda") else device
        if str(options.get("device", "")).startswith("cuda"):
            options["device"] = "cuda"
    if job.codec_target:
        try:
            codec_class(job.codec)
        except UnknownCodec:
            register_codec(job.codec, job.codec_target)
    try:
        codec: Codec = create_codec(job.codec, **options)
        codec.check()
    except Exception as e:
        raise CodecError(f"on node {node}: {e}") from e
    return codec, [create_metric(m, device=device) for m in job.metrics], options


def _coded(job: Job, codec: Codec, ref: Video, work: Path, timings: dict, files: dict, notes: list) -> _Coded:
    """Encode, or write back the recorded bitstream when only the metrics changed."""
    name = f"{job.job_id}{codec.extension}"
    final = work / "out" / name
    final.parent.mkdir()
    if job.reuse is not None:
        final.write_bytes(job.reuse["bitstream"])
        if file_digest(final, "md5") != job.reuse["bitstream_md5"]:
            raise CodecError(f"{name}: the recorded bitstream does not match its recorded MD5; rerun with --force to encode it again")
        notes.append("bitstream reused from this job's earlier record (only metrics changed): not encoded again")
        files[name] = job.reuse["bitstream"]
        return _Coded(final, job.reuse["per_frame"], job.reuse["encoder"])
    t0 = time.perf_counter()
    with complexity.counted(codec.learned, job.device) as macs:
        enc = codec.encode(ref.to_bit_depth(job.coded_bit_depth), job.rate, work)
    macs.flops += codec.take_counted_flops()
    timings["encode_s"] = time.perf_counter() - t0
    if codec.learned:
        timings["encode_kmac_per_px"] = macs.kmac_per_pixel(ref.frames * ref.width * ref.height)
    if not isinstance(enc, EncodeResult):
        raise CodecError(f"{job.codec}: encode() returned {type(enc).__name__}, not a bench.codec.EncodeResult (see docs/architecture.md)")
    os.replace(enc.bitstream, final)
    enc.bitstream = final
    for i, log in enumerate(p for p in enc.logs if Path(p).is_file()):
        files[f"{job.job_id}.enc.log" if i == 0 else f"{job.job_id}.{Path(log).name}"] = Path(log).read_bytes()
    files[name] = final.read_bytes()
    try:
        per_frame = enc.per_frame(ref.frames)
    except CodecError as e:  # per-frame sizes are informative; bpp is the file's
        notes.append(f"no per-frame bits: {e}")
        per_frame = {"bits": [np.nan] * ref.frames, "frame_type": [""] * ref.frames, "qp": [np.nan] * ref.frames}
    return _Coded(final, per_frame, {"command": [str(a) for a in enc.command], "tools": enc.tools}, enc.reconstruction)


def _decoded(job: Job, codec: Codec, coded: _Coded, work: Path, timings: dict) -> Video:
    t0 = time.perf_counter()
    with complexity.counted(codec.learned, job.device) as macs:
        dist = codec.decode(coded.path, work, bit_depth=job.coded_bit_depth)
    macs.flops += codec.take_counted_flops()
    timings["decode_s"] = time.perf_counter() - t0
    if codec.learned:
        timings["decode_kmac_per_px"] = macs.kmac_per_pixel(dist.frames * dist.width * dist.height)
    if dist.bit_depth != job.coded_bit_depth:
        raise CodecError(f"{job.codec}: decode(bit_depth={job.coded_bit_depth}) returned {dist.bit_depth}-bit samples")
    if coded.reconstruction is not None and not _same_video(coded.reconstruction, dist):
        raise CodecError(
            f"{job.codec}: the decoder's output differs from the encoder's reconstruction; "
            "the bitstream does not carry what the encoder used (encoder/decoder mismatch)"
        )
    return dist


def _measured(job: Job, ref: Video, dist: Video, metrics: list, samples: str, timings: dict, notes: list) -> dict[str, np.ndarray]:
    """Every metric's per-frame values; a metric whose identity and decoded samples are those
    of the earlier record keeps its recorded values (metric values are keyed by both)."""
    kept: dict[str, np.ndarray] = {}
    todo = metrics
    if job.reuse is not None and job.reuse.get("samples_md5") == samples:
        old_ids, old_values = job.reuse.get("metric_ids", {}), job.reuse.get("values", {})
        same = [m for m in metrics if old_ids.get(m.name) == _jsonable(m.identity()) and all(c in old_values for c in m.columns)]
        kept = {c: np.asarray(old_values[c], dtype=np.float64) for m in same for c in m.columns}
        todo = [m for m in metrics if m not in same]
        if same:
            notes.append(f"kept the recorded values of {', '.join(m.name for m in same)} (same decoded samples, same metric)")
    t0 = time.perf_counter()
    values = measure(ref, dist, todo, device=job.device) if todo else {}
    timings["metrics_s"] = time.perf_counter() - t0
    return {**kept, **values}


def _kept_decoded(job: Job, dist: Video, work: Path, options: dict, samples: str, record: dict) -> dict[str, bytes]:
    """--save-decoded: the decoded video, lossless, for `bench visualize`."""
    if not job.save_decoded:
        return {}
    kept = work / "out" / f"{job.job_id}{decoded_store.EXTENSION}"
    decoded_store.save(dist, kept, options.get("ffmpeg"))
    record["decoded"] = {
        "path": f"{decoded_store.FOLDER}/{kept.name}",
        "format": "FFV1 (lossless) in Matroska",
        "bytes": kept.stat().st_size,
        "samples_md5": samples,
    }
    return {kept.name: kept.read_bytes()}


def _tables(job: Job, ref: Video, coded: _Coded, values: dict, timings: dict) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The job's frames.csv rows and its summary.csv row."""
    size = coded.path.stat().st_size
    pixels = ref.width * ref.height
    frame_bits = np.asarray(coded.per_frame["bits"], dtype=np.float64)
    key = {"dataset": job.dataset, "sequence": job.sequence.name, "codec": job.row_label, "rate": str(job.rate)}
    frames = pd.DataFrame(
        {
            **key,
            "frame": np.arange(job.start, job.start + ref.frames),
            "frame_type": coded.per_frame["frame_type"],
            "bits": frame_bits,
            "bpp": frame_bits / pixels,
            "qp": np.asarray(coded.per_frame["qp"], dtype=np.float64),
            **values,
        }
    )
    if frames["qp"].isna().all():
        frames = frames.drop(columns="qp")
    summary = {
        **key,
        "frames": ref.frames,
        "width": ref.width,
        "height": ref.height,
        "bit_depth": ref.bit_depth,
        "bytes": size,
        "bits": 8 * size,
        # bpp from the file the decoder read, at the original (unpadded) size
        "bpp": 8 * size / (ref.frames * pixels),
        "bitstream": f"{ResultsStore.BITSTREAMS}/{coded.path.name}",
        "bitstream_md5": file_digest(coded.path, "md5"),
        **({"conditions": job.conditions} if job.conditions else {}),
        # frame-pair metrics (ewarp) have no value on the first frame
        **{c: float(np.nanmean(v)) for c, v in values.items()},
        **{k: round(v, 3) for k, v in timings.items()},
        **{f"{k}_per_frame": round(timings[k] / ref.frames, 4) for k in ("encode_s", "decode_s") if k in timings},
    }
    return frames, summary


def _failure_logs(job: Job, e: BaseException) -> dict[str, bytes]:
    """Logs a failing codec attached to its error (``CodecError.logs``: name -> bytes), named
    after the job so they land under bitstreams/ beside where its bitstream would be."""
    logs = getattr(e, "logs", None)
    if not isinstance(logs, dict):
        return {}
    return {f"{job.job_id}.{safe_name(Path(str(name)).name)}": bytes(data) for name, data in logs.items() if isinstance(data, (bytes, bytearray))}


def _interrupted(e: BaseException) -> bool:
    """Whether ``e`` is a cluster stopping the job (submitit raises it inside the job's
    process when Slurm signals a time limit or preemption), which the executor reports."""
    utils = sys.modules.get("submitit.core.utils")
    return utils is not None and isinstance(e, utils.UncompletedJobError)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- planning ---------------------------------------------------------------------------------


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[Job]
    codecs: dict[str, Codec]
    notes: list[str] = field(default_factory=list)
    skipped_metrics: dict[str, str] = field(default_factory=dict)


def codec_specs(config: SweepConfig) -> tuple[list[CodecSpec], list[str]]:
    """Each codec spec of the sweep with the harness-wide options it takes merged in, and the
    notes on options some codec does not take. ``intra_period`` that a codec does not take is
    a PlanError: a sweep whose codecs used different GOPs would compare them silently."""
    harness = dict(config.codec_options)
    contributed = {o.dest for o in contributed_options()}
    unknown = sorted(set(harness) - contributed - {"ffmpeg"})
    if unknown:
        raise PlanError(
            f"unknown harness-wide codec option(s) {', '.join(unknown)}; the registered codecs contribute: {', '.join(sorted(contributed | {'ffmpeg'}))}"
        )
    if config.intra_period is not None:
        harness["intra_period"] = config.intra_period
    if config.device != "cpu":
        harness["device"] = config.device
    parsed, notes, problems = [], [], []
    taken: set[str] = set()
    for item in config.codecs:
        name, own = parse_codec_spec(item)
        label = own.pop("label", None)
        cls = codec_class(name)  # UnknownCodec lists the valid names
        accepted = accepted_options(cls)
        opts = dict(own)
        for key, value in harness.items():
            if value is None or key in opts:
                continue
            if key in accepted:
                opts[key] = value
                taken.add(key)
            elif key == "intra_period":
                problems.append(
                    f"codec {name} does not take --intra-period (its options: {', '.join(accepted) or 'none'}); "
                    "run it in a sweep of its own, or leave --intra-period out"
                )
            elif key == "device":
                notes.append(f"{name} takes no device and runs on the CPU; --device {value} applies to the metrics")
        parsed.append((name, own, opts, label))
    for key in sorted(set(harness) - taken - {"intra_period", "device"}):
        notes.append(f"no codec of this sweep takes {key} ({', '.join(p[0] for p in parsed)}): it was not used")
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))
    return label_specs(parsed), notes


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=:,-]{0,99}")


def label_specs(parsed: list[tuple[str, dict[str, Any], dict[str, Any], str | None]]) -> list[CodecSpec]:
    """The codec column of each spec: ``label=`` where given, else the registry name, unless
    two specs share that name (``x265:preset=fast,x265:preset=slow``): then each is labelled
    by its own options, so both curves keep their rows instead of one replacing the other."""
    counts: dict[str, int] = {}
    for name, _, _, label in parsed:
        if label is None:
            counts[name] = counts.get(name, 0) + 1
    specs = []
    for name, own, opts, label in parsed:
        if label is None:
            label = name if counts[name] == 1 else ":".join([name, *(f"{k}={v}" for k, v in sorted(own.items()))])
        elif not _LABEL.fullmatch(str(label)):
            raise PlanError(f"codec label {label!r}: use letters, digits and . _ + = : , - (at most 100, starting with a letter or digit)")
        specs.append(CodecSpec(str(label), name, opts))
    return specs


def _identity(codec: Codec, metric_ids: dict[str, Any]) -> str:
    return json.dumps({"codec_identity": _jsonable(codec.identity()), "metrics": metric_ids}, sort_keys=True, default=str)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def plan(
    *,
    codecs: list[CodecSpec] | list[tuple[str, dict[str, Any]]],
    dataset: str,
    sequences: list[Sequence],
    rates: list[str] | dict[str, list[str]] | None,
    frames: int | None,
    metrics: list[str],
    default_frames: int = 96,
    metrics_explicit: bool = True,
    device: str,
    out: Path,
    force: bool = False,
    save_decoded: bool = False,
    save_decoded_limit_gb: float = 20.0,
    conditions: str = "",
) -> Plan:
    """Check the sweep and list its jobs, writing nothing; PlanError says every problem.
    ``rates``: one ladder for every codec, or a ladder per codec name (others: their default)."""
    store = ResultsStore(out)
    codecs = [c if isinstance(c, CodecSpec) else CodecSpec(c[0], c[0], c[1]) for c in codecs]
    problems: list[str] = _foreign_tables(store)
    built: dict[str, Codec] = {}
    for spec in codecs:
        name, options = spec.label, spec.options
        try:
            codec = create_codec(spec.name, **options)
        except (TypeError, ValueError) as e:  # an option it does not take, or a value it refuses
            problems.append(f"codec {name}: {e}")
            continue
        try:
            codec.check()
        except Exception as e:
            problems.append(f"codec {name}: {e}")
        built[name] = codec
    runnable, skipped_metrics, metric_ids = [], {}, {}
    for m in metrics:
        try:
            metric = create_metric(m, device=device)
            metric.check()
            why = "; ".join(f"{seq.name}: {w}" for seq in sequences if (w := metric.unsupported(seq.width, seq.height)))
            if why:
                raise ValueError(why)
            metric_ids[metric.name] = _jsonable(metric.identity())
        except Exception as e:
            if metrics_explicit:
                problems.append(f"metric {m}: {e}")
            else:  # the default set is "what can run here": record what was left out and why
                skipped_metrics[m] = str(e)
            continue
        runnable.append(m)
    metrics = runnable
    lengths = {}
    notes = []
    for seq in sequences:
        have = seq.available_frames()
        if frames is None:  # the dataset's default length is a cap, not a demand
            n = min(default_frames, have)
            if n < default_frames:
                notes.append(f"{seq.name} has {have} frames; using all of them (default is {default_frames})")
        else:
            n = have if frames == 0 else frames
            if n > have:
                problems.append(f"{seq.name} has {have} frames, fewer than --frames {frames} ({seq.path})")
        lengths[seq.name] = n
    ladders, depths = {}, {}
    for name in built:
        codec = built[name]
        try:
            ladder = rates.get(codec.name) if isinstance(rates, dict) else rates
            ladders[name] = [codec.parse_rate(r) for r in (ladder or codec.default_rates)]
        except ValueError as e:
            problems.append(str(e))
        for depth in sorted({seq.bit_depth for seq in sequences}):
            try:
                depths[name, depth] = codec.coded_bit_depth(depth)
            except BitDepthError as e:
                problems.append(f"{', '.join(s.name for s in sequences if s.bit_depth == depth)}: {e}")
            else:
                if depths[name, depth] != depth:
                    notes.append(f"{name} codes {depths[name, depth]}-bit: {depth}-bit sources are converted for it and its output back")
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))

    every = [
        job
        for spec in codecs
        for job in _codec_jobs(
            spec, built[spec.label], dataset, sequences, ladders[spec.label], lengths, depths, metrics, metric_ids, device, out, save_decoded, conditions
        )
    ]
    check_unique(every)
    conflicts = curve_conflicts(every, store)
    if conflicts and not force:
        raise PlanError(f"cannot start the sweep: {out} holds jobs made with other settings:\n  " + "\n  ".join(conflicts.values()) + _CONFLICT_FIX)
    jobs, skipped = partition(every, store, force)
    if save_decoded:
        check_decoded_space(jobs, out, save_decoded_limit_gb)
    return Plan(jobs, skipped, built, notes, skipped_metrics)


def _codec_jobs(
    spec: CodecSpec, codec: Codec, dataset, sequences, ladder, lengths, depths, metrics, metric_ids, device, out, save_decoded, conditions=""
) -> list[Job]:
    """One codec's jobs: every sequence at every rate point."""
    needs = codec.resources()
    if device.startswith("cuda") and not needs.gpu:  # its metrics run on the GPU
        needs = dataclasses.replace(needs, gpu=True)
    common = dict(
        dataset=dataset,
        codec=spec.name,
        label=spec.label,
        codec_options=tuple(sorted(spec.options.items())),
        metrics=tuple(metrics),
        device=device,
        out=str(out),
        identity=_identity(codec, metric_ids),
        resources=needs,
        codec_target=f"{type(codec).__module__}:{type(codec).__qualname__}",
        save_decoded=save_decoded,
        conditions=conditions,
    )
    return [
        Job(sequence=seq, rate=rate, frames=lengths[seq.name], coded_bit_depth=depths[spec.label, seq.bit_depth], **common)
        for seq in sequences
        for rate in ladder
    ]


def check_unique(jobs: list[Job]) -> None:
    """Two jobs of one plan with one id would write one record: a plan error, not a lost row."""
    seen: dict[str, Job] = {}
    twice = []
    for job in jobs:
        if job.job_id in seen:
            twice.append(f"{job.row_label} on {job.sequence.name} at rate {job.rate}")
        seen[job.job_id] = job
    if twice:
        raise PlanError(
            "cannot start the sweep: it lists the same job twice (" + "; ".join(sorted(set(twice))) + "). "
            "Give each rate point once, and each codec spec once (or tell two specs apart with label=NAME)"
        )


_CONFLICT_FIX = (
    "\nA curve made of points coded under different settings is not one curve. "
    "Write this run elsewhere with --out DIR, or pass --force to replace the jobs listed (their records and bitstreams are removed)."
)


def curve_conflicts(jobs: list[Job], store: ResultsStore) -> dict[str, str]:
    """Recorded jobs of the same curve (dataset, sequence, codec label) whose settings differ
    from this run's: frames, options, tool versions, or the identity of a metric both measure.
    Running would mix them in one curve (or, at the same rate, replace half of it). Returns
    each such record's id with what differs."""
    by_curve: dict[tuple, list[dict]] = {}
    for rec in store.records():
        by_curve.setdefault((rec.get("dataset"), rec.get("sequence"), rec.get("codec")), []).append(rec)
    found: dict[str, str] = {}
    planned = {job.job_id for job in jobs}  # a point this run codes again is replaced whole
    for job in jobs:
        want = job.config()
        for rec in by_curve.get((job.dataset, job.sequence.name, job.row_label), []):
            if rec["job_id"] in planned or rec["job_id"] in found:
                continue
            diff = settings_diff(rec.get("config") or {}, want)
            if diff:
                found[rec["job_id"]] = f"{job.row_label} on {job.sequence.name} at rate {rec.get('rate')} ({rec['job_id']}): {diff}"
    return found


def settings_diff(recorded: dict, wanted: dict, limit: int = 4) -> str:
    """What differs between two job configurations, rate and source path aside; '' if nothing."""
    a, b = _flat(recorded), _flat(wanted)
    a_metrics = {k.split(".")[1] for k in a if k.startswith("metrics.")}
    b_metrics = {k.split(".")[1] for k in b if k.startswith("metrics.")}
    shared = a_metrics & b_metrics  # a metric added or left out changes no number of the other
    keys = sorted(
        (k for k in set(a) | set(b) if k not in ("rate", "source") and (not k.startswith("metrics.") or k.split(".")[1] in shared)),
        key=lambda k: (k.split(".")[0] not in _ID_KEYS, k),  # what the user set, before what follows from it
    )
    diffs = [f"{k} {a.get(k, '(none)')!s} (this run: {b.get(k, '(none)')!s})" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: json.dumps(d, sort_keys=True, default=str) if isinstance(d, list) else d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _foreign_tables(store: ResultsStore) -> list[str]:
    """A results folder is `bench run`'s only if its tables are its records' (imported,
    published or another tool's tables would be rewritten from the records, and lost)."""
    rows = store.foreign_rows()
    if not rows:
        return []
    return [
        f"{store.root} holds {rows} summary row(s) that no job record under {store.root / 'jobs'} made "
        "(an imported or published table, or another tool's): `bench run` would rewrite the table and lose them. "
        "Write this run to another --out (a report reads both folders)"
    ]


def check_decoded_space(jobs: list[Job], out: Path, limit_gb: float) -> None:
    """--save-decoded is refused before any job runs when its videos would pass the limit
    or not fit on the disk (decoded videos are big: 1080p is 3 MB a frame raw)."""
    raw = sum(decoded_store.raw_bytes(j.sequence.width, j.sequence.height, j.frames, j.sequence.bit_depth) for j in jobs)
    expect = raw * decoded_store.TYPICAL_RATIO
    free = decoded_store.free_bytes(out)
    size = decoded_store.human
    if raw > limit_gb * 1e9:
        raise PlanError(
            f"--save-decoded would keep {size(raw)} of raw video ({len(jobs)} jobs; FFV1 typically stores about "
            f"{size(expect)}), over the {limit_gb:g} GB limit: raise --save-decoded-limit-gb, or keep fewer "
            "(--sequences, --rates, --frames)"
        )
    if expect > free:
        raise PlanError(f"--save-decoded would need about {size(expect)} under {out}, which has {size(free)} free")


def partition(jobs: list[Job], store: ResultsStore, force: bool = False) -> tuple[list[Job], list[Job]]:
    """(to run, already done): a recorded job stands for one whose resolved configuration is
    equal, every part of it."""
    todo, done = [], []
    for job in jobs:
        rec = store.load_record(job.job_id)
        if not force and rec and rec.get("status") == "done" and rec.get("config_hash") == job.config_hash() and _has_decoded(job, rec, store):
            done.append(job)
        elif not force and rec and rec.get("status") == "done" and _bitstream_hash(rec.get("config") or {}) == job.bitstream_hash():
            todo.append(dataclasses.replace(job, reuse=_reuse(rec, store)))  # None if its files are gone
        else:
            todo.append(job)
    return todo, done


def _reuse(rec: dict, store: ResultsStore) -> dict[str, Any] | None:
    """What a job whose bitstream stands needs to be measured again: the stream's bytes, the
    per-frame bits the encoder reported, and the recorded metric values with their keys."""
    name = Path(str(rec.get("bitstream", ""))).name
    path, frames_path = store.bitstreams / name, store.frames_path(rec["job_id"])
    if not name or not path.is_file() or path.is_symlink() or not frames_path.is_file():
        return None
    frames = pd.read_csv(frames_path)
    n = len(frames)
    per_frame = {
        "bits": frames["bits"].tolist() if "bits" in frames else [np.nan] * n,
        "frame_type": frames["frame_type"].fillna("").astype(str).tolist() if "frame_type" in frames else [""] * n,
        "qp": frames["qp"].tolist() if "qp" in frames else [np.nan] * n,
    }
    skip = {"dataset", "sequence", "codec", "rate", "frame", "frame_type", "bits", "bpp", "qp"}
    return {
        "bitstream": path.read_bytes(),
        "bitstream_md5": rec.get("bitstream_md5"),
        "per_frame": per_frame,
        "encoder": rec.get("encoder") or {},
        "samples_md5": rec.get("samples_md5"),
        "metric_ids": (rec.get("config") or {}).get("metrics", {}),
        "values": {c: frames[c].tolist() for c in frames.columns if c not in skip},
    }


def _has_decoded(job: Job, rec: dict, store: ResultsStore) -> bool:
    """Whether a recorded job has what --save-decoded asks for (a job done without it is
    redone: its numbers would be the same, but there is nothing to look at)."""
    if not job.save_decoded:
        return True
    kept = rec.get("decoded") or {}
    return bool(kept.get("path")) and (store.root / kept["path"]).is_file()


def provenance(
    codecs: dict[str, Codec],
    argv: list[str] | None = None,
    skipped_metrics: dict[str, str] | None = None,
    config: SweepConfig | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    versions = {}
    for pkg in (
        "diffsit-bench",
        "numpy",
        "pandas",
        "torch",
        "torchvision",
        "numba",
        "imageio-ffmpeg",
        "lpips",
        "DISTS-pytorch",
        "opencv-python-headless",
        "pyiqa",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "command": argv if argv is not None else sys.argv,
        "config": config.to_dict() if config is not None else None,
        "time": _now(),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "codecs": {},
        "notes": notes or [],
        "metrics_skipped": skipped_metrics or {},
        "weights_dirs": [str(p) for p in weights.search_dirs()],
    }
    for name, codec in codecs.items():
        try:
            info["codecs"][name] = codec.describe()
        except Exception as e:
            info["codecs"][name] = {"error": str(e)}
    try:  # bench's own ffmpeg: VMAF, sample clips (codecs record theirs in describe())
        exe = ffmpeg.ffmpeg_exe(config.codec_options.get("ffmpeg") if config else None)
        info["ffmpeg"] = {"path": exe, "version": ffmpeg.ffmpeg_version(exe)}
    except ffmpeg.FFmpegError as e:
        info["ffmpeg"] = {"error": str(e)}
    return info


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return None


def execute(p: Plan, executor: Executor, store: ResultsStore, prov: dict, progress: bool = True) -> list[dict]:
    """Run the plan, committing each finished job; returns the records of this run's jobs."""
    from tqdm import tqdm

    tables = TableWriter(store, prov)
    results = []
    bar = tqdm(total=len(p.jobs), desc="bench run", unit="job", disable=not progress, file=sys.stderr)
    try:
        for job, res in executor.run(run_job, p.jobs):
            if isinstance(res, BaseException):
                status = getattr(res, "status", "failed")  # JobInterrupted: timed_out, preempted
                what = "" if status != "failed" else "worker crashed: "
                error = f"{what}{type(res).__name__}: {res}"[-4000:]
                # WorkerDied: the signal that ended the worker (SIGABRT, SIGSEGV, SIGKILL)
                res = JobResult({**_base_record(job), "status": status, "error": error, **getattr(res, "record_fields", {}), "finished": _now()})
            # the files first, then the record that names them: a driver killed in between
            # leaves a job without a record, which a rerun redoes
            store.write_files(res.files)
            store.write_files(res.decoded, ResultsStore.DECODED)
            tables.add(res.record, res.frames)
            results.append(res.record)
            bar.set_postfix_str(f"{job.row_label} {job.sequence.name} {job.rate}: {res.record['status']}")
            bar.update()
    finally:
        bar.close()
        executor.close()
        tables.finish()
    return results


def make_executor(config: SweepConfig) -> Executor:
    """The executor a configuration names (``bench.executors``)."""
    from . import executors as ex

    if config.executor == "ray":
        return ex.RayExecutor(config.ray_address, config.ray_num_cpus, config.ray_num_gpus, config.ray_max_retries)
    if config.executor == "submitit":
        folder = config.submitit_folder or str(Path(config.out or "results") / ".submitit")
        return ex.SubmititExecutor(
            folder,
            config.submitit_cluster,
            config.slurm_partition,
            config.slurm_time_min,
            config.slurm_gpus_per_task,
            config.slurm_cpus_per_task,
            dict(config.slurm_flags),
        )
    return ex.local_executor(config.jobs, ex.visible_gpus(config.gpus))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _recheck(p: Plan, store: ResultsStore, force: bool, notify: Callable[[str], None]) -> None:
    """The plan's folder checks once more, under the store's lock; with --force, the records
    of the curves this run replaces are removed before any job runs, so no curve is half old."""
    problems = _foreign_tables(store)
    conflicts = curve_conflicts(p.jobs + p.skipped, store)
    if conflicts and not force:
        problems.append(f"{store.root} holds jobs made with other settings:\n  " + "\n  ".join(conflicts.values()) + _CONFLICT_FIX)
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))
    for job_id in conflicts:
        store.remove(job_id)
    if conflicts:
        notify(f"{store.root}: --force removed {len(conflicts)} job(s) made with other settings")


def apply_conditions(config: SweepConfig) -> tuple[SweepConfig, dict[str, Any] | None]:
    """``config`` with its named test conditions filled in where no flag says otherwise, and
    what to record: the conditions, the overrides, and the label the rows carry."""
    if not config.conditions:
        if not config.dataset:
            raise PlanError("a sweep needs --dataset (or --conditions NAME, whose datasets it then runs)")
        return config, None
    c = get_conditions(config.conditions)
    check_harness(c)
    overrides = {k: getattr(config, k) for k in ("dataset", "frames", "intra_period", "rates") if getattr(config, k) is not None}
    filled = dataclasses.replace(
        config,
        frames=c.frames if config.frames is None else config.frames,
        intra_period=c.intra_period if config.intra_period is None else config.intra_period,
    )
    recorded = {**c.describe(), "overrides": overrides, "label": conditions_label(c.name, overrides)}
    return filled, recorded


def _plan_dataset(config: SweepConfig, name: str, specs: list[CodecSpec], metrics: list[str], conditions: dict | None) -> list[tuple[Path, Plan]]:
    """Every results folder's plan for one dataset of the sweep."""
    dataset = ds.get_dataset(name, size=config.size, fps=config.fps, bit_depth=config.bit_depth)
    sequences = dataset.resolve(ds.data_root(config.data_root), config.sequences)
    rates: list[str] | dict[str, list[str]] | None = config.rates
    if rates is None and conditions:  # the condition's ladder per anchor; the others their own
        rates = {codec: [str(r) for r in ladder] for codec, ladder in conditions["rates"].items()}
    outs: dict[Path, list[CodecSpec]] = {}
    for spec in specs:
        out = Path(config.out) if config.out else Path("results") / dataset.name / spec.name
        outs.setdefault(out, []).append(spec)
    label = conditions["label"] if conditions else ""
    common = dict(
        dataset=dataset.name,
        sequences=sequences,
        rates=rates,
        frames=config.frames,
        default_frames=dataset.default_frames,
        metrics=metrics,
        metrics_explicit=bool(config.metrics),
        device=config.device,
        force=config.force,
        save_decoded=config.save_decoded,
        save_decoded_limit_gb=config.save_decoded_limit_gb,
        conditions=label,
    )
    return [(out, plan(codecs=group, out=out, **common)) for out, group in outs.items()]


def run_sweep(
    config: SweepConfig,
    *,
    executor: Callable[[SweepConfig], Executor] | None = None,
    notify: Callable[[str], None] = _stderr,
    argv: list[str] | None = None,
) -> SweepResult:
    """Plan every results folder of the sweep (all of them before any job runs), then run
    each. ``executor`` makes the executor of one folder's jobs (default: LocalExecutor with
    ``config.jobs`` processes); ``notify`` receives the notes (skipped metrics, conversions,
    options not taken, jobs already done)."""
    from .executors import check_executor

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
    planned = [item for name in names for item in _plan_dataset(config, name, specs, metrics, conditions)]
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
