"""Results store: tidy tables, bitstreams and a manifest under one directory.

Layout of DIR (DESIGN.md §4)::

    frames.csv      one row per (dataset, sequence, codec, rate, frame)
    summary.csv     one row per (dataset, sequence, codec, rate)
    bitstreams/     the files that were measured
    manifest.json   provenance and per-job status
    jobs/           one record per job: the source of truth the tables are built from

A job's record is written last, atomically (write a temporary file, then ``os.replace``), and
is the commit point: a job without one never happened, a job with one is never redone. The
three tables are rebuilt from the records and replaced atomically after every job, so a
sweep killed at any instant leaves no partial and no duplicate row, and the next run picks up
where it stopped.
"""

from __future__ import annotations

import hashlib

import contextlib
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KEY = ["dataset", "sequence", "codec", "rate"]
SUMMARY_FIRST = [*KEY, "frames", "width", "height", "bytes", "bits", "bpp", "bitstream", "bitstream_md5"]
FRAMES_FIRST = [*KEY, "frame", "bits", "bpp"]


class StoreBusy(RuntimeError):
    pass


WORK_PREFIX = ".work-"  # per-job scratch folders
TMP_MARK = ".tmp-"  # half-written files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "x"


class ResultsStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.bitstreams = self.root / "bitstreams"

    def ensure(self) -> None:
        for d in (self.root, self.jobs_dir, self.bitstreams):
            d.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self):
        """Hold the store for one sweep; a second sweep into the same DIR is refused."""
        self.ensure()
        with open(self.root / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusy(f"another `bench run` is writing to {self.root}; wait for it or use another --out") from None
            self._remove_stale()
            yield self

    def _remove_stale(self) -> None:
        """Temporaries of a sweep that was killed: safe to delete once we hold the lock."""
        for d in (self.root, self.jobs_dir, self.bitstreams):
            for p in d.glob(".*"):
                if p.is_dir() and p.name.startswith(WORK_PREFIX):
                    shutil.rmtree(p, ignore_errors=True)
                elif p.is_file() and TMP_MARK in p.name:
                    p.unlink(missing_ok=True)

    # --- per-job records ------------------------------------------------------------------

    def record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def frames_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.frames.csv"

    def load_record(self, job_id: str) -> dict | None:
        p = self.record_path(job_id)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:  # cannot happen with atomic writes; be safe anyway
            return None

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.jobs_dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out

    def commit(self, record: dict, frames: pd.DataFrame | None) -> None:
        """Make one finished (done or failed) job durable, then refresh the tables."""
        self.ensure()
        job_id = record["job_id"]
        if frames is not None:
            atomic_write_text(self.frames_path(job_id), frames.to_csv(index=False, float_format="%.10g"))
        else:
            self.frames_path(job_id).unlink(missing_ok=True)
        atomic_write_text(self.record_path(job_id), dumps(record))

    # --- tables -----------------------------------------------------------------------------

    def rebuild(self, provenance: dict | None = None) -> None:
        records = self.records()
        done = [r for r in records if r.get("status") == "done"]
        rows = [r["summary"] for r in done]
        summary = pd.DataFrame(rows)
        if not summary.empty:
            summary = summary.sort_values(KEY, key=_natural_key).reset_index(drop=True)
            summary = summary[[c for c in SUMMARY_FIRST if c in summary] + [c for c in summary if c not in SUMMARY_FIRST]]
        else:
            summary = pd.DataFrame(columns=SUMMARY_FIRST)
        atomic_write_text(self.root / "summary.csv", summary.to_csv(index=False, float_format="%.10g"))

        parts = []
        for r in done:
            p = self.frames_path(r["job_id"])
            if p.exists():
                parts.append(pd.read_csv(p, dtype={"rate": str, "sequence": str, "dataset": str, "codec": str}))
        frames = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FRAMES_FIRST)
        if not frames.empty:
            frames = frames.sort_values([*KEY, "frame"], key=_natural_key).reset_index(drop=True)
            frames = frames[[c for c in FRAMES_FIRST if c in frames] + [c for c in frames if c not in FRAMES_FIRST]]
        atomic_write_text(self.root / "frames.csv", frames.to_csv(index=False, float_format="%.10g"))

        manifest_path = self.root / "manifest.json"
        manifest = {}
        if manifest_path.exists():
            with contextlib.suppress(json.JSONDecodeError):
                manifest = json.loads(manifest_path.read_text())
        if provenance is not None:
            manifest["provenance"] = provenance
        manifest["jobs"] = {
            r["job_id"]: {k: r.get(k) for k in ("status", "dataset", "sequence", "codec", "rate", "config", "codec_config", "source", "bitstream", "bitstream_md5", "timings", "error", "finished")}
            for r in records
        }
        manifest["counts"] = {"done": len(done), "failed": sum(r.get("status") == "failed" for r in records)}
        atomic_write_text(manifest_path, dumps(manifest))


def _natural_key(col: pd.Series) -> pd.Series:
    # numeric rates sort as numbers, everything else as text
    if col.name in ("rate", "frame"):
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            return num
    return col.astype(str)


def read_summaries(dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """All summary.csv rows under the given directories (recursively), for reports."""
    parts = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("summary.csv"))
        for f in files:
            df = pd.read_csv(f, dtype={"rate": str})
            df["results_dir"] = str(f.parent)
            parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SUMMARY_FIRST)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (bitstreams, test-clip fingerprints)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
