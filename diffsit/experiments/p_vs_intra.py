"""``python -m diffsit p-vs-intra``: does a P frame cost less than the same frame coded intra?

For every P frame of each sequence's GOP (the first ``--frames`` frames, at each λ), the
stream's P frame (its motion and its contextual residual, coded from the previous
reconstructed backbone, as the codec codes it) against the same source frame coded by the
intra coder of the same model. Both are measured on STEM's output (x~, the DPB samples, cut
back to the picture), in bytes and PSNR-RGB (RGB in [0, 1], STEM's own domain, the one its
loss weighs). A P coder earns its place when its frame is smaller at equal or better PSNR.

"Equal PSNR" is read off the frame's own intra rate curve: the same frame coded by the intra
coder of every model of the ladder (log bytes interpolated linearly in PSNR between the two
points around the P frame's PSNR). A P frame can fall outside the ladder's intra points: a
skipped one (motion alone, the prediction as the frame) below the lowest, a residual one
coded by a P coder better than the intra coder above the highest. There the curve goes on
with the end model's intra coder at coarser or finer quantization steps (step levels,
``EXTENSION_LEVELS``: what the codec itself does for a λ beyond the ladder), marked as such.
A model trained for such a rate would code the frame intra at least as well as another
model at other steps, so a win against the extension is a weaker claim, and the table says
which is which. Above even the finest step, the comparison is one of dominance: a P frame
with more PSNR than the curve's top for fewer bytes beats the intra coder at any rate it
reaches ("above" in the table).
Output: ``p_vs_intra.csv`` and ``p_vs_intra.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.datasets import get_dataset
from bench.metrics.fidelity import psnr

from ..gop import FrameType, schedule
from ..pipeline import encode_video, frames_rgb
from ..stem.exact import samples_to_float
from ..stem.pframe import MOTION_STRINGS
from ..zoo import LADDER, load_model, rate_point

#: step levels (``diffsit.stem.intra.step_gain``) that extend each frame's intra curve: the
#: lowest-rate model's coarser steps below the ladder, the highest-rate model's finer ones above
EXTENSION_LEVELS = (-3, -6, -9, -12, 3, 6, 9, 12)


def p_vs_intra(
    dataset: str = "sample",
    *,
    sequences: list[str] | None = None,
    frames: int = 9,
    lambdas=LADDER,
    model: str = "tiny",
    data_root: str | None = None,
    allow_untrained: bool = False,
    out: str | Path = "results/p_vs_intra",
) -> pd.DataFrame:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for seq in get_dataset(dataset).resolve(data_root, sequences):
        video = seq.open(frames=min(frames, seq.available_frames()))
        for lam in sorted(lambdas, reverse=True):  # the lowest rate first: it extends the curves
            _rate_point_rows(seq.name, video, lam, lambdas, model, allow_untrained, rows, curves)
    df = pd.DataFrame(rows).sort_values(["sequence", "lambda", "frame"], ignore_index=True)
    curve = pd.DataFrame(curves)
    df["bytes_ratio"] = df["p_bytes"] / df["intra_bytes"]
    df["psnr_gain"] = df["p_psnr_rgb"] - df["intra_psnr_rgb"]
    equal = [equal_psnr_bytes(curve[(curve.sequence == r.sequence) & (curve.frame == r.frame)], r.p_psnr_rgb) for r in df.itertuples()]
    df["intra_bytes_at_p_psnr"] = [b for b, _ in equal]
    df["intra_curve"] = [where for _, where in equal]
    direct = (df["p_bytes"] < df["intra_bytes"]) & (df["psnr_gain"] >= 0)
    df["p_wins"] = direct | (df["p_bytes"] < df["intra_bytes_at_p_psnr"])
    df.to_csv(out / "p_vs_intra.csv", index=False)
    curve.to_csv(out / "intra_curves.csv", index=False)
    (out / "p_vs_intra.md").write_text(report(df, frames=frames))
    return df


def _rate_point_rows(name: str, video, lam: float, lambdas, model: str, allow_untrained: bool, rows: list, curves: list) -> None:
    """Each P frame of one sequence at one λ (into ``rows``), and the intra points of the
    same frames (into ``curves``)."""
    h, w = video.height, video.width
    src = frames_rgb(video, "cpu")
    point = rate_point(model, lam)
    m = load_model(point.spec, allow_untrained=allow_untrained)
    enc = encode_video(m, video, output=False, step_level=point.level, strength_block=0)  # STEM's bytes only: no ODFTE needed
    records = {r.index: r for r in enc.stream.records}
    ends = {max(lambdas): [v for v in EXTENSION_LEVELS if v < 0], min(lambdas): [v for v in EXTENSION_LEVELS if v > 0]}
    for fc in schedule(video.frames, m.config.intra_period):
        if fc.type is not FrameType.PRED:
            continue
        strings = records[fc.index].strings
        frame = src[fc.index : fc.index + 1]
        here = {"sequence": name, "frame": fc.index, "lambda": lam}
        with m.at_step_level(point.level):
            intra = {**here, "level": 0, **_intra_point(m.intra, frame, h, w)}
        curves.append(intra)
        for level in ends.get(lam, []) if len(lambdas) > 1 else EXTENSION_LEVELS:
            with m.at_step_level(point.level + level):
                curves.append({**here, "level": level, **_intra_point(m.intra, frame, h, w)})
        rows.append(
            {
                "sequence": name,
                "lambda": lam,
                "frame": fc.index,
                "reference": fc.reference,
                "p_mode": "skip" if len(strings) == MOTION_STRINGS else "residual",
                "p_bytes": sum(map(len, strings)),
                "p_motion_bytes": sum(map(len, strings[:MOTION_STRINGS])),
                "p_psnr_rgb": psnr(enc.x_tilde[fc.index : fc.index + 1, :, :h, :w], frame[..., :h, :w]),
                "intra_bytes": intra["bytes"],
                "intra_psnr_rgb": intra["psnr_rgb"],
            }
        )


def _intra_point(coder, frame: torch.Tensor, h: int, w: int) -> dict:
    """Bytes and PSNR-RGB of ``frame`` (padded) coded by ``coder``, over the picture (h, w)."""
    strings, rec = coder.compress_image(frame)
    return {"bytes": sum(map(len, strings)), "psnr_rgb": psnr(samples_to_float(rec)[..., :h, :w], frame[..., :h, :w])}


def equal_psnr_bytes(curve: pd.DataFrame, psnr: float) -> tuple[float, str]:
    """Bytes the frame's intra curve (rows of bytes, psnr_rgb, level) spends at ``psnr``, log
    bytes linear in PSNR between the points around it, and where it was read: "ladder" (the
    models' own points), "extension" (at coarser or finer steps), "above" (above the curve's
    top: the top's bytes, a lower bound of what intra would spend) or "outside" (NaN: below
    its bottom, no equal-PSNR intra point to compare with). The curve is made monotone first:
    a point that costs more than a higher-PSNR one is dropped."""
    pts = curve.sort_values("psnr_rgb")
    b = pts["bytes"].to_numpy(float)
    keep = np.array([b[i] <= b[i + 1 :].min() if i + 1 < len(b) else True for i in range(len(b))])
    pts = pts[keep]
    p, b, ext = pts["psnr_rgb"].to_numpy(float), pts["bytes"].to_numpy(float), (pts["level"] != 0).to_numpy()
    if len(p) and psnr > p[-1]:
        return float(b[-1]), "above"
    if len(p) < 2 or not p[0] <= psnr <= p[-1]:
        return math.nan, "outside"
    i = min(int(np.searchsorted(p, psnr, side="right")) - 1, len(p) - 2)
    t = (psnr - p[i]) / (p[i + 1] - p[i]) if p[i + 1] > p[i] else 0.0
    return float(np.exp(np.log(b[i]) + t * (np.log(b[i + 1]) - np.log(b[i])))), "extension" if ext[i] or ext[i + 1] else "ladder"


def report(df: pd.DataFrame, *, frames: int) -> str:
    lines = [
        f"P frames against the same frame coded intra (first {frames} frames; x~, PSNR-RGB)",
        "",
        "| sequence | λ | frame (ref) | P mode | P bytes (motion) | P PSNR | intra bytes | intra PSNR | P / intra bytes | ΔPSNR "
        "| intra bytes at P's PSNR | P wins |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in df.itertuples():
        mark = {"extension": " (ext.)", "above": " (above: > top)"}.get(r.intra_curve, "")
        at = "—" if math.isnan(r.intra_bytes_at_p_psnr) else f"{r.intra_bytes_at_p_psnr:.0f}{mark}"
        lines.append(
            f"| {r.sequence} | {r._2:g} | {r.frame} ({r.reference}) | {r.p_mode} | {r.p_bytes} ({r.p_motion_bytes}) | {r.p_psnr_rgb:.2f} | "
            f"{r.intra_bytes} | {r.intra_psnr_rgb:.2f} | {r.bytes_ratio:.2f} | {r.psnr_gain:+.2f} | {at} | {'yes' if r.p_wins else 'no'} |"
        )
    wins = df["p_wins"]
    direct = (df["p_bytes"] < df["intra_bytes"]) & (df["psnr_gain"] >= 0)
    on_ext = wins & (df["intra_curve"] == "extension") & ~direct
    above = wins & (df["intra_curve"] == "above") & ~direct
    notes = [f"{int(on_ext.sum())} of them against the intra curve's extension"] if on_ext.any() else []
    notes += [f"{int(above.sum())} above the curve's top, for fewer bytes than it"] if above.any() else []
    lines += [
        "",
        f"P frames smaller than the same frame coded intra at equal or better PSNR: {int(wins.sum())} of {len(df)}"
        + (f" ({'; '.join(notes)})." if notes else "."),
        "'intra bytes at P's PSNR': the frame's intra rate curve over the ladder's models, log bytes linear in PSNR; "
        "'(ext.)': read where the curve goes on beyond the ladder, at the end models' coarser or finer steps; "
        "'(above: > top)': the P frame's PSNR is above the whole curve, whose top costs these bytes; "
        "'—': below the curve.",
    ]
    return "\n".join(lines) + "\n"
