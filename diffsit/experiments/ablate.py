"""``python -m diffsit ablate``: the paper's ablations, measured through the harness.

At each lambda, on every sequence of a ``bench`` dataset (the first ``--frames`` frames):

==================  =====================================================================
variant             what it is
==================  =====================================================================
``x_tilde``         STEM's intermediate video x~ (before ODFTE): the stream without its
                    strength map
``x_hat``           Diff-SIT's output: ODFTE over whole windows with the frame-type
                    embedder, kept per block as the stream's strength map says; the
                    stream's bits, map included
``x_hat_full``      ODFTE's output as is (strength 1 everywhere, no map: the paper's
                    decoder-only form), at x~'s bits
``x_hat_no_fte``    ``x_hat_full`` with the FTE switched off (same weights, c = 0)
``x_hat_per_frame`` ``x_hat_full`` on each frame alone (windows of one frame): temporal
                    consistency
``all_p``           x~ when every frame after the first is a P frame (no MV frames): bits
``x_tilde_no_skip`` x~ when every P frame codes its residual (``p_skip`` off, bitstream
                    version 5's P frames): what the encoder's skip decision is worth.
                    Only for a model that knows its lambda (otherwise it never skips)
==================  =====================================================================

All but ``all_p`` and ``x_tilde_no_skip`` come from one bitstream; ``x_hat`` alone also spends the strength map's
bytes (a fraction of a percent; its bpp column shows them). The FTE and per-frame rows are
compared with ``x_hat_full``, so they measure ODFTE itself, not the encoder's choice. Metrics are the
harness's (``bench.metrics``): every one that can run here unless ``--metrics`` says which.
Output: ``ablation.csv`` (per sequence) and ``ablation.md`` (dataset means per lambda, the
differences that matter, and the model and metric provenance).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bdrate import BDError, bd_metric, bd_rate
from bench.datasets import get_dataset
from bench.metrics import MetricUnavailable, create_metric, default_metrics, measure, resolve_metrics

from ..pipeline import encode_all_p, encode_video, refine, to_video
from ..zoo import LADDER, load_model, rate_point

VARIANTS = ("x_tilde", "x_hat", "x_hat_full", "x_hat_no_fte", "x_hat_per_frame", "all_p", "x_tilde_no_skip")
HIGHER_IS_BETTER = {
    "psnr_y": True,
    "psnr_yuv": True,
    "psnr_rgb": True,
    "ms_ssim_rgb": True,
    "vmaf": True,
    "clipiqa": True,
    "lpips": False,
    "dists": False,
    "ewarp": False,
}
SUMMARY_COLUMNS = ("psnr_yuv", "psnr_rgb", "ms_ssim_rgb", "vmaf", "lpips", "dists", "clipiqa", "ewarp")


def _metrics(specs: list[str] | None, width: int, height: int):
    chosen, skipped = [], {}
    for spec in resolve_metrics(specs) if specs else default_metrics():
        m = create_metric(spec)
        try:
            m.check()
            why = m.unsupported(width, height)
        except MetricUnavailable as e:
            why = str(e).splitlines()[0]
        if why and specs:
            raise MetricUnavailable(f"{spec}: {why}")
        if why:
            skipped[spec] = why
        else:
            chosen.append(m)
    return chosen, skipped


def _summarise(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {c: float(np.nanmean(v)) for c, v in values.items()}


def ablate(
    dataset: str = "sample",
    *,
    frames: int = 9,
    lambdas=LADDER,
    model: str = "tiny",
    sequences: list[str] | None = None,
    metrics: list[str] | None = None,
    data_root: str | None = None,
    device: str = "cpu",
    allow_untrained: bool = False,
    out: str | Path = "results/ablation",
    log=print,
) -> pd.DataFrame:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped_all, models = [], {}, {}
    for seq in get_dataset(dataset).resolve(data_root, sequences):
        video = seq.open(frames=min(frames, seq.available_frames()))
        pixels = video.frames * video.width * video.height
        chosen, skipped = _metrics(metrics, video.width, video.height)
        skipped_all.update(skipped)
        for lam in lambdas:
            point = rate_point(model, lam)  # a λ off the trained ladder: a model at a step level
            m = load_model(point.spec, allow_untrained=allow_untrained)
            models[f"{lam:g}"] = {"model_id": m.model_id, "weights_sha256": m.weights_sha256().hex(), "trained": m.config.trained, "step_level": point.level}
            t0 = time.perf_counter()
            decoded, enc, p_data = _variants(m, video, device, point.level)
            for variant, (rgb, nbytes) in decoded.items():
                dist = to_video(rgb.cpu(), video.width, video.height, video.fps)
                here = {"dataset": dataset, "sequence": seq.name, "lambda": lam, "variant": variant, "frames": video.frames}
                rows.append({**here, "bytes": nbytes, "bpp": 8 * nbytes / pixels, **_summarise(measure(video, dist, chosen))})
            log(
                f"{seq.name} lambda={lam:g}: {8 * len(enc.data) / pixels:.4f} bpp (strength map {len(enc.data) - enc.stem_bytes} bytes; all-P"
                f" {8 * len(p_data) / pixels:.4f}), {time.perf_counter() - t0:.0f} s"
            )
    df = pd.DataFrame(rows)
    df.to_csv(out / "ablation.csv", index=False)
    (out / "ablation.md").write_text(report(df, models=models, skipped=skipped_all, frames=frames))
    return df


def _variants(m, video, device: str, level: int):
    """Every variant's (RGB video, bytes) at one rate point, the stream's encoding and the
    all-P stream's bytes."""
    enc = encode_video(m, video, device=device, step_level=level)
    with m.at_step_level(level):
        p_data, p_tilde = encode_all_p(m, video, device=device)
    ip, x_tilde, stem = m.config.intra_period, enc.x_tilde, enc.stem_bytes
    decoded = {
        "x_tilde": (x_tilde, stem),
        "x_hat": (enc.x_hat, len(enc.data)),
        "x_hat_full": (enc.x_refined, stem),
        "x_hat_no_fte": (refine(m, x_tilde, ip, use_fte=False), stem),
        "x_hat_per_frame": (refine(m, x_tilde, ip, per_frame=True), stem),
        "all_p": (p_tilde, len(p_data)),
    }
    if m.rd_tradeoff() is not None:
        no_skip = encode_video(m, video, device=device, output=False, step_level=level, p_skip=False)
        decoded["x_tilde_no_skip"] = (no_skip.x_tilde, no_skip.stem_bytes)
    return decoded, enc, p_data


