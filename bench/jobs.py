"""One job of a sweep: what it is (:class:`Job`, its identity and cache key), what it gives
back (:class:`JobResult`), and the worker that runs it (:func:`run_job`).

A job's identity (its cache key) is its configuration *resolved*: the codec's settings and
tool versions (``Codec.identity()``), and each metric's (``Metric.identity()``: which flow
network Ewarp really uses, which weights file and its hash). A recorded job stands for a new
one only if all of it is equal.

``run_job`` runs wherever an executor puts it (this process, a worker process, a cluster
node): it encodes, decodes and measures in a scratch folder and returns the bitstream, logs
and tables for the driver, which alone writes the results store. Jobs and ``run_job`` are
pickled to reach workers: keep them importable at this path.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import complexity, progress, scratch
from . import decoded as decoded_store
from .codec import (
    Codec,
    CodecError,
    EncodeResult,
    Resources,
    ToolFailed,
    UnknownCodec,
    codec_class,
    create_codec,
    register_codec,
)
from .datasets import Sequence
from .metrics import create_metric, measure
from .provenance import now
from .records import JobRecord, Status
from .store import ResultsStore, dumps, file_digest, safe_name
from .video import Video

#: set in a worker the executor pinned to one GPU (CUDA_VISIBLE_DEVICES holds only it)
PINNED_ENV = "BENCH_PINNED_GPU"


@dataclass(frozen=True, kw_only=True)
class Job:
    """One codec x sequence x rate point, resolved; built with keyword arguments."""

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
        made_of = {"label": self.row_label, "dataset": self.dataset, "sequence": self.sequence.name, **{k: c[k] for k in ID_KEYS}}
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
        return bitstream_hash_of(self.config())

    def config_hash(self) -> str:
        return hashlib.sha256(dumps(self.config()).encode()).hexdigest()[:16]


#: the parts of a job's configuration that change its bitstream (its id); the source's path and
#: the tools' versions stay in the cache key only, so a moved data root or an upgrade finds the job
ID_KEYS = ("codec", "codec_options", "rate", "geometry", "coded_bit_depth", "start", "frames")


def bitstream_hash_of(config: dict[str, Any]) -> str:
    """The hash of what makes the bitstream in a job configuration (``Job.config()``)."""
    made_of = {k: v for k, v in config.items() if k not in ("metrics", "conditions")}
    return hashlib.sha256(dumps(made_of).encode()).hexdigest()[:16]


@dataclass
class JobResult:
    """What a job gives back to the driver: its record, its frames.csv rows, its files."""

    record: JobRecord
    frames: pd.DataFrame | None = None
    #: what travels back to the driver, which alone writes the store: the bitstream and the
    #: encoder's logs, by their name under bitstreams/ (never the decoded video)
    files: dict[str, bytes] = field(default_factory=dict)
    #: the decoded video (--save-decoded), by its name under decoded/
    decoded: dict[str, bytes] = field(default_factory=dict)


def _same_video(a: Video, b: Video) -> bool:
    return (a.frames, a.height, a.width, a.bit_depth) == (b.frames, b.height, b.width, b.bit_depth) and all(
        np.array_equal(getattr(a, p), getattr(b, p)) for p in "yuv"
    )


def base_record(job: Job) -> dict[str, Any]:
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
        **base_record(job),
        "source": {"path": str(job.sequence.path), "start": job.start, "frames": job.frames, "bit_depth": job.sequence.bit_depth},
        "node": node,
        "started": now(),
    }
    timings: dict[str, float] = {}
    notes: list[str] = []
    files: dict[str, bytes] = {}
    own_peak = complexity.reset_peak_memory()
    at_start = complexity.resident_memory_mb()
    try:
        codec, metrics, options = _build(job, node)
        ref = job.sequence.open(frames=job.frames, start=job.start)
        if job.coded_bit_depth != ref.bit_depth:
            notes.append(f"{job.codec} codes {job.coded_bit_depth}-bit: the {ref.bit_depth}-bit source was converted for it and its output back")
        with scratch.job_dir(job.job_id) as tmp, progress.job(job.job_id):
            coded = _coded(job, codec, ref, Path(tmp), timings, files, notes)
            dist = _decoded(job, codec, coded, Path(tmp), timings).to_bit_depth(ref.bit_depth)
            samples = decoded_store.samples_md5(dist)
            values = _measured(job, ref, dist, metrics, samples, timings, notes)
            decoded_files = _kept_decoded(job, dist, Path(tmp), options, samples, record)
            frames, summary = _tables(job, ref, coded, values, timings)
        record.update(
            status=Status.DONE,
            summary=summary,
            bitstream=summary["bitstream"],
            bitstream_md5=summary["bitstream_md5"],
            bitstream_hash=job.bitstream_hash(),
            samples_md5=samples,
            metric_specs=list(job.metrics),
            codec_config=codec.describe(),
            cost={**complexity.host(job.device), **_memory(own_peak, at_start)},
            encoder=coded.encoder,
            **({"decode_leaves_out": coded.decode_leaves_out} if coded.decode_leaves_out else {}),
            metrics={m.name: m.describe() for m in metrics},
        )
        result = (frames, files, decoded_files)
    except Exception as e:  # recorded, the sweep goes on
        if _interrupted(e):  # the scheduler stopped the job (time limit, preemption): not its failure
            raise
        if isinstance(e, ToolFailed):  # its message names the stored log, not the scratch folder now gone
            e.keep(job.job_id, ResultsStore.BITSTREAMS)
        record.update(status=Status.FAILED, error=f"{type(e).__name__}: {e}"[-4000:], traceback=traceback.format_exc()[-4000:])
        kept = _failure_logs(job, e)
        if kept:  # the encoder's own account of why, where the next reader can open it
            record["logs"] = [f"{ResultsStore.BITSTREAMS}/{name}" for name in kept]
        result = (None, kept, {})
    record["notes"] = notes
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    record["finished"] = now()
    return JobResult(JobRecord.from_dict(record), *result)


@dataclass
class _Coded:
    """A job's bitstream in its scratch folder, and what the encoder said of it."""

    path: Path
    per_frame: dict[str, list]
    encoder: dict[str, Any]
    reconstruction: Video | None = None
    decode_leaves_out: str = ""


