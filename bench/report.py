"""Reports from summary.csv: RD curves, BD-rate tables.

Reads only the results contract (summary.csv rows), so results made by other tools can be
dropped in. The dataset-level (class) curve of a codec is, per rate point, the mean bpp and
the mean metric over the sequences: weighted by frame count for BD tables' 'Overall' row
(DCVC's convention), unweighted for their 'all (unweighted)' row and for plots. Only
sequences that a codec has at *every* rate point take part, so a failed job never biases a
curve silently.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import bdrate as bd
from .codec import UnknownCodec, codec_class
from .metrics import column, lower_is_better, perceptual_columns, plot_columns

DATASET_LEVEL = "*"  # the sequence of imported dataset-level rows (bench.importer)
MS_SSIM_COLUMNS = ("ms_ssim_rgb", "ms_ssim_yuv")  # what --ms-ssim-db turns into dB

# Codecs get a style from their name alone: a stable hash into a palette (the same on every
# machine and run, unlike hash()), unless their plugin declares one (``plot_style``).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">")


def codec_style(codec: str) -> tuple[str, str]:
    """(colour, marker) of a codec: its plugin's ``plot_style`` if it declares one, else one
    derived from the name. Imported curves (``HM16.25``) are not plugins and use the hash."""
    style = _plugin_style(codec)
    if style is not None:
        return style
    h = zlib.crc32(codec.encode())
    return _PALETTE[h % len(_PALETTE)], _MARKERS[(h // len(_PALETTE)) % len(_MARKERS)]


def _plugin_style(codec: str) -> tuple[str, str] | None:
    try:
        style = getattr(codec_class(codec), "plot_style", None)
    except (UnknownCodec, ImportError, AttributeError):
        return None
    return tuple(style) if style else None


def metric_label(metric: str, ms_ssim_db: bool = False) -> str:
    if metric in MS_SSIM_COLUMNS and ms_ssim_db:
        return f"MS-SSIM{'-YUV' if metric == 'ms_ssim_yuv' else ''} (dB) ↑"
    c = column(metric)
    label, up = (c.axis_label, c.higher_is_better) if c else (metric, True)
    return f"{label} {'↑' if up else '↓'}"


def present_metrics(summary: pd.DataFrame, wanted=None) -> list[str]:
    """The metric columns in ``summary`` with a value (default: those the registry plots)."""
    wanted = plot_columns() if wanted is None else wanted
    return [m for m in wanted if m in summary.columns and summary[m].notna().any()]


def complete_sequences(rows: pd.DataFrame) -> set[str]:
    """Sequences present at every rate point of one codec in one dataset."""
    rates = rows["rate"].nunique()
    counts = rows.groupby("sequence")["rate"].nunique()
    return set(counts[counts == rates].index)


def dataset_curves(
    summary: pd.DataFrame, metrics: list[str], sequences: dict[tuple[str, str], set[str]] | None = None, *, frame_weighted: bool = False
) -> pd.DataFrame:
    """Mean bpp and metrics per (dataset, codec, rate) over each codec's complete sequences.

    Unweighted by default (every sequence counts once). ``frame_weighted``: each sequence
    weighs its ``frames``, as DCVC's ``compare_bd_rate.py`` builds its 'Overall' class curve
    (``mean_over_rate_point``), so a 600-frame sequence counts 2.5 times a 240-frame one; a
    sequence without a frame count then raises :class:`UnknownFrames` (a curve with one
    sequence needs no weight: published dataset-level curves).
    """
    parts = []
    for (dataset, codec), rows in summary.groupby(["dataset", "codec"], sort=True):
        keep = sequences.get((dataset, codec)) if sequences else None
        keep = complete_sequences(rows) if keep is None else keep
        sel = rows[rows["sequence"].isin(keep)]
        if sel.empty:
            continue
        g = sel.groupby("rate", sort=False)
        curve = _weighted_means(sel, ["bpp", *metrics], dataset, codec) if frame_weighted and sel["sequence"].nunique() > 1 else g[["bpp", *metrics]].mean()
        curve["sequences"] = g["sequence"].nunique()
        curve["imported"] = bool(sel["imported"].fillna(False).astype(bool).any()) if "imported" in sel else False
        curve = curve.reset_index()
        curve.insert(0, "codec", codec)
        curve.insert(0, "dataset", dataset)
        parts.append(curve.sort_values("bpp"))
    cols = ["dataset", "codec", "rate", "bpp", *metrics, "sequences", "imported"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


class UnknownFrames(ValueError):
    """A frame-weighted curve over sequences whose frame counts are not in the results."""


def _weighted_means(sel: pd.DataFrame, cols: list[str], dataset: str, codec: str) -> pd.DataFrame:
    """Per rate point, each column's mean weighted by frame count. A value missing in one
    sequence makes that point NaN (DCVC would count it as 0 and bias the curve)."""
    frames = pd.to_numeric(sel["frames"], errors="coerce") if "frames" in sel else pd.Series(np.nan, index=sel.index)
    if frames.isna().any() or (frames <= 0).any():
        unknown = sorted(sel.loc[frames.isna() | (frames <= 0), "sequence"].astype(str).unique())
        raise UnknownFrames(f"{codec} on {dataset}: no frame count (frames) for {', '.join(unknown)}")
    w = sel.assign(_w=frames)
    return w.groupby("rate", sort=False)[[*cols, "_w"]].apply(lambda g: pd.Series({c: np.average(g[c], weights=g["_w"]) for c in cols}))


def ms_ssim_to_db(x):
    return -10 * np.log10(1 - np.asarray(x, dtype=np.float64))


# --- BD tables ----------------------------------------------------------------------------------

#: The class-level rows of a BD table (its ``sequence`` column). 'Overall' and 'Average' are
#: the labels DCVC's compare_bd_rate.py prints for the same two numbers, so a reader of DCVC-
#: family papers recognises them; the third says in its name what it does differently.
OVERALL = "Overall"  # BD-rate of the frame-weighted class curves (DCVC's '* Overall')
AVERAGE = "Average"  # mean of the per-sequence BD-rates, with its bootstrap interval ('* Average')
UNWEIGHTED = "all (unweighted)"  # BD-rate of class curves that weigh every sequence once
AGGREGATES = (OVERALL, AVERAGE, UNWEIGHTED)
FRAME_TYPES = ("all", "i", "p")
LOW_OVERLAP_MARK = "†"


@dataclass(frozen=True)
class BDOptions:
    method: str = "pchip"
    convex_hull: bool = False
    #: refuse a BD number below this overlap (fraction of the union); 0: only where none
    min_overlap: float = bd.DEFAULT_MIN_OVERLAP
    #: bootstrap resamples of the mean of per-sequence BD-rates (0: no interval), its
    #: confidence level and seed
    bootstrap: int = 1000
    ci_level: float = 0.95
    seed: int = 0
    #: below this overlap a BD number is marked (LOW_OVERLAP_MARK), with its overlap
    overlap_mark: float = bd.OVERLAP_MARK
    #: which frames: ``all``, ``i`` (intra) and/or ``p`` (every other frame, as DCVC counts)
    frame_types: tuple[str, ...] = ("all",)
    #: rate points left out of every curve (DCVC's --rate_exclude); "22" also matches "022"
    rate_exclude: tuple[str, ...] = ()


def _points(rows: pd.DataFrame, metric: str) -> list[tuple[float, float]]:
    return [(float(r), float(q)) for r, q in zip(rows["bpp"], rows[metric]) if not (math.isnan(r) or math.isnan(q))]


def _no_curve_row(base: dict, label: str, metric: str, error: Exception) -> dict:
    """The row of a dataset-level BD cell that has no frame-weighted curve (frame counts unknown)."""
    note = f"no frame-weighted curve: {error}; see {UNWEIGHTED!r}"
    return {**base, "sequence": label, "metric": metric, "bd_rate": np.nan, "bd_metric": np.nan, "note": note}


def _bd_cell(anchor_pts, test_pts, metric: str, opt: BDOptions) -> dict:
    lower = lower_is_better(metric)
    notes = []
    if opt.convex_hull:
        a2, t2 = bd.convex_hull(anchor_pts, lower_is_better=lower), bd.convex_hull(test_pts, lower_is_better=lower)
        dropped = (len(anchor_pts) - len(a2), len(test_pts) - len(t2))
        if any(dropped):
            notes.append(f"convex hull dropped {dropped[0]} anchor / {dropped[1]} test point(s)")
        anchor_pts, test_pts = a2, t2
    cell = {"points_anchor": len(anchor_pts), "points_test": len(test_pts), "bd_rate": np.nan, "bd_metric": np.nan}
    cell["overlap"], cell["overlap_rate"] = bd.quality_overlap(anchor_pts, test_pts), bd.rate_overlap(anchor_pts, test_pts)
    kw = dict(method=opt.method, lower_is_better=lower, min_overlap=opt.min_overlap)
    try:
        cell["bd_rate"] = bd.bd_rate(anchor_pts, test_pts, **kw)
    except bd.BDError as e:
        notes.append(f"BD-rate: {e}")
    try:
        cell["bd_metric"] = bd.bd_metric(anchor_pts, test_pts, **kw)
    except (bd.NoOverlap, bd.InsufficientOverlap) as e:
        notes.append(f"BD-metric: {e}")
        bound = _dominance(anchor_pts, test_pts, metric, lower)
        if bound:
            cell["dominance"], text = bound
            notes.append(text)
    except bd.BDError as e:
        notes.append(f"BD-metric: {e}")
    notes += _low_overlap(cell, opt)
    cell["note"] = " | ".join(notes)
    return cell


def _low_overlap(cell: dict, opt: BDOptions) -> list[str]:
    """Set ``low_overlap`` where the number a cell shows (its BD-rate, else its BD-metric)
    rests on less overlap than ``opt.overlap_mark``; the note that says so."""
    if not math.isnan(cell["bd_rate"]):
        what, axis, frac = "BD-rate", "quality", cell["overlap"]
    elif not math.isnan(cell["bd_metric"]):
        what, axis, frac = "BD-metric", "log-rate", cell["overlap_rate"]
    else:
        return []
    cell["low_overlap"] = bool(frac < opt.overlap_mark)
    if not cell["low_overlap"]:
        return []
    return [
        f"{LOW_OVERLAP_MARK} low overlap: the {axis} ranges overlap by {100 * frac:.1f}% of their union (under {100 * opt.overlap_mark:.0f}%); "
        f"the {what} averages over that part only (--min-overlap {opt.overlap_mark:g} would refuse it)"
    ]


def _dominance(anchor_pts, test_pts, metric: str, lower: bool) -> tuple[float, str] | None:
    """(bound, note) when one ladder dominates the other: the bound is signed as BD-metric
    (test - anchor), so a test that dominates has the sign of an improvement."""
    for better, worse, sign in ((test_pts, anchor_pts, 1.0), (anchor_pts, test_pts, -1.0)):
        try:
            d = sign * bd.dominance(worse, better, lower_is_better=lower)
        except bd.BDError:
            continue
        side = dominating_side(d, metric)
        other = "anchor" if side == "test" else "test"
        return (
            d,
            f"{side} dominates: at every {other} point a{'n' if side == 'anchor' else ''} {side} point with no more bits is {abs(d):.4g} {metric} better or more (BD-{metric} bound {d:+.4g})",
        )
    return None


def _same_rate(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def exclude_rates(summary: pd.DataFrame, rates: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """``summary`` without the rate points named (DCVC's ``--rate_exclude``, for every codec).
    A name matches a rate point equal to it as text or as a number ("22" leaves out "022");
    one that matches none is an error, not a silent no-op."""
    if not rates:
        return summary
    present = sorted(set(summary["rate"].astype(str)))
    unmatched = [r for r in rates if not any(_same_rate(p, str(r)) for p in present)]
    if unmatched:
        raise ValueError(f"--rate-exclude {', '.join(map(str, unmatched))}: no rate point is called that; the rate points are {', '.join(present)}")
    drop = summary["rate"].astype(str).map(lambda p: any(_same_rate(p, str(r)) for r in rates))
    return summary[~drop]


def frame_type_view(rows: pd.DataFrame, frame_type: str, metrics: list[str]) -> pd.DataFrame:
    """``rows`` with bpp, frames and each metric replaced by their ``frame_type`` aggregates
    (``i_frame_bpp``, ``i_frames``, ``i_frame_<metric>``; ``p_...``), as DCVC compares I and P
    frames apart. Rows without them (no frame types known, or no frame of that type) go."""
    if frame_type == "all":
        return rows
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"unknown frame type {frame_type!r}; choose from {', '.join(FRAME_TYPES)}")
    names = {f"{frame_type}_frame_bpp": "bpp", f"{frame_type}_frames": "frames", **{f"{frame_type}_frame_{m}": m for m in metrics}}
    if f"{frame_type}_frame_bpp" not in rows:
        return rows.iloc[0:0]
    out = rows.drop(columns=[c for c in names.values() if c in rows]).rename(columns={k: v for k, v in names.items() if k in rows})
    return out[out["bpp"].notna() & (out["bpp"] > 0)]


def _check_labels(summary: pd.DataFrame) -> None:
    clash = sorted(set(summary["sequence"].astype(str)) & set(AGGREGATES))
    if clash:
        raise ValueError(f"a sequence is called {clash[0]!r}, the label of a class-level BD row; rename that sequence in its summary.csv to tell them apart")


def bd_table(summary: pd.DataFrame, anchor: str, metrics: list[str] | None = None, opt: BDOptions = BDOptions()) -> pd.DataFrame:
    """BD-rate and BD-metric of every codec against ``anchor``, per dataset, frame type and sequence.

    Per dataset, beside one row per sequence: ``Overall`` is the BD-rate of the class curves
    weighted by frame count (DCVC's 'Overall'), ``Average`` the mean of the per-sequence
    BD-rates with its bootstrap interval (DCVC's 'Average'), ``all (unweighted)`` the BD-rate
    of class curves that weigh every sequence once. The curves are over the sequences both
    codecs have complete. Options: :class:`BDOptions` (more may come; the signature stays).
    """
    if anchor not in set(summary["codec"]):
        raise ValueError(f"anchor {anchor!r} is not in the results; codecs there: {', '.join(sorted(set(summary['codec'])))}")
    bad = [t for t in opt.frame_types if t not in FRAME_TYPES]
    if bad:
        raise ValueError(f"unknown frame type {bad[0]!r}; choose from {', '.join(FRAME_TYPES)}")
    _check_labels(summary)
    summary = exclude_rates(summary, opt.rate_exclude)
    metrics = metrics or present_metrics(summary)
    rows, without_anchor = [], []
    for dataset, ds_rows in summary.groupby("dataset", sort=True):
        if not (ds_rows["codec"] == anchor).any():
            # e.g. the published curves of datasets a user has not run: nothing to compare
            without_anchor.append(dataset)
            continue
        for frame_type in opt.frame_types:
            view = frame_type_view(ds_rows, frame_type, metrics)
            for codec in sorted(set(ds_rows["codec"]) - {anchor}):
                base = {"dataset": dataset, "codec": codec, "anchor": anchor, "frame_type": frame_type, "method": opt.method}
                rows += _pair_rows(view, ds_rows, base, metrics, opt)
    return _table(rows, without_anchor, opt)


def _note_row(base: dict, metric: str, note: str) -> dict:
    return {**base, "sequence": OVERALL, "metric": metric, "bd_rate": np.nan, "bd_metric": np.nan, "note": note}


def _pair_rows(view: pd.DataFrame, ds_rows: pd.DataFrame, base: dict, metrics: list[str], opt: BDOptions) -> list[dict]:
    """Every row of one codec against the anchor on one dataset, for one frame type."""
    anchor, codec, frame_type = base["anchor"], base["codec"], base["frame_type"]
    a_rows, t_rows = view[view["codec"] == anchor], view[view["codec"] == codec]
    if a_rows.empty or t_rows.empty:
        who = anchor if a_rows.empty else codec
        why = _no_frame_type_reason(ds_rows[ds_rows["codec"] == who], frame_type)
        return [_note_row(base, m, f"{who}: {why}") for m in metrics]
    a_seqs, t_seqs = complete_sequences(a_rows), complete_sequences(t_rows)
    if DATASET_LEVEL in a_seqs | t_seqs:
        # imported dataset-level results (a paper's curve): only the dataset-level curves can
        # be compared, each over the sequences its side has
        return [row for m in metrics for row in _level_rows(view, base, a_seqs, t_seqs, m, opt)]
    common = a_seqs & t_seqs
    missing = sorted((set(a_rows["sequence"]) | set(t_rows["sequence"])) - common)
    rows = []
    for metric in metrics:
        if metric not in view or a_rows[metric].isna().all() or t_rows[metric].isna().all():
            what = metric if frame_type == "all" else f"{metric} of {frame_type.upper()} frames"
            rows.append(_note_row(base, metric, f"{what} is not measured for both codecs"))
        elif not common:
            rows.append(_note_row(base, metric, "no sequence has every rate point of both codecs"))
        else:
            rows += _sequence_rows(view, base, common, missing, metric, opt)
    return rows


def _no_frame_type_reason(rows: pd.DataFrame, frame_type: str) -> str:
    count = f"{frame_type}_frames"
    if count in rows and (pd.to_numeric(rows[count], errors="coerce") == 0).all():
        return f"no {frame_type.upper()} frames ({count} is 0)"
    return f"no {frame_type.upper()}-frame values: neither a frame_type per frame (frames.csv) nor {frame_type}_frame_* columns"


def _sequence_rows(view, base, common: set[str], missing: list[str], metric: str, opt: BDOptions) -> list[dict]:
    """Per-sequence cells, then Overall, Average and all (unweighted)."""
    anchor, codec, dataset = base["anchor"], base["codec"], base["dataset"]
    a_rows, t_rows = view[view["codec"] == anchor], view[view["codec"] == codec]
    rows, per_seq = [], []
    for seq in sorted(common):
        cell = _bd_cell(_points(a_rows[a_rows.sequence == seq], metric), _points(t_rows[t_rows.sequence == seq], metric), metric, opt)
        rows.append({**base, "sequence": seq, "metric": metric, **cell})
        per_seq.append(cell)
    pair = view[view["codec"].isin([anchor, codec])]
    keep = {(dataset, anchor): common, (dataset, codec): common}
    left_out = f"over the {len(common)} sequence(s) both have complete; left out: {', '.join(missing)}" if missing else ""
    for label, weighted in ((OVERALL, True), (UNWEIGHTED, False)):
        try:
            curves = dataset_curves(pair, [metric], keep, frame_weighted=weighted)
        except UnknownFrames as e:
            rows.append(_no_curve_row(base, label, metric, e))
            continue
        cell = _bd_cell(_points(curves[curves.codec == anchor], metric), _points(curves[curves.codec == codec], metric), metric, opt)
        cell["note"] = " | ".join(filter(None, [cell["note"], left_out]))
        rows.append({**base, "sequence": label, "metric": metric, **cell, "sequences": len(common)})
    rows.append({**base, "sequence": AVERAGE, "metric": metric, **_average(per_seq, opt)})
    return rows


def _average(per_seq: list[dict], opt: BDOptions) -> dict:
    """DCVC's 'Average': the mean of the per-sequence BD-rates, with its bootstrap interval
    and a mark where some of them rest on little overlap."""
    values = [c["bd_rate"] for c in per_seq]
    out = {"points_anchor": np.nan, "points_test": np.nan, "bd_metric": np.nan, "sequences": len(values)}
    if any(math.isnan(v) for v in values):
        return {**out, "bd_rate": np.nan, "note": "mean of per-sequence BD-rates: not every sequence has one"}
    out.update(bd_rate=float(np.mean(values)), **_interval(values, opt))
    low = sum(bool(c.get("low_overlap")) for c in per_seq)
    out["low_overlap"] = low > 0
    if low:
        out["note"] += f" | {LOW_OVERLAP_MARK} {low} of {len(values)} per-sequence BD-rates rest on less than {100 * opt.overlap_mark:.0f}% overlap"
    return out


_COLUMNS = [
    "dataset",
    "sequence",
    "codec",
    "anchor",
    "metric",
    "frame_type",
    "method",
    "bd_rate",
    "ci_low",
    "ci_high",
    "bd_metric",
    "dominance",
    "overlap",
    "overlap_rate",
    "low_overlap",
    "points_anchor",
    "points_test",
    "sequences",
    "note",
    "curves",
]


def _table(rows: list[dict], without_anchor: list[str], opt: BDOptions) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out["low_overlap"] = out["low_overlap"].fillna(False).astype(bool)
    order = {label: i for i, label in enumerate(AGGREGATES)}
    out["_o"] = out["sequence"].map(lambda s: order.get(s, len(order)))
    out["_f"] = out["frame_type"].map(FRAME_TYPES.index)
    out = out.sort_values(["dataset", "codec", "metric", "_f", "_o", "sequence"], kind="stable").drop(columns=["_o", "_f"]).reset_index(drop=True)
    out.attrs["datasets_without_anchor"] = without_anchor
    out.attrs["bootstrap"] = {"resamples": opt.bootstrap, "level": opt.ci_level, "seed": opt.seed}
    out.attrs["overlap"] = {"mark": opt.overlap_mark, "min": opt.min_overlap}
    return out


def _interval(per_seq: list[float], opt: BDOptions) -> dict:
    """The Average row's bootstrap interval across sequences, and the note that says how."""
    note = "mean of per-sequence BD-rates"
    if opt.bootstrap <= 0:
        return {"note": note}
    try:
        lo, hi = bd.bootstrap_ci(per_seq, resamples=opt.bootstrap, level=opt.ci_level, seed=opt.seed)
    except bd.TooFewSequences as e:
        return {"note": f"{note}; no bootstrap interval: {e}"}
    what = f"{100 * opt.ci_level:g}% percentile bootstrap interval over {len(per_seq)} sequences ({opt.bootstrap} resamples, seed {opt.seed})"
    return {"ci_low": lo, "ci_high": hi, "note": f"{note}; {what}"}


def _level_rows(view, base, a_seqs, t_seqs, metric, opt) -> list[dict]:
    """Against a published dataset-level curve: Overall and all (unweighted) differ only in
    how the side that has sequences builds its class curve."""
    anchor, codec, dataset = base["anchor"], base["codec"], base["dataset"]
    a, t = view[view.codec == anchor], view[view.codec == codec]
    if metric not in view or a[metric].isna().all() or t[metric].isna().all():
        return [_note_row(base, metric, f"{metric} is not measured for both codecs")]
    rows = []
    for label, weighted in ((OVERALL, True), (UNWEIGHTED, False)):
        try:
            curves = dataset_curves(
                view[view.codec.isin([anchor, codec])], [metric], {(dataset, anchor): a_seqs, (dataset, codec): t_seqs}, frame_weighted=weighted
            )
        except UnknownFrames as e:
            rows.append(_no_curve_row(base, label, metric, e))
            continue
        cell = _bd_cell(_points(curves[curves.codec == anchor], metric), _points(curves[curves.codec == codec], metric), metric, opt)
        how = "frame-weighted mean" if weighted else "mean"

        def side(name, seqs, how=how):
            return f"{name}: published dataset-level curve" if DATASET_LEVEL in seqs else f"{name}: {how} over {len(seqs)} sequence(s)"

        cell["curves"] = f"dataset level: {side(anchor, a_seqs)}; {side(codec, t_seqs)}"
        rows.append({**base, "sequence": label, "metric": metric, **cell})
    return rows


def dominating_side(bound: float, metric: str) -> str:
    """Which ladder a ``dominance`` bound (signed as BD-metric) says is the better one."""
    return "test" if (bound < 0) == lower_is_better(metric) else "anchor"


def _flag(v) -> bool:
    return isinstance(v, (bool, np.bool_)) and bool(v)


def _mark(row, overlap_col: str) -> str:
    v = row.get(overlap_col, np.nan)
    return f"{LOW_OVERLAP_MARK} ({100 * v:.0f}% overlap)" if not pd.isna(v) else LOW_OVERLAP_MARK


def _cell_text(row) -> str:
    if pd.isna(row["bd_rate"]):
        # a BD-metric at equal rate can exist where BD-rate cannot (e.g. quality ranges that
        # do not overlap while the rate ranges do): show it rather than a bare n/a
        has_metric = not pd.isna(row.get("bd_metric", np.nan))
        bound = row.get("dominance", np.nan)
        has_bound = not pd.isna(bound)
        notes = [
            n
            for n in str(row["note"] or "").split(" | ")
            if n and not (has_metric and n.startswith("BD-metric:")) and not (has_bound and n.startswith(("test dominates", "anchor dominates")))
        ]
        text = f"n/a ({'; '.join(notes)})" if notes else "n/a"
        if has_metric:
            text += f"; BD-{row['metric']} {row['bd_metric']:+.4g}" + (_mark(row, "overlap_rate") if _flag(row.get("low_overlap")) else "")
        if has_bound:
            # the ladders do not meet: what is certain is a bound, and which side holds it
            text += f"; {dominating_side(bound, row['metric'])} dominates: BD-{row['metric']} {'≥' if bound > 0 else '≤'} {bound:+.4g}"
        return text
    text = f"{row['bd_rate']:+.2f}%"
    if not pd.isna(row.get("ci_low", np.nan)):
        text += f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    if _flag(row.get("low_overlap")):
        text += _mark(row, "overlap")
    return text


def bd_caption(table: pd.DataFrame) -> str:
    """What every number in a BD table is: the one explanation the text, LaTeX and HTML
    tables share, so their labels cannot drift apart."""
    anchor, method = table["anchor"].iloc[0], table["method"].iloc[0]
    caption = (
        f"BD-rate against {anchor} ({method} interpolation; negative = fewer bits for the same quality). "
        f"{OVERALL} = BD-rate of the class curves with every sequence weighted by its frame count (DCVC's Overall); "
        f"{AVERAGE} = mean of the per-sequence BD-rates (DCVC's Average); "
        f"{UNWEIGHTED} = BD-rate of the class curves with every sequence weighted equally"
    )
    boot = table.attrs.get("bootstrap")
    if boot and boot["resamples"] > 0 and table["ci_low"].notna().any():
        caption += f"; [low, high] = {100 * boot['level']:g}% percentile bootstrap interval of the {AVERAGE} over sequences, {boot['resamples']} resamples, seed {boot['seed']}"
    ov = table.attrs.get("overlap", {"mark": bd.OVERLAP_MARK, "min": bd.DEFAULT_MIN_OVERLAP})
    if table["low_overlap"].any() or ov["min"] > 0:
        caption += f"; {LOW_OVERLAP_MARK} = the curves' quality ranges overlap by less than {100 * ov['mark']:.0f}% of their union, so the number covers only that part"
        caption += f" (refused below {100 * ov['min']:.0f}%)" if ov["min"] > 0 else " (no overlap at all is refused)"
    return caption


def format_bd(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6f")
    if table.empty:
        return "(no codec to compare with the anchor)\n"
    index = ["dataset", "sequence", "codec"] + (["frame_type"] if set(table["frame_type"]) != {"all"} else [])
    wide = table.assign(cell=table.apply(_cell_text, axis=1)).pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)
    wide = wide.reset_index()
    caption = bd_caption(table)
    if fmt == "md":
        head = list(wide.columns)
        lines = [f"**{caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in wide.itertuples(index=False)]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%")
        head = list(wide.columns)
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{esc(caption)}}}",
            r"\begin{tabular}{" + "l" * len(index) + "r" * (len(head) - len(index)) + "}",
            r"\toprule",
            " & ".join(esc(h) for h in head) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(esc(v) for v in r) + r" \\" for r in wide.itertuples(index=False)]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose md, csv or latex")


