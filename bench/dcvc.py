"""DCVC's results JSON, both ways: ``bench import --format dcvc`` and ``bench export --format dcvc``.

The schema is what microsoft/DCVC's ``test_video.py`` writes (``src/utils/common.py``,
``generate_log_json``) and its ``compare_bd_rate.py`` reads; MLVC's tools share it::

    {dataset: {sequence file: {rate key ("022"): {
        "frame_pixel_num", "i_frame_num", "p_frame_num",
        "ave_{i,p,all}_frame_{bpp, psnr, msssim, psnr_y/u/v, msssim_y/u/v}",
        "test_time", "avg_frame_encoding_time", "avg_frame_decoding_time", ...}}}}

A file holds one codec and one colour space: ``ave_all_frame_psnr`` is RGB PSNR in an RGB test
and (6Y + U + V)/8 in a YUV 4:2:0 test (``--yuv420 1``), and so is ``ave_all_frame_msssim``.
The harness keeps them apart (:func:`metric_columns`): ``psnr_rgb``/``ms_ssim_rgb`` or
``psnr_yuv``/``ms_ssim_yuv``, planes in ``psnr_y``/``ms_ssim_y``..., I and P frames in
``i_frame_<column>``/``p_frame_<column>`` with their counts in ``i_frames``/``p_frames``
(:data:`bench.store.SPLIT_TYPES`). DCVC writes 0 for "not measured" (an MS-SSIM without
``--calc_ssim``) and for the values of a frame type with no frames: they are empty here and
0 again on export. Fields the harness has no column for are kept as ``dcvc_<field>`` (the VTM
anchor's ``qp``, ``ds_name``, ``seq_name``) and written back; the file's own dataset and
sequence names stay in ``source_dataset``/``source_sequence``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import DATASETS as REGISTRY
from .metrics import RATE_COLUMNS, column
from .published import dataset_name, sequence_name
from .published import finite as _finite
from .store import atomic_write_text

FRAME_PREFIX = {"all": "", "i": "i_frame_", "p": "p_frame_"}
SPACES = ("rgb", "yuv")
#: the harness's dataset names as DCVC's dataset configs spell them
DATASETS = {"hevc_b": "HEVC_B", "hevc_c": "HEVC_C", "hevc_d": "HEVC_D", "hevc_e": "HEVC_E", "uvg": "UVG", "mcl_jcv": "MCL-JCV"}
#: DCVC timing fields -> columns. test_time is the whole test of one sequence and rate (seconds,
#: coding and measuring); the averages are per frame, without DCVC's 10 warm-up frames.
TIMING = {"test_time": "test_time_s", "avg_frame_encoding_time": "encode_s_per_frame", "avg_frame_decoding_time": "decode_s_per_frame"}
COUNTS = ("frame_pixel_num", "i_frame_num", "p_frame_num")
EXTRA = "dcvc_"
_TOLERANCE = {"psnr": 0.01, "msssim": 0.001}  # the file's 6:1:1 value against its planes'


class DCVCFormatError(ValueError):
    """A DCVC file or an export that does not fit the schema; the message says what and how to fix it."""


def metric_columns(space: str) -> dict[str, str]:
    """DCVC's distortion names (after ``ave_<type>_frame_``) -> the harness's columns, for a
    file of ``space`` (rgb or yuv)."""
    if space not in SPACES:
        raise DCVCFormatError(f"--psnr-space must be rgb or yuv, got {space!r}")
    cols = {"psnr": f"psnr_{space}", "msssim": f"ms_ssim_{space}"}
    for c in "yuv":
        cols[f"psnr_{c}"], cols[f"msssim_{c}"] = f"psnr_{c}", f"ms_ssim_{c}"
    return cols


def _col(frame_type: str, col: str) -> str:
    return FRAME_PREFIX[frame_type] + col


# --- import ----------------------------------------------------------------------------------


def read(path: Path, data: dict, codec: str, space: str) -> pd.DataFrame:
    """Summary rows of every (dataset, sequence, rate) entry of a parsed DCVC file. Notes on
    what was left out (DCVC's per-frame lists) are in ``attrs["notes"]``."""
    cols = metric_columns(space)
    rows, lists, fields = [], set(), {}
    for ds, seqs in _dict(data, path, "the top level (datasets)").items():
        for seq, rates in _dict(seqs, path, f"dataset {ds!r}").items():
            for rate, res in _dict(rates, path, f"{ds}/{seq}").items():
                where = f"{ds}/{seq}/{rate}"
                res = _dict(res, path, where)
                fields[where] = {k for k in res if k.startswith("ave_") or k in COUNTS}
                row = {"dataset": dataset_name(ds), "sequence": sequence_name(seq), "codec": codec, "rate": str(rate)}
                row.update(_geometry(res, path, where, row["dataset"], seq, row["sequence"]))
                row.update(_entry(res, path, where, cols, space), source_dataset=ds, source_sequence=seq)
                lists |= {k for k, v in res.items() if isinstance(v, (list, dict))}
                rows.append(row)
    if not rows:
        raise DCVCFormatError(f"{path}: no results in the file")
    _same_fields(path, fields)
    df = pd.DataFrame(rows)
    if space == "rgb":
        _not_yuv(df, path)
    df.attrs["notes"] = (
        [f"left out {', '.join(sorted(lists))}: lists (DCVC's per-frame values) and nested fields; bench import keeps one row per rate point"] if lists else []
    )
    return df


def _same_fields(path: Path, fields: dict[str, set[str]]) -> None:
    """Every entry must have the fields the others have: DCVC's compare_bd_rate.py counts a
    missing distortion as 0 in its class curve, which would bias it silently."""
    union = set().union(*fields.values())
    for where, have in fields.items():
        missing = sorted(union - have)
        if missing:
            raise DCVCFormatError(
                f"{path}: {where} has no {', '.join(missing)}, which other entries have; "
                "add the field to that sequence's rate point (or remove it everywhere) so that every entry is measured alike"
            )


def _entry(res: dict, path: Path, where: str, cols: dict[str, str], space: str) -> dict:
    if "ave_all_frame_bpp" not in res:
        raise DCVCFormatError(f"{path}: {where} has no ave_all_frame_bpp (keys: {', '.join(sorted(res))[:200]})")
    num = lambda key, **kw: _finite(res[key], path, where, key, **kw)
    out, counts = {}, _counts(res, path, where)
    for t, prefix in FRAME_PREFIX.items():
        if t != "all" and not counts:
            continue
        none = t != "all" and counts[t] == 0
        for name in [k[len(f"ave_{t}_frame_") :] for k in res if k.startswith(f"ave_{t}_frame_")]:
            key = f"ave_{t}_frame_{name}"
            if name != "bpp" and name not in cols:
                out[EXTRA + key] = res[key]  # a distortion this harness has no column for
                continue
            value = num(key, positive=name == "bpp" and not none)
            if none and value != 0:
                raise DCVCFormatError(f"{path}: {where}: {key} is {value!r} but {t}_frame_num is 0; DCVC writes 0 there")
            col = "bpp" if name == "bpp" else cols[name]
            out[prefix + col] = np.nan if none or (name.startswith("msssim") and value == 0) else value
        out.update(_six_one_one(out, t, path, where, space))
    if counts:
        out.update(i_frames=counts["i"], p_frames=counts["p"], frames=counts["i"] + counts["p"])
    out.update({col: num(key) for key, col in TIMING.items() if key in res})
    out.update({EXTRA + k: v for k, v in res.items() if k not in COUNTS and k not in TIMING and not k.startswith("ave_") and not isinstance(v, (list, dict))})
    return out


def _counts(res: dict, path: Path, where: str) -> dict[str, int]:
    have = [k for k in ("i_frame_num", "p_frame_num") if k in res]
    if not have:
        split = sorted(k for k in res if k.startswith(("ave_i_frame_", "ave_p_frame_")))
        if split:
            raise DCVCFormatError(f"{path}: {where} has {split[0]} but no i_frame_num and p_frame_num: the I/P values cannot be weighted; add both counts")
        return {}
    if len(have) == 1:
        raise DCVCFormatError(f"{path}: {where} has {have[0]} but not {'p' if have[0][0] == 'i' else 'i'}_frame_num; a DCVC entry has both")
    n = {t: res[f"{t}_frame_num"] for t in "ip"}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in n.values()) or sum(n.values()) == 0:
        raise DCVCFormatError(f"{path}: {where}: i_frame_num {n['i']!r} and p_frame_num {n['p']!r} must be whole numbers >= 0, not both 0")
    return n


