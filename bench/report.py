"""Reports from summary.csv: RD curves, BD-rate tables.

Reads only the results contract (summary.csv rows), so results made by other tools can be
dropped in. The dataset-level curve of a codec is, per rate point, the mean bpp and the mean
metric over the sequences (DCVC's convention); only sequences that a codec has at *every*
rate point take part, so a failed job never biases a curve silently.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import bdrate as bd
from .metrics import column, lower_is_better, perceptual_columns, plot_columns

DATASET_LEVEL = "*"  # the sequence of imported dataset-level rows (bench.importer)

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
    from .codec import UnknownCodec, codec_class

    try:
        style = getattr(codec_class(codec), "plot_style", None)
    except (UnknownCodec, ImportError, AttributeError):
        return None
    return tuple(style) if style else None


def metric_label(metric: str, ms_ssim_db: bool = False) -> str:
    if metric == "ms_ssim_rgb" and ms_ssim_db:
        return "MS-SSIM (dB) ↑"
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


def dataset_curves(summary: pd.DataFrame, metrics: list[str], sequences: dict[tuple[str, str], set[str]] | None = None) -> pd.DataFrame:
    """Mean bpp and metrics per (dataset, codec, rate) over each codec's complete sequences."""
    parts = []
    for (dataset, codec), rows in summary.groupby(["dataset", "codec"], sort=True):
        keep = sequences.get((dataset, codec)) if sequences else None
        keep = complete_sequences(rows) if keep is None else keep
        sel = rows[rows["sequence"].isin(keep)]
        if sel.empty:
            continue
        g = sel.groupby("rate", sort=False)
        curve = g[["bpp", *metrics]].mean()
        curve["sequences"] = g["sequence"].nunique()
        curve["imported"] = bool(sel["imported"].fillna(False).astype(bool).any()) if "imported" in sel else False
        curve = curve.reset_index()
        curve.insert(0, "codec", codec)
        curve.insert(0, "dataset", dataset)
        parts.append(curve.sort_values("bpp"))
    cols = ["dataset", "codec", "rate", "bpp", *metrics, "sequences", "imported"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def ms_ssim_to_db(x):
    return -10 * np.log10(1 - np.asarray(x, dtype=np.float64))


# --- BD tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BDOptions:
    method: str = "pchip"
    convex_hull: bool = False
    min_overlap: float = bd.DEFAULT_MIN_OVERLAP
    #: bootstrap resamples of the mean of per-sequence BD-rates (0: no interval), its
    #: confidence level and seed
    bootstrap: int = 1000
    ci_level: float = 0.95
    seed: int = 0


def _points(rows: pd.DataFrame, metric: str) -> list[tuple[float, float]]:
    return [(float(r), float(q)) for r, q in zip(rows["bpp"], rows[metric]) if not (math.isnan(r) or math.isnan(q))]


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
    cell["note"] = " | ".join(notes)
    return cell


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


def bd_table(summary: pd.DataFrame, anchor: str, metrics: list[str] | None = None, opt: BDOptions = BDOptions()) -> pd.DataFrame:
    """BD-rate and BD-metric of every codec against ``anchor``, per dataset and sequence.

    ``sequence`` is ``all`` for the dataset-level curve (mean bpp and metric per rate point
    over the sequences both codecs have complete, as DCVC computes it) and ``mean`` for the
    average of the per-sequence BD-rates (a different number; both are labelled).
    """
    if anchor not in set(summary["codec"]):
        raise ValueError(f"anchor {anchor!r} is not in the results; codecs there: {', '.join(sorted(set(summary['codec'])))}")
    metrics = metrics or present_metrics(summary)
    rows, without_anchor = [], []
    for dataset, ds_rows in summary.groupby("dataset", sort=True):
        a_rows = ds_rows[ds_rows["codec"] == anchor]
        if a_rows.empty:
            # e.g. the published curves of datasets a user has not run: nothing to compare
            without_anchor.append(dataset)
            continue
        for codec in sorted(set(ds_rows["codec"]) - {anchor}):
            t_rows = ds_rows[ds_rows["codec"] == codec]
            base = {"dataset": dataset, "codec": codec, "anchor": anchor, "method": opt.method}
            a_seqs, t_seqs = complete_sequences(a_rows), complete_sequences(t_rows)
            if DATASET_LEVEL in a_seqs | t_seqs:
                # imported dataset-level results (a paper's curve): only the dataset-level
                # curves can be compared, each over the sequences its side has
                for metric in metrics:
                    rows.append({**base, "sequence": "all", "metric": metric, **_level_cell(ds_rows, dataset, anchor, codec, a_seqs, t_seqs, metric, opt)})
                continue
            common = a_seqs & t_seqs
            missing = sorted((set(a_rows["sequence"]) | set(t_rows["sequence"])) - common)
            for metric in metrics:
                if metric not in ds_rows or a_rows[metric].isna().all() or t_rows[metric].isna().all():
                    rows.append(
                        {
                            **base,
                            "sequence": "all",
                            "metric": metric,
                            "bd_rate": np.nan,
                            "bd_metric": np.nan,
                            "note": f"{metric} is not measured for both codecs",
                        }
                    )
                    continue
                per_seq = []
                for seq in sorted(common):
                    cell = _bd_cell(_points(a_rows[a_rows.sequence == seq], metric), _points(t_rows[t_rows.sequence == seq], metric), metric, opt)
                    rows.append({**base, "sequence": seq, "metric": metric, **cell})
                    per_seq.append(cell["bd_rate"])
                if not common:
                    rows.append(
                        {
                            **base,
                            "sequence": "all",
                            "metric": metric,
                            "bd_rate": np.nan,
                            "bd_metric": np.nan,
                            "note": "no sequence has every rate point of both codecs",
                        }
                    )
                    continue
                curves = dataset_curves(ds_rows[ds_rows.codec.isin([anchor, codec])], [metric], {(dataset, anchor): common, (dataset, codec): common})
                cell = _bd_cell(_points(curves[curves.codec == anchor], metric), _points(curves[curves.codec == codec], metric), metric, opt)
                if missing:
                    cell["note"] = " | ".join(
                        filter(None, [cell["note"], f"over the {len(common)} sequence(s) both have complete; left out: {', '.join(missing)}"])
                    )
                rows.append({**base, "sequence": "all", "metric": metric, **cell})
                mean = {"points_anchor": np.nan, "points_test": np.nan, "bd_metric": np.nan, "sequences": len(per_seq)}
                if per_seq and not any(math.isnan(v) for v in per_seq):
                    rows.append({**base, "sequence": "mean", "metric": metric, **mean, "bd_rate": float(np.mean(per_seq)), **_interval(per_seq, opt)})
                else:
                    rows.append(
                        {
                            **base,
                            "sequence": "mean",
                            "metric": metric,
                            **mean,
                            "bd_rate": np.nan,
                            "note": "mean of per-sequence BD-rates: not every sequence has one",
                        }
                    )
    cols = [
        "dataset",
        "sequence",
        "codec",
        "anchor",
        "metric",
        "method",
        "bd_rate",
        "ci_low",
        "ci_high",
        "bd_metric",
        "dominance",
        "points_anchor",
        "points_test",
        "sequences",
        "note",
        "curves",
    ]
    out = pd.DataFrame(rows, columns=cols)
    order = {"all": 0, "mean": 1}
    out["_o"] = out["sequence"].map(lambda s: order.get(s, 2))
    out = out.sort_values(["dataset", "codec", "metric", "_o", "sequence"], kind="stable").drop(columns="_o").reset_index(drop=True)
    out.attrs["datasets_without_anchor"] = without_anchor
    out.attrs["bootstrap"] = {"resamples": opt.bootstrap, "level": opt.ci_level, "seed": opt.seed}
    return out


def _interval(per_seq: list[float], opt: BDOptions) -> dict:
    """The mean row's bootstrap interval across sequences, and the note that says how."""
    note = "mean of per-sequence BD-rates"
    if opt.bootstrap <= 0:
        return {"note": note}
    try:
        lo, hi = bd.bootstrap_ci(per_seq, resamples=opt.bootstrap, level=opt.ci_level, seed=opt.seed)
    except bd.TooFewSequences as e:
        return {"note": f"{note}; no bootstrap interval: {e}"}
    what = f"{100 * opt.ci_level:g}% percentile bootstrap interval over {len(per_seq)} sequences ({opt.bootstrap} resamples, seed {opt.seed})"
    return {"ci_low": lo, "ci_high": hi, "note": f"{note}; {what}"}


def _level_cell(ds_rows, dataset, anchor, codec, a_seqs, t_seqs, metric, opt) -> dict:
    a = ds_rows[ds_rows.codec == anchor]
    t = ds_rows[ds_rows.codec == codec]
    if metric not in ds_rows or a[metric].isna().all() or t[metric].isna().all():
        return {"bd_rate": np.nan, "bd_metric": np.nan, "note": f"{metric} is not measured for both codecs"}
    curves = dataset_curves(ds_rows[ds_rows.codec.isin([anchor, codec])], [metric], {(dataset, anchor): a_seqs, (dataset, codec): t_seqs})
    cell = _bd_cell(_points(curves[curves.codec == anchor], metric), _points(curves[curves.codec == codec], metric), metric, opt)

    def side(name, seqs):
        return f"{name}: published dataset-level curve" if DATASET_LEVEL in seqs else f"{name}: mean over {len(seqs)} sequence(s)"

    cell["curves"] = f"dataset level: {side(anchor, a_seqs)}; {side(codec, t_seqs)}"
    return cell


def dominating_side(bound: float, metric: str) -> str:
    """Which ladder a ``dominance`` bound (signed as BD-metric) says is the better one."""
    return "test" if (bound < 0) == lower_is_better(metric) else "anchor"


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
            text += f"; BD-{row['metric']} {row['bd_metric']:+.4g}"
        if has_bound:
            # the ladders do not meet: what is certain is a bound, and which side holds it
            text += f"; {dominating_side(bound, row['metric'])} dominates: BD-{row['metric']} {'≥' if bound > 0 else '≤'} {bound:+.4g}"
        return text
    if not pd.isna(row.get("ci_low", np.nan)):
        return f"{row['bd_rate']:+.2f}% [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return f"{row['bd_rate']:+.2f}%"


def format_bd(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6f")
    if table.empty:
        return "(no codec to compare with the anchor)\n"
    anchor, method = table["anchor"].iloc[0], table["method"].iloc[0]
    wide = table.assign(cell=table.apply(_cell_text, axis=1)).pivot_table(
        index=["dataset", "sequence", "codec"], columns="metric", values="cell", aggfunc="first", sort=False
    )
    wide = wide.reset_index()
    caption = f"BD-rate against {anchor} ({method} interpolation; negative = fewer bits for the same quality; sequence 'all' = dataset-level curve, 'mean' = mean of per-sequence BD-rates)"
    boot = table.attrs.get("bootstrap")
    if boot and boot["resamples"] > 0 and table["ci_low"].notna().any():
        caption += f"; [low, high] = {100 * boot['level']:g}% percentile bootstrap interval of the mean over sequences, {boot['resamples']} resamples, seed {boot['seed']}"
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
            r"\begin{tabular}{" + "l" * 3 + "r" * (len(head) - 3) + "}",
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
        if metric == "ms_ssim_rgb" and ms_ssim_db:
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
