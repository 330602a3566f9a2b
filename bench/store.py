"""Results store: tidy tables, bitstreams and a manifest under one directory.

Layout of DIR (docs/architecture.md, "Results store")::

    frames.csv      one row per (dataset, sequence, codec, rate, frame)
    summary.csv     one row per (dataset, sequence, codec, rate)
    bitstreams/     the files that were measured
    manifest.json   provenance and per-job status
    jobs/           one record per job (bench.records.JobRecord): the source of truth the
                    tables are built from, and <job id>.frames.csv, its frames.csv rows
    decoded/        decoded videos kept by --save-decoded (bench.decoded)

No other module names these files: readers use :class:`ResultsStore`'s reader API
(:meth:`~ResultsStore.jobs`, :meth:`~ResultsStore.job_frames`, :meth:`~ResultsStore.summary`,
:meth:`~ResultsStore.frames`, :meth:`~ResultsStore.manifest`, :meth:`~ResultsStore.bitstream_path`,
:meth:`~ResultsStore.decoded_path`), and :meth:`ResultsStore.under` finds the stores in a folder.

A job's record is written last, atomically (write a temporary file, then ``os.replace``), and
is the commit point: a job without one never happened, a job with one is never redone.

Keeping the tables current costs O(that job), not O(sweep) (:class:`TableWriter`): a new job's
rows are appended to summary.csv and frames.csv, each in one ``write`` call (which a kill
cannot split), after its record is committed. Only a job that replaces an earlier one
(``--force``) or brings new columns rewrites the tables, from memory. At the start of a sweep
the tables are rebuilt once from the records (so a sweep killed between a record and its rows
loses nothing), and at its end they are rewritten once, sorted, with the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .records import JobRecord, RecordError, Status, as_dict
from .safepath import read_inside

KEY = ["dataset", "sequence", "codec", "rate"]
SUMMARY_FIRST = [*KEY, "frames", "width", "height", "bit_depth", "bytes", "bits", "bpp", "bitstream", "bitstream_md5"]
FRAMES_FIRST = [*KEY, "frame", "frame_type", "bits", "bpp", "qp"]


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


def _plain_id(job_id: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", job_id or ""))


def _row_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row.get(k)) for k in KEY)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "x"


class ResultsStore:
    """One results folder (the layout above): the only module that names its files."""

    SUMMARY = "summary.csv"
    FRAMES = "frames.csv"
    MANIFEST = "manifest.json"
    JOBS = "jobs"
    BITSTREAMS = "bitstreams"
    DECODED = "decoded"  # bench.decoded: decoded videos, --save-decoded

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.jobs_dir = self.root / self.JOBS
        self.bitstreams = self.root / self.BITSTREAMS

    @classmethod
    def under(cls, base: str | os.PathLike) -> list[ResultsStore]:
        """Every store of `bench run` in ``base`` or below it (a folder with job records)."""
        base = Path(base)
        return [cls(d.parent) for d in sorted({p.parent for p in base.rglob(f"{cls.JOBS}/*.json")})]

    @classmethod
    def summary_files(cls, base: str | os.PathLike) -> list[Path]:
        """Every summary.csv in ``base`` or below it (any tool's results: run, import, golden)."""
        return sorted(Path(base).rglob(cls.SUMMARY))

    @property
    def summary_path(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def frames_table_path(self) -> Path:
        return self.root / self.FRAMES

    @property
    def manifest_path(self) -> Path:
        return self.root / self.MANIFEST

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
        for d in (self.root, self.jobs_dir, self.bitstreams, self.root / self.DECODED):
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

    def job(self, job_id: str) -> JobRecord | None:
        """One job's typed record, or None (none written, or not a record)."""
        rec = self.load_record(job_id)
        try:
            return JobRecord.from_dict(rec) if rec is not None else None
        except RecordError:
            return None

    def jobs(self, status: Status | None = None) -> list[JobRecord]:
        """Every job's typed record (those of ``status`` only, if given), by job id; a file
        that is no record (:meth:`records`, :class:`~bench.records.RecordError`) is left out."""
        out = []
        for rec in self.records():
            try:
                job = JobRecord.from_dict(rec)
            except RecordError:
                continue
            if status is None or job.status is status:
                out.append(job)
        return out

    def job_frames(self, job_id: str, dtype: dict | None = None) -> pd.DataFrame | None:
        """One job's frames.csv rows, or None when it has none (failed, or made without)."""
        p = self.frames_path(job_id)
        return pd.read_csv(p, dtype=dtype) if p.is_file() else None

    def bitstream_path(self, record: JobRecord | dict) -> Path | None:
        """Where a job's bitstream is (it may be gone), or None when its record names none."""
        name = Path(str(record.get("bitstream") or "")).name
        return self.bitstreams / name if name else None

    def decoded_path(self, record: JobRecord | dict) -> Path | None:
        """Where a job's decoded video is (--save-decoded; it may be gone), or None."""
        kept = record.get("decoded") or {}
        return self.root / kept["path"] if isinstance(kept, dict) and kept.get("path") else None

    def summary(self, dtype: dict | None = None) -> pd.DataFrame:
        """summary.csv as written (FileNotFoundError when there is none)."""
        return pd.read_csv(self.summary_path, dtype={"rate": str} if dtype is None else dtype)

    def frames(self, dtype: dict | None = None) -> pd.DataFrame:
        """frames.csv as written, or an empty table when there is none or it is empty."""
        p = self.frames_table_path
        if not p.is_file() or not p.stat().st_size:
            return pd.DataFrame()
        return pd.read_csv(p, dtype=_FRAME_DTYPES if dtype is None else dtype)

    def read_manifest(self) -> Any:
        """manifest.json as parsed (any JSON: an untrusted folder's is checked by the caller),
        read only below the folder (a link is refused: bench.safepath). FileNotFoundError when
        there is none; UnsafePath or ValueError (bad JSON, bad UTF-8) when it is not read."""
        return json.loads(read_inside(self.root, self.MANIFEST))

    def records(self) -> list[dict]:
        """Every job record as parsed JSON (the writer's view; readers want the typed
        :meth:`jobs`); a file whose ``job_id`` is not its own name is no record of ours (a
        folder is untrusted: an id is used to name files)."""
        out = []
        for p in sorted(self.jobs_dir.glob("*.json")):
            try:  # below the folder only: no link followed, no FIFO waited on
                rec = json.loads(read_inside(self.root, f"{self.JOBS}/{p.name}"))
            except (OSError, ValueError):  # unreadable, not a regular file, not JSON
                continue
            if isinstance(rec, dict) and rec.get("job_id") == p.stem and _plain_id(p.stem):
                out.append(rec)
        return out

    def manifest(self) -> dict:
        """manifest.json as written, or {} (a folder without one, or an unreadable one)."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def find(self, codec: str, sequence: str, rate: Any, dataset: str | None = None) -> dict | None:
        """The record of one row (the codec column, as the tables show it), or None."""
        for rec in self.records():
            if (rec.get("codec"), rec.get("sequence"), str(rec.get("rate"))) == (codec, sequence, str(rate)) and dataset in (None, rec.get("dataset")):
                return rec
        return None

    def remove(self, job_id: str) -> None:
        """A job replaced on purpose (--force, or the same point under a new id): its record,
        its frames, its bitstream and logs, its decoded video."""
        if not _plain_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        self.record_path(job_id).unlink(missing_ok=True)
        self.frames_path(job_id).unlink(missing_ok=True)
        for folder in (self.bitstreams, self.root / self.DECODED):
            for p in folder.glob(f"{job_id}.*"):
                if p.is_file() or p.is_symlink():
                    p.unlink()

    def foreign_rows(self) -> int:
        """Rows of summary.csv that no done record made (an imported, published or another
        tool's table): `bench run` rewrites the table from the records and would lose them."""
        path = self.summary_path
        if not path.is_file():
            return 0
        try:
            table = pd.read_csv(path, dtype=str)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            return max(1, len(path.read_bytes().splitlines()) - 1)
        if not set(KEY) <= set(table.columns):
            return max(1, len(table))
        ours = {_row_key(r["summary"]) for r in self.records() if r.get("status") == Status.DONE and isinstance(r.get("summary"), dict)}
        return sum(_row_key(row) not in ours for row in table[KEY].to_dict("records"))

    def write_files(self, files: dict[str, bytes], folder: str = BITSTREAMS) -> None:
        """A job's files as the worker returned them (its bitstream and logs under
        bitstreams/, its decoded video under decoded/), each written atomically."""
        if folder not in (self.BITSTREAMS, self.DECODED):
            raise ValueError(f"a job's files go under {self.BITSTREAMS}/ or {self.DECODED}/, not {folder!r}")
        if not files:
            return
        self.ensure()
        (self.root / folder).mkdir(exist_ok=True)
        for name, data in files.items():
            if Path(name).name != name:
                raise ValueError(f"a job's file name must be a plain name under {folder}/, got {name!r}")
            atomic_write_bytes(self.root / folder / name, data)

    def commit(self, record: JobRecord | dict, frames: pd.DataFrame | None) -> None:
        """Make one finished (done or failed) job durable (the tables are TableWriter's).
        A dict is read as a :class:`~bench.records.JobRecord` first (RecordError if it is none)."""
        self.ensure()
        record = as_dict(record)
        job_id = record["job_id"]
        if frames is not None:
            atomic_write_text(self.frames_path(job_id), frames.to_csv(index=False, float_format="%.10g"))
        else:
            self.frames_path(job_id).unlink(missing_ok=True)
        atomic_write_text(self.record_path(job_id), dumps(record))

    # --- tables -----------------------------------------------------------------------------

    def rebuild(self, provenance: dict | None = None) -> None:
        """Every table from the records: O(sweep), for the start of a sweep and for tools."""
        records = self.records()
        done = [r for r in records if r.get("status") == Status.DONE]
        atomic_write_text(self.summary_path, _summary_table([r["summary"] for r in done]).to_csv(index=False, float_format="%.10g"))
        parts = []
        for r in done:
            p = self.frames_path(r["job_id"])
            if p.exists():
                parts.append(pd.read_csv(p, dtype=_FRAME_DTYPES))
        atomic_write_text(self.frames_table_path, _frames_table(parts).to_csv(index=False, float_format="%.10g"))
        self.write_manifest(records, provenance)

    def write_manifest(self, records: list[dict], provenance: dict | None = None) -> None:
        manifest_path = self.manifest_path
        manifest = {}
        if manifest_path.exists():
            with contextlib.suppress(json.JSONDecodeError):
                manifest = json.loads(manifest_path.read_text())
        if provenance is not None:
            manifest["provenance"] = provenance
        keys = (
            "status",
            "dataset",
            "sequence",
            "codec",
            "rate",
            "config",
            "codec_config",
            "encoder",
            "source",
            "bitstream",
            "bitstream_md5",
            "decoded",
            "timings",
            "notes",
            "error",
            "signal",
            "logs",
            "finished",
        )
        manifest["jobs"] = {r["job_id"]: {k: r.get(k) for k in keys} for r in sorted(records, key=lambda r: r["job_id"])}
        statuses = [r.get("status") for r in records]
        # failed, and what a cluster stopped (timed_out, preempted): redone by a rerun
        manifest["counts"] = {
            "done": statuses.count(Status.DONE),
            "failed": statuses.count(Status.FAILED),
            **{str(s): statuses.count(s) for s in set(statuses) - {Status.DONE, Status.FAILED, None}},
        }
        atomic_write_text(manifest_path, dumps(manifest))

    def write_summary(self, table: pd.DataFrame, float_format: str | None = "%.10g") -> Path:
        """summary.csv from ``table`` as it is (bench import, a golden set's --update)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.summary_path, table.to_csv(index=False, float_format=float_format))
        return self.summary_path

    def write_manifest_data(self, manifest: dict) -> Path:
        """manifest.json holding ``manifest`` (a folder no sweep wrote: bench import)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path, dumps(manifest))
        return self.manifest_path


class TableWriter:
    """The tables of one store during one sweep (the caller holds the store's lock)."""

    def __init__(self, store: ResultsStore, provenance: dict | None = None):
        self.store = store
        self.provenance = provenance
        store.rebuild(provenance)  # once: the tables match the records even after a kill
        self.records = {r["job_id"]: r for r in store.records()}
        done = [r for r in self.records.values() if r.get("status") == Status.DONE]
        self.summary = {r["job_id"]: r["summary"] for r in done}
        self.frames: dict[str, pd.DataFrame] = {}
        for r in done:
            p = store.frames_path(r["job_id"])
            if p.exists():
                self.frames[r["job_id"]] = pd.read_csv(p, dtype=_FRAME_DTYPES)
        self._summary_cols = _header(store.summary_path)
        self._frames_cols = _header(store.frames_table_path)

    def add(self, record: JobRecord | dict, frames: pd.DataFrame | None) -> None:
        record = as_dict(record)
        job_id = record["job_id"]
        self.store.commit(record, frames)
        replaced = job_id in self.summary or job_id in self.frames
        if record.get("status") == Status.DONE:
            replaced = self._supersede(record) or replaced
        self.records[job_id] = record
        self.summary.pop(job_id, None)
        self.frames.pop(job_id, None)
        if record.get("status") == Status.DONE:
            self.summary[job_id] = record["summary"]
            if frames is not None:
                self.frames[job_id] = frames
        if replaced:
            self._write_all(sort=False)
            return
        if record.get("status") != Status.DONE:
            return
        row = pd.DataFrame([record["summary"]])
        if not self._append(self.store.summary_path, row, self._summary_cols):
            self._write_summary(sort=False)
        if frames is not None and not self._append(self.store.frames_table_path, frames, self._frames_cols):
            self._write_frames(sort=False)

    def _supersede(self, record: dict) -> bool:
        """An earlier record of the same row (dataset, sequence, codec, rate) under another id
        (made before ids carried every setting, or with settings --force replaced) would give
        the table two rows for one point: the new one replaces it."""
        key = _row_key({**record, "rate": record.get("rate")})
        old = [i for i, r in self.records.items() if i != record["job_id"] and _row_key(r) == key]
        for job_id in old:
            self.store.remove(job_id)
            self.records.pop(job_id)
            self.summary.pop(job_id, None)
            self.frames.pop(job_id, None)
        return bool(old)

    def finish(self) -> None:
        """Sorted tables and a fresh manifest, once per sweep."""
        self._write_all(sort=True)
        self.store.write_manifest(list(self.records.values()), self.provenance)

    # --- writing ------------------------------------------------------------------------------

    @staticmethod
    def _append(path: Path, rows: pd.DataFrame, header: list[str] | None) -> bool:
        """Append rows if they fit the file's header; False if the file must be rewritten."""
        if not header or not set(rows.columns) <= set(header):
            return False
        text = rows.reindex(columns=header).to_csv(index=False, header=False, float_format="%.10g")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            data = text.encode()
            if os.write(fd, data) != len(data):  # pragma: no cover - a full disk
                raise OSError(f"short write appending to {path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _write_all(self, sort: bool) -> None:
        self._write_summary(sort)
        self._write_frames(sort)

    def _write_summary(self, sort: bool) -> None:
        df = _summary_table(list(self.summary.values()), sort)
        atomic_write_text(self.store.summary_path, df.to_csv(index=False, float_format="%.10g"))
        self._summary_cols = list(df.columns)

    def _write_frames(self, sort: bool) -> None:
        df = _frames_table(list(self.frames.values()), sort)
        atomic_write_text(self.store.frames_table_path, df.to_csv(index=False, float_format="%.10g"))
        self._frames_cols = list(df.columns)


_FRAME_DTYPES = {"rate": str, "sequence": str, "dataset": str, "codec": str, "frame_type": str}


def _header(path: Path) -> list[str] | None:
    try:
        with open(path) as f:
            line = f.readline().strip()
    except FileNotFoundError:
        return None
    return line.split(",") if line else None


def _summary_table(rows: list[dict], sort: bool = True) -> pd.DataFrame:
    summary = pd.DataFrame(rows)
    if summary.empty:
        return pd.DataFrame(columns=SUMMARY_FIRST)
    if sort:
        summary = summary.sort_values(KEY, key=_natural_key).reset_index(drop=True)
    return summary[[c for c in SUMMARY_FIRST if c in summary] + [c for c in summary if c not in SUMMARY_FIRST]]


def _frames_table(parts: list[pd.DataFrame], sort: bool = True) -> pd.DataFrame:
    frames = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FRAMES_FIRST)
    if frames.empty:
        return frames
    if sort:
        frames = frames.sort_values([*KEY, "frame"], key=_natural_key).reset_index(drop=True)
    return frames[[c for c in FRAMES_FIRST if c in frames] + [c for c in frames if c not in FRAMES_FIRST]]


def _natural_key(col: pd.Series) -> pd.Series:
    # numeric rates sort as numbers, everything else as text
    if col.name in ("rate", "frame"):
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            return num
    return col.astype(str)


class PooledResults(ValueError):
    """Two results folders hold the same row: a report would average them."""


def read_summaries(dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """All summary.csv rows under the given directories (recursively), for reports. A row
    (dataset, sequence, codec, rate) found in two folders is a PooledResults naming both:
    averaging two runs (other frames, other options) into one point is never what was meant."""
    parts = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else ResultsStore.summary_files(d)
        for f in files:
            df = pd.read_csv(f, dtype={"rate": str})
            df["results_dir"] = str(f.parent)
            parts.append(df)
    if not parts:
        return pd.DataFrame(columns=SUMMARY_FIRST)
    rows = pd.concat(parts, ignore_index=True)
    _refuse_pooling(rows)
    return rows


def _refuse_pooling(rows: pd.DataFrame) -> None:
    if not set(KEY) <= set(rows.columns):
        return
    keyed = rows[KEY].astype(str).assign(results_dir=rows["results_dir"]).drop_duplicates()
    twice = keyed[keyed.duplicated(KEY, keep=False)]
    if twice.empty:
        return
    first = twice.iloc[0]
    where = sorted(twice[(twice[KEY] == first[KEY]).all(axis=1)].results_dir)
    clashes = twice.groupby(KEY).ngroups
    raise PooledResults(
        f"{first.codec} on {first.dataset}/{first.sequence} at rate {first.rate} is in both {where[0]} and {where[1]}"
        f"{f' ({clashes} such rows in all)' if clashes > 1 else ''}: reports never average two folders' rows. "
        "Pass one of them with --results, or rerun one with another codec label (--codec NAME:label=OTHER) to compare them as two curves"
    )


_DIGESTS: dict[tuple[str, int, int, str], str] = {}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks: the one file hash of the packages
    (bitstreams, weights, checkpoints, imported files). Remembered per (path, size, mtime),
    so a sweep hashes a weights file once, and a rewritten file is hashed again."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, algorithm)
    if key not in _DIGESTS:
        h = hashlib.new(algorithm)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


# --- frame types --------------------------------------------------------------------------


#: DCVC splits a sequence's frames into I (intra) and P (every other one) and reports each
#: part's mean bpp and metrics; summary rows carry the same split as these columns
#: (``i_frames``, ``i_frame_bpp``, ``i_frame_<metric>``, and ``p_...``), bench import fills
#: them from DCVC files and :func:`with_frame_types` from a run's frames.csv.
SPLIT_TYPES = ("i", "p")


def frame_type_split(frames: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, sequence, codec, rate) of frames.csv rows: the count, mean bpp and mean
    of every metric column of its I frames and of its other frames. A job whose frames have
    no type (a codec that does not report them) has no row: its split is unknown, not all-P."""
    metrics = [c for c in frames.columns if c not in FRAMES_FIRST and c != "frame" and pd.api.types.is_numeric_dtype(frames[c])]
    typed = frames[frames["frame_type"].fillna("").astype(str).str.len() > 0] if "frame_type" in frames else frames.iloc[0:0]
    known = typed[KEY].astype(str).drop_duplicates()
    if known.empty:
        return pd.DataFrame(columns=KEY)
    everyone = frames.assign(**{k: frames[k].astype(str) for k in KEY}).merge(known, on=KEY)
    intra = everyone["frame_type"].fillna("").astype(str).str.upper() == "I"
    parts = []
    for t, sel in (("i", everyone[intra]), ("p", everyone[~intra])):
        g = sel.groupby(KEY)
        part = g[["bpp", *metrics]].mean().add_prefix(f"{t}_frame_")
        part[f"{t}_frames"] = g.size()
        parts.append(part)
    out = known.set_index(KEY).join(parts[0]).join(parts[1]).reset_index()
    for t in SPLIT_TYPES:
        out[f"{t}_frames"] = out[f"{t}_frames"].fillna(0).astype(int)
    return out


def with_frame_types(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the I/P split (:data:`SPLIT_TYPES`) filled from the frames.csv beside
    each row's summary.csv (``results_dir``), where a row does not carry it already."""
    if "results_dir" not in summary:
        return summary
    need = summary["i_frames"].isna() if "i_frames" in summary else pd.Series(True, index=summary.index)
    parts = []
    for d in summary.loc[need, "results_dir"].dropna().unique():
        table = ResultsStore(d).frames()
        if not table.empty:
            parts.append(frame_type_split(table))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return summary
    split = pd.concat(parts, ignore_index=True).drop_duplicates(KEY)
    keys = summary[KEY].astype(str)
    found = keys.merge(split, on=KEY, how="left").set_index(summary.index)
    out = summary.copy()
    for col in split.columns.difference(KEY):
        out[col] = out[col].where(~need | out[col].notna(), found[col]) if col in out else found[col].where(need)
    return out