def _memory(own_peak: bool, at_start: float | None) -> dict[str, Any]:
    scope = complexity.MEMORY_SCOPE if own_peak else "peak resident memory of the process since it started (this kernel cannot reset it)"
    start = {} if at_start is None else {"rss_at_start_mb": round(at_start, 1)}
    return {"peak_rss_mb": round(complexity.peak_memory_mb(), 1), **start, "peak_rss_scope": scope}


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
    return codec, [_metric(m, device) for m in job.metrics], options


#: metrics built for earlier jobs of this process, by spec, device and environment: a warm
#: worker keeps a metric's network (LPIPS, DISTS, RAFT, CLIP-IQA) loaded across its jobs.
#: Metrics keep nothing of a job between compute() calls. Codecs are built afresh for each
#: job: a Diff-SIT codec keeps every model it loaded, which would hold one model per rate
#: point in memory at once.
_METRICS: dict[tuple[str, str, int], Any] = {}
_KEPT_METRICS = 16


def _metric(spec: str, device: str):
    # the environment names weights folders (BENCH_WEIGHTS, TORCH_HOME) and tools
    key = (spec, str(device), hash(frozenset(os.environ.items())))
    metric = _METRICS.get(key)
    if metric is None:
        if len(_METRICS) >= _KEPT_METRICS:
            _METRICS.pop(next(iter(_METRICS)))
        metric = _METRICS[key] = create_metric(spec, device=device)
    return metric


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
    with complexity.counted(codec.learned, job.device) as macs, progress.stage("encode", ref.frames):
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
    return _Coded(final, per_frame, {"command": [str(a) for a in enc.command], "tools": enc.tools}, enc.reconstruction, enc.decode_leaves_out)


def _decoded(job: Job, codec: Codec, coded: _Coded, work: Path, timings: dict) -> Video:
    t0 = time.perf_counter()
    with complexity.counted(codec.learned, job.device) as macs, progress.stage("decode", job.frames):
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
        same = [m for m in metrics if old_ids.get(m.name) == jsonable(m.identity()) and all(c in old_values for c in m.columns)]
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


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, objects their text)."""
    return json.loads(json.dumps(obj, default=str))