def _not_yuv(df: pd.DataFrame, path: Path) -> None:
    """An RGB test writes no planes; a file whose every PSNR is (6Y + U + V)/8 of its planes
    is a YUV test, and its MS-SSIM would be mislabelled ms_ssim_rgb."""
    if "psnr_yuv" not in df or "psnr_rgb" not in df:
        return
    off = (df["psnr_rgb"] - df["psnr_yuv"]).abs()
    if off.notna().all() and (off <= _TOLERANCE["psnr"]).all():
        raise DCVCFormatError(
            f"{path}: every ave_all_frame_psnr is (6Y + U + V)/8 of its planes: the file is from a YUV test (--yuv420 1); import it with --psnr-space yuv"
        )


def _six_one_one(out: dict, t: str, path: Path, where: str, space: str) -> dict:
    """The (6Y + U + V)/8 value of each distortion with planes: derived in an RGB file (which
    has no such field), checked against the file's own in a YUV file, so that a YUV file
    imported as RGB (or the reverse) is caught rather than mislabelled."""
    derived = {}
    for metric, col in (("psnr", "psnr_yuv"), ("msssim", "ms_ssim_yuv")):
        plane = "psnr" if metric == "psnr" else "ms_ssim"
        y, u, v = (out.get(_col(t, f"{plane}_{c}"), np.nan) for c in "yuv")
        mean = (6 * y + u + v) / 8
        if math.isnan(mean):
            continue
        own = out.get(_col(t, col), np.nan)
        if space == "rgb":
            derived[_col(t, col)] = mean
        elif not math.isnan(own) and abs(own - mean) > _TOLERANCE[metric]:
            raise DCVCFormatError(
                f"{path}: {where}: ave_{t}_frame_{metric} is {own!r}, but (6Y + U + V)/8 of its planes is {mean:.6f}: "
                "it is not a YUV value; if the file is from an RGB test, import it with --psnr-space rgb"
            )
    return derived