def dataset_means(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over sequences of bpp and each metric, per (lambda, variant)."""
    cols = [c for c in df.columns if c in HIGHER_IS_BETTER or c == "bpp"] + [c for c in df.columns if c.startswith("psnr_") and c not in HIGHER_IS_BETTER]
    return df.groupby(["lambda", "variant"], sort=False)[list(dict.fromkeys(cols))].mean().reset_index()


def report(df: pd.DataFrame, *, models: dict | None = None, skipped: dict | None = None, frames: int | None = None) -> str:
    means = dataset_means(df)
    metric_cols = [c for c in SUMMARY_COLUMNS if c in means.columns]
    lines = [
        "# Diff-SIT ablation",
        "",
        f"Dataset {', '.join(sorted(df['dataset'].unique()))}: {', '.join(df['sequence'].unique())}"
        + (f", first {frames} frames" if frames else "")
        + ". Values are means over sequences.",
        "",
    ]
    lines.append("| λ | variant | bpp | " + " | ".join(f"{c} {'↑' if HIGHER_IS_BETTER[c] else '↓'}" for c in metric_cols) + " |")
    lines.append("|---" * (3 + len(metric_cols)) + "|")
    for _, r in means.iterrows():
        lines.append(f"| {r['lambda']:g} | {r['variant']} | {r['bpp']:.4f} | " + " | ".join(_fmt(c, r[c]) for c in metric_cols) + " |")
    lines += [
        "",
        "## Differences (dataset means)",
        "",
        "| λ | bits saved by MV frames vs all-P | P skip: bits saved, x̃ Δ | strength map's bits | x̂ − x̃ | ODFTE as is: x̂_full − x̃ "
        "| FTE: on − off | Ewarp whole clip / per frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lam, g in means.groupby("lambda", sort=False):
        v = g.set_index("variant")
        saved = 1 - v.loc["x_tilde", "bpp"] / v.loc["all_p", "bpp"]
        overhead = v.loc["x_hat", "bpp"] / v.loc["x_tilde", "bpp"] - 1
        key = next((c for c in ("lpips", "dists", "psnr_rgb", "psnr_yuv") if c in v.columns), None)
        odfte = f"{key} {v.loc['x_hat', key] - v.loc['x_tilde', key]:+.4g}" if key else "–"
        full = f"{key} {v.loc['x_hat_full', key] - v.loc['x_tilde', key]:+.4g}" if key else "–"
        fte = f"{key} {v.loc['x_hat_full', key] - v.loc['x_hat_no_fte', key]:+.4g}" if key else "–"
        ew = f"{v.loc['x_hat_full', 'ewarp']:.3f} / {v.loc['x_hat_per_frame', 'ewarp']:.3f}" if "ewarp" in v.columns else "–"
        skip = "–"
        if "x_tilde_no_skip" in v.index:
            skip = f"{100 * (1 - v.loc['x_tilde', 'bpp'] / v.loc['x_tilde_no_skip', 'bpp']):.1f} %"
            if key:
                skip += f", {key} {v.loc['x_tilde', key] - v.loc['x_tilde_no_skip', key]:+.3g}"
        lines.append(f"| {lam:g} | {100 * saved:.1f} % | {skip} | +{100 * overhead:.2f} % | {odfte} | {full} | {fte} | {ew} |")
    lines += equal_bits(means, metric_cols)
    if models:
        lines += ["", "## Models", "", "```json", json.dumps(models, indent=2), "```"]
    if skipped:
        lines += ["", "## Metrics not measured", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    lines += [
        "",
        "ewarp is ×1e-3 (the harness's unit). x̃, x̂_full, x̂ without FTE and x̂ per frame are decoded from one bitstream's"
        " STEM records; x̂ also uses its strength map, whose bytes its bpp includes.",
    ]
    return "\n".join(lines) + "\n"


def equal_bits(means: pd.DataFrame, metric_cols: list[str]) -> list[str]:
    """x^ (and ODFTE as is) against x~ at equal bits: BD-rate and BD-metric over the λ ladder,
    each with the reason when it has no number (x^ spends the strength map's bytes on top)."""
    lambdas = means["lambda"].unique()
    if len(lambdas) < 3:
        return ["", f"(BD over the λ ladder needs at least 3 λ; this run has {len(lambdas)}.)"]
    curve = {v: g.sort_values("bpp") for v, g in means.groupby("variant")}
    lines = [
        "",
        "## Against x̃ at equal bits (BD over the λ ladder, PCHIP; anchor x̃)",
        "",
        "| metric | x̂: BD-rate | x̂: BD-metric | x̂_full: BD-rate | x̂_full: BD-metric |",
        "|---|---|---|---|---|",
    ]
    for col in metric_cols:
        if means[col].isna().any():
            continue
        lower = not HIGHER_IS_BETTER[col]
        cells = []
        anchor = list(zip(curve["x_tilde"]["bpp"], curve["x_tilde"][col], strict=True))
        for variant in ("x_hat", "x_hat_full"):
            test = list(zip(curve[variant]["bpp"], curve[variant][col], strict=True))
            for fn, unit in ((bd_rate, " %"), (bd_metric, "")):
                try:
                    cells.append(f"{fn(anchor, test, lower_is_better=lower):+.4g}{unit}")
                except BDError as e:  # the CLI's hint (--convex-hull) is not an option here
                    cells.append(f"n/a: {str(e).splitlines()[0].split('; try --')[0]}")
        lines.append(f"| {col} {'↓' if lower else '↑'} | " + " | ".join(cells) + " |")
    lines += ["", "BD-rate < 0 and BD-metric in the metric's better direction mean the variant beats x̃ at equal bits."]
    return lines


def _fmt(col: str, v: float) -> str:
    if np.isnan(v):
        return "–"
    return f"{v:.4f}" if col in ("ms_ssim_rgb", "lpips", "dists", "clipiqa") else f"{v:.3f}" if col == "ewarp" else f"{v:.2f}"