# --- plots ---------------------------------------------------------------------------------------


def _plot_curves(ax, curves: pd.DataFrame, metric: str, ms_ssim_db: bool) -> None:
    for codec, rows in curves.groupby("codec", sort=True):
        rows = rows.sort_values("bpp")
        y = rows[metric].to_numpy(dtype=float)
        if metric in MS_SSIM_COLUMNS and ms_ssim_db:
            y = ms_ssim_to_db(y)
        color, marker = codec_style(codec)
        # imported (published) curves are dashed, so a user's own runs stand out
        published = "imported" in rows and bool(rows["imported"].any())
        ax.plot(
            rows["bpp"].to_numpy(dtype=float),
            y,
            marker=marker,
            color=color,
            label=f"{codec} (published)" if published else codec,
            linewidth=1.8,
            markersize=5,
            linestyle="--" if published else "-",
        )
    ax.set_xlabel("bpp")
    ax.set_ylabel(metric_label(metric, ms_ssim_db))
    ax.grid(True, alpha=0.3)


def plot_metric(curves: pd.DataFrame, metric: str, title: str, ms_ssim_db: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.0), layout="constrained")
    _plot_curves(ax, curves, metric, ms_ssim_db)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_grid(curves: pd.DataFrame, datasets: list[str], metrics: list[str], ms_ssim_db: bool = False):
    """Rows are datasets, columns are metrics, like the Diff-SIT paper's Figure 5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(3.6 * len(metrics), 3.0 * len(datasets)), squeeze=False, layout="constrained")
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            sel = curves[(curves.dataset == dataset) & curves[metric].notna()]
            _plot_curves(ax, sel, metric, ms_ssim_db)
            ax.set_title(f"{dataset}: {metric_label(metric, ms_ssim_db)}", fontsize=9)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=min(len(handles), 7), fontsize=8)
    return fig


def write_plots(
    summary: pd.DataFrame, out: Path, *, metrics: list[str] | None = None, per_sequence: bool = False, ms_ssim_db: bool = False, formats=("png", "pdf")
) -> list[Path]:
    """Every figure, plus curves.csv with exactly the points drawn. Returns the files written."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    metrics = present_metrics(summary, metrics or None)
    if not metrics:
        raise ValueError("no plottable metric column in the results")
    curves = dataset_curves(summary, metrics)
    written = []

    def save(fig, stem: Path):
        stem.parent.mkdir(parents=True, exist_ok=True)
        for ext in formats:
            path = stem.with_suffix(f".{ext}")
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)

    datasets = sorted(curves["dataset"].unique())
    for dataset in datasets:
        for metric in metrics:
            sel = curves[(curves.dataset == dataset) & curves[metric].notna()]
            if not sel.empty:
                save(plot_metric(sel, metric, dataset, ms_ssim_db), out / dataset / metric)
        if per_sequence:
            ds_rows = summary[summary.dataset == dataset]
            for seq, rows in ds_rows.groupby("sequence", sort=True):
                seq_curves = rows.groupby(["codec", "rate"], as_index=False)[["bpp", *metrics]].mean()
                seq_curves.insert(0, "dataset", dataset)
                for metric in metrics:
                    if seq_curves[metric].notna().any():
                        save(plot_metric(seq_curves, metric, f"{dataset} / {seq}", ms_ssim_db), out / dataset / str(seq) / metric)
    grid_metrics = [m for m in perceptual_columns() if m in metrics] or metrics
    save(plot_grid(curves, datasets, grid_metrics, ms_ssim_db), out / "grid")
    path = out / "curves.csv"
    curves.to_csv(path, index=False, float_format="%.10g")
    written.append(path)
    return written
