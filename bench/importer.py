"""``python -m bench import``: published results files -> summary.csv rows.

So a codec can be compared with numbers others published, without rerunning them. Every
imported row says so (``imported`` True, ``source`` = the file and its SHA-256) and carries
no bitstream. Formats:

- ``long``: a CSV table with columns ``dataset, metric, codec, bpp, value`` (optionally
  ``sequence`` and ``point``), one row per plotted point, as ``results/published/
  diffsit_fig5.csv``. Points of one curve measured with several metrics are joined on their
  bpp (4 decimals, the precision papers plot).
- ``dcvc``: the JSON that microsoft/DCVC's ``test_video.py`` writes (and its anchors' result
  files): ``{dataset: {sequence: {rate_index: {"ave_all_frame_bpp", "ave_all_frame_psnr",
  "ave_all_frame_msssim", ["ave_all_frame_psnr_y"/_u/_v] ...}}}}``, every field of it
  (:mod:`bench.dcvc`; ``bench export --format dcvc`` writes it back). The file does not name
  the codec: pass ``--codec``. ``ave_all_frame_psnr`` and ``_msssim`` are RGB values for RGB
  tests and (6Y + U + V)/8 for ``--yuv420 1`` tests: pass ``--psnr-space rgb|yuv``; they go
  to ``psnr_rgb``/``ms_ssim_rgb`` or ``psnr_yuv``/``ms_ssim_yuv``. An MS-SSIM of 0
  (``--calc_ssim`` off) is "not measured": left empty.
- ``compressai``: CompressAI's results JSON ``{"name", "description", "results": {"bpp": [...],
  "psnr-rgb" | "psnr", "ms-ssim-rgb" | "ms-ssim", "psnr-y", "psnr-u", "psnr-v", "psnr-yuv":
  [...]}}``, one dataset-level curve; pass ``--dataset``. Its ``psnr-yuv`` is (4Y + U + V)/6
  and goes to ``psnr_yuv_411`` as published; ``psnr_yuv`` (6:1:1) is computed from
  ``psnr-y/u/v`` when the file has them, else left out.

Every bpp must be a finite positive number and every metric value finite: a NaN, infinite,
zero or negative point is refused with the file, where in it, and what to fix, before
anything is written.

Dataset-level results (everything but per-sequence DCVC files) have sequence ``*``: reports
compare them with the dataset-level curve of a user's runs (see :func:`bench.report.bd_table`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import dcvc
from .metrics import column, metric_columns
from .published import ImportFormatError, dataset_name
from .published import finite as _finite
from .published import sequence_name as sequence_name  # bench import's API (tests), kept at its path
from .store import ResultsStore, file_digest

FORMATS = ("long", "dcvc", "compressai")
DATASET_LEVEL = "*"


# the metric columns a long table may use (the results contract's names)
def _metric(name: str) -> str:
    """A published metric name as the registry's column (its name or one of its aliases)."""
    known = metric_columns()
    aliases = {a: c.name for n in known if (c := column(n)) for a in c.aliases}
    key = name.strip().lower()
    key = aliases.get(key, key)
    if key not in known:
        raise ImportFormatError(f"unknown metric {name!r}; use one of {', '.join(known)} (aliases: {', '.join(aliases)})")
    return key