def _geometry(res: dict, path: Path, where: str, dataset: str, seq_key: str, seq: str) -> dict:
    """width and height from the sequence file name (``_1920x1080``), else from the dataset
    registry; either must multiply to frame_pixel_num. Neither: ``pixels`` alone."""
    if "frame_pixel_num" not in res:
        return {}
    pixels = res["frame_pixel_num"]
    if not isinstance(pixels, int) or isinstance(pixels, bool) or pixels <= 0:
        raise DCVCFormatError(f"{path}: {where}: frame_pixel_num is {pixels!r}, not a whole number of pixels")
    m = re.search(r"_(\d+)x(\d+)", seq_key)
    specs = {s.name: (s.width, s.height) for s in getattr(REGISTRY.get(dataset), "specs", [])}
    size = (int(m.group(1)), int(m.group(2))) if m else specs.get(seq)
    if size is None:
        return {"pixels": pixels}
    if size[0] * size[1] != pixels:
        raise DCVCFormatError(f"{path}: {where}: frame_pixel_num is {pixels}, but the sequence is {size[0]}x{size[1]} = {size[0] * size[1]} pixels")
    return {"width": size[0], "height": size[1]}


def _dict(obj, path: Path, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DCVCFormatError(f"{path}: expected an object at {where}, found {type(obj).__name__}")
    return obj


# --- export ----------------------------------------------------------------------------------


def export(summary: pd.DataFrame, space: str, codec: str | None = None) -> tuple[dict, list[str]]:
    """(DCVC JSON object of one codec's rows, notes): what compare_bd_rate.py reads as it
    reads DCVC's own files. The notes say which metrics the schema could not hold and what
    was assumed."""
    rows = _one_codec(summary, codec)
    cols = metric_columns(space)
    if cols["psnr"] not in rows or rows[cols["psnr"]].isna().any():
        raise DCVCFormatError(
            f"{rows['codec'].iloc[0]}: some rows have no {cols['psnr']}, and a DCVC {space.upper()} file has ave_all_frame_psnr in every entry; "
            f"export --psnr-space {'yuv' if space == 'rgb' else 'rgb'} if that is what was measured"
        )
    notes = _left_out(rows, cols, space)
    if "i_frames" not in rows or rows["i_frames"].isna().any():
        notes.append(
            "frame types unknown for some rows: written as DCVC's VTM anchor file does, every frame counted as I (i_frame_num = frames), so compare all frames only"
        )
    out: dict = {}
    for _, row in rows.iterrows():
        ds, seq, key = _names(row)
        if key in out.setdefault(ds, {}).setdefault(seq, {}):
            raise DCVCFormatError(f"two rows of {row['codec']} become {ds}/{seq}/{key}; export one dataset or one of the two rate points")
        out[ds][seq][key] = _fields(row, cols)
    return out, notes


def _one_codec(summary: pd.DataFrame, codec: str | None) -> pd.DataFrame:
    codecs = sorted(summary["codec"].astype(str).unique())
    if codec is None and len(codecs) != 1:
        raise DCVCFormatError(f"a DCVC file holds one codec; the results have {', '.join(codecs)}: pass --codec NAME")
    codec = codec or codecs[0]
    rows = summary[summary["codec"].astype(str) == codec]
    if rows.empty:
        raise DCVCFormatError(f"no results of codec {codec!r}; codecs there: {', '.join(codecs)}")
    if (rows["sequence"].astype(str) == "*").any():
        raise DCVCFormatError(f"{codec} has dataset-level rows (sequence '*', a published curve): a DCVC file holds sequences")
    return rows


def _left_out(rows: pd.DataFrame, cols: dict[str, str], space: str) -> list[str]:
    written = set(cols.values()) | ({"psnr_yuv", "ms_ssim_yuv"} if space == "rgb" else set())  # derivable from the planes
    rate = {c.name for c in RATE_COLUMNS}
    measured = [c for c in rows.columns if (column(c) is not None or c == "psnr_yuv_411") and c not in rate and rows[c].notna().any()]
    left = sorted(set(measured) - written)
    return [f"left out {', '.join(left)}: a DCVC {space.upper()} file has no field for them"] if left else []


def _names(row) -> tuple[str, str, str]:
    """The file's own names where the rows came from one, else DCVC's (its dataset configs'
    class names and the registry's file names, as in its VTM anchor file)."""
    ds, seq = row.get("source_dataset"), row.get("source_sequence")
    if not isinstance(ds, str):
        ds = DATASETS.get(row["dataset"], str(row["dataset"]))
    if not isinstance(seq, str):
        files = {s.name: s.file for s in getattr(REGISTRY.get(row["dataset"]), "specs", [])}
        seq = files.get(str(row["sequence"]), str(row["sequence"]))
    rate = str(row["rate"])
    return ds, seq, f"{int(rate):03d}" if rate.isdigit() else rate


def _fields(row, cols: dict[str, str]) -> dict:
    """One entry, in generate_log_json's order; NaN (not measured, no such frames) as DCVC's 0.
    Without a known I/P split every frame counts as I, as in DCVC's VTM anchor file."""
    frames = _int(row.get("frames"), "frames", row)
    split = "i_frame_bpp" in row.index and not pd.isna(row.get("i_frames", np.nan))
    n = {"i": _int(row["i_frames"], "i_frames", row), "p": _int(row["p_frames"], "p_frames", row)} if split else {"i": frames, "p": 0}
    names = ["bpp", "psnr", "msssim"] + [k for k in cols if "_" in k and cols[k] in row.index]  # planes where measured
    out = {"frame_pixel_num": _pixels(row), "i_frame_num": n["i"], "p_frame_num": n["p"]}
    for t in ("i", "p", "all"):
        for name in names:
            col = "bpp" if name == "bpp" else cols[name]
            source = col if t == "all" or (t == "i" and not split) else _col(t, col) if split else None
            value = row.get(source, np.nan) if source else np.nan
            out[f"ave_{t}_frame_{name}"] = 0.0 if pd.isna(value) else float(value)
        if t == "i":
            out.update(_timing(row, frames, "test_time"))
    out.update(_timing(row, frames, "avg"))
    out.update({k[len(EXTRA) :]: _plain(v) for k, v in row.items() if isinstance(k, str) and k.startswith(EXTRA) and not _missing(v)})
    return out


def _timing(row, frames: int, which: str) -> dict:
    """test_time, or the per-frame averages: a DCVC import's own, else from this harness's
    whole-sequence encode_s/decode_s/metrics_s (DCVC leaves 10 warm-up frames out; this does not)."""
    get = lambda c: row.get(c, np.nan)
    if which == "test_time":
        if not pd.isna(get("test_time_s")):
            return {"test_time": float(get("test_time_s"))}
        parts = [get(c) for c in ("encode_s", "decode_s", "metrics_s")]
        return {"test_time": float(sum(parts))} if not any(pd.isna(p) for p in parts) else {}
    enc, dec = get("encode_s_per_frame"), get("decode_s_per_frame")
    if pd.isna(enc) or pd.isna(dec):
        enc, dec = get("encode_s") / frames, get("decode_s") / frames
    return {} if pd.isna(enc) or pd.isna(dec) else {"avg_frame_encoding_time": float(enc), "avg_frame_decoding_time": float(dec)}


def _pixels(row) -> int:
    w, h = row.get("width", np.nan), row.get("height", np.nan)
    if not (pd.isna(w) or pd.isna(h)):
        return int(w) * int(h)
    return _int(row.get("pixels", np.nan), "width and height (or pixels)", row)


def _int(value, what: str, row) -> int:
    if value is None or pd.isna(value) or float(value) != int(float(value)):
        raise DCVCFormatError(f"{row['codec']} on {row['dataset']}/{row['sequence']} at rate {row['rate']}: no {what} ({value!r}); a DCVC entry needs it")
    return int(float(value))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v):
    """A numpy or pandas scalar as JSON's: a whole float read back from CSV as the int it was."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    return v


def write(obj: dict, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(obj, indent=2, allow_nan=False) + "\n")
    return out
