"""Plan and execute a sweep of codec x sequence x rate jobs.

Planning checks everything that can be checked before encoding anything (codec runnable,
rates valid, metrics runnable, sequence files present and long enough), so that an offline
node or a missing encoder fails in the first second, not deep inside a sweep.

Execution is behind :class:`Executor`: ``LocalExecutor`` runs jobs in this process or in a
process pool; a cluster engine (Ray, DESIGN.md §7) is another implementation of the same
two-method interface. Workers only encode, decode and measure; the parent process alone
writes the results store, one atomic commit per finished job.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
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

from . import ffmpeg
from .codec import Codec, create_codec
from .datasets import Sequence
from . import weights
from .metrics import create_metric, measure
from .store import WORK_PREFIX, ResultsStore, dumps, file_digest, safe_name
from .video import Video


class PlanError(ValueError):
    """The sweep cannot start; nothing was encoded."""


@dataclass(frozen=True)
class Job:
    dataset: str
    sequence: Sequence
    codec: str
    codec_options: tuple[tuple[str, Any], ...]
    rate: Any
    frames: int
    metrics: tuple[str, ...]
    device: str = "cpu"
    start: int = 0
    out: str = "results"

    @property
    def job_id(self) -> str:
        return safe_name(f"{self.codec}-{self.dataset}-{self.sequence.name}-{self.rate}")

    def config(self) -> dict[str, Any]:
        """What must be equal for a recorded job to stand for this one."""
        return {
            "codec": self.codec,
            "codec_options": dict(self.codec_options),
            "rate": self.rate,
            "source": str(self.sequence.path),
            "geometry": [self.sequence.width, self.sequence.height, self.sequence.bit_depth],
            "start": self.start,
            "frames": self.frames,
        }

    def config_hash(self) -> str:
        return hashlib.sha256(dumps(self.config()).encode()).hexdigest()[:16]


@dataclass
class JobResult:
    record: dict[str, Any]
    frames: pd.DataFrame | None = None


class Executor(Protocol):
    def run(self, fn: Callable[[Job], JobResult], jobs: list[Job]) -> Iterator[tuple[Job, JobResult | BaseException]]:
        """Yield (job, result or exception) as jobs finish, in any order."""

    def close(self) -> None: ...


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # pragma: no cover - numba is a dependency, threads are a hint
        pass


@dataclass
class LocalExecutor:
    """``jobs=1``: in this process (easy to debug). ``jobs>1``: a spawn-context process pool."""

    jobs: int = 1
    _pool: cf.ProcessPoolExecutor | None = field(default=None, init=False)

    def run(self, fn, jobs):
        if self.jobs <= 1:
            for job in jobs:
                try:
                    yield job, fn(job)
                except BaseException as e:  # noqa: BLE001 - fn records its own failures; this is a crash
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    yield job, e
            return
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        )
        futures = {self._pool.submit(fn, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                yield job, fut.result()
            except BaseException as e:  # noqa: BLE001 - a worker died (e.g. BrokenProcessPool)
                yield job, e

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- the job --------------------------------------------------------------------------------


def _same_video(a: Video, b: Video) -> bool:
    return (a.frames, a.height, a.width) == (b.frames, b.height, b.width) and all(
        np.array_equal(getattr(a, p), getattr(b, p)) for p in "yuv"
    )


def run_job(job: Job) -> JobResult:
    """Encode, decode from the file, measure. Never raises: failures become records."""
    store = ResultsStore(job.out)
    record: dict[str, Any] = {
        "job_id": job.job_id,
        "config_hash": job.config_hash(),
        "config": job.config(),
        "dataset": job.dataset,
        "sequence": job.sequence.name,
        "codec": job.codec,
        "rate": job.rate,
        "source": {"path": str(job.sequence.path), "start": job.start, "frames": job.frames},
        "started": _now(),
    }
    timings: dict[str, float] = {}
    try:
        codec: Codec = create_codec(job.codec, **dict(job.codec_options))
        metrics = [create_metric(m, device=job.device) for m in job.metrics]
        ref = job.sequence.open(frames=job.frames, start=job.start)
        store.ensure()
        with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{job.job_id}.", dir=store.root) as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            produced = codec.encode(ref, job.rate, work)
            timings["encode_s"] = time.perf_counter() - t0
            final = store.bitstreams / f"{job.job_id}{codec.extension}"
            os.replace(produced, final)
            for log in work.glob("*.enc.log"):
                shutil.copyfile(log, store.bitstreams / f"{job.job_id}.enc.log")
            enc_rec = codec.encoder_reconstruction()

            t0 = time.perf_counter()
            dist = codec.decode(final, work)
            timings["decode_s"] = time.perf_counter() - t0
            if enc_rec is not None and not _same_video(enc_rec, dist):
                raise RuntimeError(
                    f"{job.codec}: the decoder's output differs from the encoder's reconstruction; "
                    "the bitstream does not carry what the encoder used (encoder/decoder mismatch)"
                )
            t0 = time.perf_counter()
            values = measure(ref, dist, metrics, device=job.device)
            timings["metrics_s"] = time.perf_counter() - t0
            frame_bits = _frame_bits(codec, final, ref.frames)

        size = final.stat().st_size
        pixels = ref.width * ref.height
        bits = 8 * size
        frames = pd.DataFrame(
            {
                "dataset": job.dataset,
                "sequence": job.sequence.name,
                "codec": job.codec,
                "rate": str(job.rate),
                "frame": np.arange(job.start, job.start + ref.frames),
                "bits": frame_bits,
                "bpp": frame_bits / pixels,
                **values,
            }
        )
        summary = {
            "dataset": job.dataset,
            "sequence": job.sequence.name,
            "codec": job.codec,
            "rate": str(job.rate),
            "frames": ref.frames,
            "width": ref.width,
            "height": ref.height,
            "bytes": size,
            "bits": bits,
            # bpp from the file the decoder read, at the original (unpadded) size
            "bpp": bits / (ref.frames * pixels),
            "bitstream": str(final.relative_to(store.root)),
            "bitstream_md5": file_digest(final, "md5"),
            # frame-pair metrics (ewarp) have no value on the first frame
            **{c: float(np.nanmean(v)) for c, v in values.items()},
            **{k: round(v, 3) for k, v in timings.items()},
        }
        record.update(
            status="done",
            summary=summary,
            bitstream=summary["bitstream"],
            bitstream_md5=summary["bitstream_md5"],
            codec_config=codec.describe(),
            metrics={m.name: m.describe() for m in metrics},
        )
        result = JobResult(record, frames)
    except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
        record.update(status="failed", error=f"{type(e).__name__}: {e}"[-4000:], traceback=traceback.format_exc()[-4000:])
        result = JobResult(record, None)
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    record["finished"] = _now()
    return result


def _frame_bits(codec: Codec, path: Path, frames: int) -> np.ndarray:
    """Per-frame bits summing exactly to 8 x file size; NaN where the codec cannot tell."""
    sizes = None
    fn = getattr(codec, "frame_sizes", None)
    if fn is not None:
        try:
            sizes = fn(path)
        except Exception:  # noqa: BLE001 - per-frame bits are informative; bpp uses the file size
            sizes = None
    if sizes is None or len(sizes) != frames:
        return np.full(frames, np.nan)
    bits = 8 * np.asarray(sizes, dtype=np.float64)
    bits[0] += 8 * path.stat().st_size - bits.sum()  # headers and parameter sets go to frame 0
    return bits


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


def plan(
    *,
    codecs: list[tuple[str, dict[str, Any]]],
    dataset: str,
    sequences: list[Sequence],
    rates: list[str] | None,
    frames: int | None,
    metrics: list[str],
    default_frames: int = 96,
    metrics_explicit: bool = True,
    device: str,
    out: Path,
    force: bool = False,
) -> Plan:
    store = ResultsStore(out)
    built: dict[str, Codec] = {}
    problems: list[str] = []
    for name, options in codecs:
        codec = create_codec(name, **options)
        try:
            codec.check()
        except Exception as e:  # noqa: BLE001
            problems.append(f"codec {name}: {e}")
        built[name] = codec
    runnable, skipped_metrics = [], {}
    for m in metrics:
        try:
            metric = create_metric(m, device=device)
            metric.check()
            why = "; ".join(f"{seq.name}: {w}" for seq in sequences if (w := metric.unsupported(seq.width, seq.height)))
            if why:
                raise ValueError(why)
        except Exception as e:  # noqa: BLE001
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
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))

    jobs, skipped = [], []
    for name, options in codecs:
        codec = built[name]
        try:
            ladder = [codec.parse_rate(r) for r in (rates or codec.default_rates)]
        except ValueError as e:
            raise PlanError(str(e)) from None
        for seq in sequences:
            for rate in ladder:
                job = Job(dataset, seq, name, tuple(sorted(options.items())), rate, lengths[seq.name], tuple(metrics), device, 0, str(out))
                rec = store.load_record(job.job_id)
                if not force and rec and rec.get("status") == "done" and rec.get("config_hash") == job.config_hash() and _has_metrics(rec, metrics):
                    skipped.append(job)
                else:
                    jobs.append(job)
    return Plan(jobs, skipped, built, notes, skipped_metrics)


def _has_metrics(record: dict, metrics: list[str]) -> bool:
    return {m.split(":", 1)[0] for m in metrics} <= set(record.get("metrics", {}))


def provenance(codecs: dict[str, Codec], argv: list[str] | None = None, skipped_metrics: dict[str, str] | None = None) -> dict[str, Any]:
    versions = {}
    for pkg in ("diffsit-bench", "numpy", "pandas", "torch", "torchvision", "numba", "imageio-ffmpeg", "lpips", "DISTS-pytorch", "opencv-python-headless", "pyiqa"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "command": argv if argv is not None else sys.argv,
        "time": _now(),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "codecs": {},
        "metrics_skipped": skipped_metrics or {},
        "weights_dirs": [str(p) for p in weights.search_dirs()],
    }
    for name, codec in codecs.items():
        try:
            info["codecs"][name] = codec.describe()
        except Exception as e:  # noqa: BLE001
            info["codecs"][name] = {"error": str(e)}
    with_ffmpeg = [c for c in codecs.values() if hasattr(c, "exe")]
    if with_ffmpeg:
        exe = with_ffmpeg[0].exe
        info["ffmpeg"] = {"path": exe, "version": ffmpeg.ffmpeg_version(exe)}
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

    store.rebuild(prov)  # tables reflect the records even if the last run was killed mid-way
    results = []
    bar = tqdm(total=len(p.jobs), desc="bench run", unit="job", disable=not progress, file=sys.stderr)
    try:
        for job, res in executor.run(run_job, p.jobs):
            if isinstance(res, BaseException):
                res = JobResult(
                    {"job_id": job.job_id, "config_hash": job.config_hash(), "config": job.config(), "dataset": job.dataset,
                     "sequence": job.sequence.name, "codec": job.codec, "rate": job.rate, "status": "failed",
                     "error": f"worker crashed: {type(res).__name__}: {res}", "finished": _now()}  # fmt: skip
                )
            store.commit(res.record, res.frames)
            store.rebuild(prov)
            results.append(res.record)
            bar.set_postfix_str(f"{job.codec} {job.sequence.name} {job.rate}: {res.record['status']}")
            bar.update()
    finally:
        bar.close()
        executor.close()
    return results