def read_long(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    need = {"dataset", "metric", "codec", "bpp", "value"}
    if not need <= set(df.columns):
        raise ImportFormatError(f"{path}: a long table needs the columns {', '.join(sorted(need))}; it has {', '.join(df.columns)}")
    if "sequence" not in df:
        df["sequence"] = DATASET_LEVEL
    df["sequence"] = df["sequence"].fillna(DATASET_LEVEL).astype(str)
    df["dataset"] = df["dataset"].astype(str).map(dataset_name)
    df["metric"] = df["metric"].astype(str).map(_metric)
    for col in ("bpp", "value"):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ImportFormatError(
                f"{path}: column {col} has non-numbers, first at data row {row + 1} ({df[col].iloc[row]!r}: NaN, infinite or empty); correct or remove that row"
            )
        df[col] = values
    if (df["bpp"] <= 0).any():
        raise ImportFormatError(f"{path}: bpp must be positive (data row {int(np.flatnonzero(df['bpp'] <= 0)[0]) + 1})")
    df["_bpp_key"] = df["bpp"].round(4)
    dup = df.duplicated(["dataset", "sequence", "codec", "metric", "_bpp_key"])
    if dup.any():
        r = df[dup].iloc[0]
        raise ImportFormatError(f"{path}: two {r['metric']} values for {r['codec']} on {r['dataset']} at bpp {r['bpp']:g}")
    wide = df.pivot_table(index=["dataset", "sequence", "codec", "_bpp_key"], columns="metric", values="value", aggfunc="first").reset_index()
    bpp = df.groupby(["dataset", "sequence", "codec", "_bpp_key"])["bpp"].mean().reset_index()
    wide = wide.merge(bpp, on=["dataset", "sequence", "codec", "_bpp_key"]).drop(columns="_bpp_key")
    wide.columns.name = None
    return _number_rates(wide)


def _number_rates(df: pd.DataFrame) -> pd.DataFrame:
    """rate = the point's index along its curve, in order of increasing bpp."""
    df = df.sort_values(["dataset", "codec", "sequence", "bpp"]).reset_index(drop=True)
    df["rate"] = df.groupby(["dataset", "codec", "sequence"]).cumcount().astype(str)
    return df


def read_dcvc(path: Path, codec: str | None, psnr_space: str = "rgb") -> pd.DataFrame:
    """Every field of a DCVC results file (:mod:`bench.dcvc`): bpp and metrics of all, I and
    P frames in their own columns, frame counts, geometry, timing, and DCVC's other fields."""
    if not codec:
        raise ImportFormatError("a DCVC results file does not name its codec: pass --codec NAME (e.g. DCVC-DC)")
    try:
        return dcvc.read(path, _json(path), codec, psnr_space)
    except dcvc.DCVCFormatError as e:
        raise ImportFormatError(str(e)) from None


#: CompressAI results keys -> columns. Its psnr-yuv is (4Y + U + V)/6 (compressai.utils.video.
#: eval_model), not the harness's (6Y + U + V)/8: it keeps a column of its own.
_COMPRESSAI = {
    "bpp": "bpp",
    "psnr-rgb": "psnr_rgb",
    "psnr": "psnr_rgb",
    "ms-ssim-rgb": "ms_ssim_rgb",
    "ms-ssim": "ms_ssim_rgb",
    "psnr-y": "psnr_y",
    "psnr-u": "psnr_u",
    "psnr-v": "psnr_v",
    "psnr-yuv": "psnr_yuv_411",
}


def read_compressai(path: Path, dataset: str | None) -> pd.DataFrame:
    if not dataset:
        raise ImportFormatError("a CompressAI results file does not name its dataset: pass --dataset NAME (e.g. uvg)")
    data = _dict(_json(path), path, "the top level")
    if "results" not in data or "name" not in data:
        raise ImportFormatError(f"{path}: a CompressAI results file has 'name' and 'results'; this one has {', '.join(data)}")
    res = _dict(data["results"], path, "results")
    if "bpp" not in res:
        raise ImportFormatError(f"{path}: results has no 'bpp' list")
    out = {}
    for key, col in _COMPRESSAI.items():
        if key in res and col not in out:
            if not isinstance(res[key], list):
                raise ImportFormatError(f"{path}: results.{key} is {type(res[key]).__name__}, not a list of one value per point")
            out[col] = [_finite(v, path, f"results.{key}[{i}] (point {i})", key, positive=col == "bpp") for i, v in enumerate(res[key])]
    n = len(out["bpp"])
    if n == 0:
        raise ImportFormatError(f"{path}: results.bpp is empty: the file has no points to import")
    bad = [c for c, v in out.items() if len(v) != n]
    if bad:
        raise ImportFormatError(f"{path}: {', '.join(bad)} have a different number of points than bpp ({n})")
    df = pd.DataFrame(out)
    if {"psnr_y", "psnr_u", "psnr_v"} <= set(df):
        df["psnr_yuv"] = _yuv_611(df, path)
    df.insert(0, "codec", str(data["name"]))
    df.insert(0, "sequence", DATASET_LEVEL)
    df.insert(0, "dataset", dataset_name(dataset))
    return _number_rates(df)


def _yuv_611(df: pd.DataFrame, path: Path) -> pd.Series:
    """The harness's psnr_yuv from CompressAI's per-plane means, exactly: both average per-frame
    PSNRs, so the weighted sum commutes with the means. Refused if the file's own psnr-yuv is
    not (4Y + U + V)/6 of them, i.e. if its conventions are not the ones assumed here."""
    if "psnr_yuv_411" in df:
        own = (4 * df.psnr_y + df.psnr_u + df.psnr_v) / 6
        off = (own - df.psnr_yuv_411).abs()
        if (off > 0.01).any():
            i = int(off.to_numpy().argmax())
            raise ImportFormatError(
                f"{path}: results.psnr-yuv[{i}] is {df.psnr_yuv_411[i]!r}, but (4Y + U + V)/6 of its psnr-y/u/v is {own[i]:.4f}: "
                "the file does not follow CompressAI's convention; import its per-plane values in a long table instead"
            )
    return (6 * df.psnr_y + df.psnr_u + df.psnr_v) / 8


def _json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{path}: not valid JSON ({e})") from None


def _dict(obj, path: Path, where: str) -> dict:
    if not isinstance(obj, dict):
        raise ImportFormatError(f"{path}: expected an object at {where}, found {type(obj).__name__}")
    return obj


def import_results(
    path: str | Path, fmt: str, *, codec: str | None = None, dataset: str | None = None, psnr_space: str = "rgb", source: str | None = None
) -> pd.DataFrame:
    """Rows in the summary.csv contract, marked imported, with their source."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ImportFormatError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "long":
        df = read_long(path)
        if codec:
            raise ImportFormatError("a long table names its codecs in its codec column; --codec is only for dcvc files")
    elif fmt == "dcvc":
        df = read_dcvc(path, codec, psnr_space)
    else:
        df = read_compressai(path, dataset)
    notes = df.attrs.get("notes", [])
    if dataset and fmt != "compressai":
        df = df[df["dataset"] == dataset_name(dataset)]
        if df.empty:
            raise ImportFormatError(f"{path}: no rows for dataset {dataset!r}")
    df["imported"] = True
    df["source"] = source or f"{path.name} (sha256 {file_digest(path)[:16]})"
    for col in ("frames", "width", "height", "bytes", "bitstream", "bitstream_md5"):
        if col not in df:
            df[col] = np.nan
    first = ["dataset", "sequence", "codec", "rate", "frames", "width", "height", "bytes", "bpp", "bitstream", "bitstream_md5"]
    df = df[first + [c for c in df.columns if c not in first]]
    df.attrs["notes"] = notes
    return df


def write_imported(df: pd.DataFrame, out: str | Path, *, path: Path, fmt: str) -> Path:
    """summary.csv and manifest.json (what was imported from where, when) in ``out``."""
    store = ResultsStore(out)
    # shortest exact text of every float (not %.10g): an import exports back to the same numbers
    summary = store.write_summary(df, float_format=None)
    manifest = {
        "imported": {
            "file": str(path),
            "sha256": file_digest(path),
            "format": fmt,
            "rows": len(df),
            "codecs": sorted(df["codec"].unique()),
            "datasets": sorted(df["dataset"].unique()),
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    }
    store.write_manifest_data(manifest)
    return summary
