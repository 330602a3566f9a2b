"""``python -m diffsit p-vs-intra``: does a P frame cost less than the same frame coded intra?

For every P frame of each sequence's GOP (the first ``--frames`` frames, at each λ), the
stream's P frame (its motion and its contextual residual, coded from the previous
reconstructed backbone, as the codec codes it) against the same source frame coded by the
intra coder of the same model. Both are measured on STEM's output (x~, the DPB samples, cut
back to the picture), in bytes and PSNR-RGB (RGB in [0, 1], STEM's own domain, the one its
loss weighs). A P coder earns its place when its frame is smaller at equal or better PSNR.

"Equal PSNR" is read off the frame's own intra rate curve: the same frame coded by the intra
coder of every model of the ladder (log bytes interpolated linearly in PSNR between the two
points around the P frame's PSNR). A skipped P frame (motion alone, the prediction as the
frame) is often below the ladder's lowest intra point; the curve goes on below it with the
lowest-rate model's intra coder at coarser quantization steps (its gains times
``EXTENSION_GAINS``, gained variable rate), marked as such. A model trained for such a rate
would code the frame intra at least as well as a coarser step of one trained for another, so
a win against the extension is a weaker claim, and the table says which is which.
Output: ``p_vs_intra.csv`` and ``p_vs_intra.md``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: the lowest-rate model's intra gains times these extend each frame's intra curve below the ladder
EXTENSION_GAINS = (0.7, 0.5, 0.35, 0.25)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def p_vs_intra(
    dataset: str = "sample",
    *,
    sequences: list[str] | None = None,
    frames: int = 9,
    lambdas=(0.5, 1, 2, 4),
    model: str = "tiny",
    data_root: str | None = None,
    allow_untrained: bool = False,
    out: str | Path = "results/p_vs_intra",
) -> pd.DataFrame:
    from bench.datasets import get_dataset

    from .codec import _frames_rgb, encode_video, load_model, spec_for_lambda
    from .gop import FrameType, schedule
    from .stem.pframe import MOTION_STRINGS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for seq in get_dataset(dataset).resolve(data_root, sequences):
        video = seq.open(frames=min(frames, seq.available_frames()))
        h, w = video.height, video.width
        src = _frames_rgb(video, "cpu")

        for lam in sorted(lambdas, reverse=True):  # the lowest rate first: it extends the curves
            m = load_model(spec_for_lambda(model, lam), allow_untrained=allow_untrained)
            m.config.strength_block = 0  # STEM's bytes only: no ODFTE needed
            enc = encode_video(m, video, output=False)
            records = {r.index: r for r in enc.stream.records}
            for fc in schedule(video.frames, m.config.intra_period):
                if fc.type is not FrameType.PRED:
                    continue
                strings = records[fc.index].strings
                cur = src[fc.index : fc.index + 1, :, :h, :w]
                point = {"sequence": seq.name, "frame": fc.index, "lambda": lam}
                intra = {**point, "gain": 1.0, **_intra_point(m.intra, src[fc.index : fc.index + 1], h, w)}
                curves.append(intra)
                if lam == max(lambdas):
                    for g in EXTENSION_GAINS:
                        curves.append({**point, "gain": g, **_intra_point(_coarser(m.intra, g), src[fc.index : fc.index + 1], h, w)})
                rows.append(
                    {
                        "sequence": seq.name,
                        "lambda": lam,
                        "frame": fc.index,
                        "reference": fc.reference,
                        "p_mode": "skip" if len(strings) == MOTION_STRINGS else "residual",
                        "p_bytes": sum(map(len, strings)),
                        "p_motion_bytes": sum(map(len, strings[:MOTION_STRINGS])),
                        "p_psnr_rgb": _psnr(enc.x_tilde[fc.index : fc.index + 1, :, :h, :w], cur),
                        "intra_bytes": intra["bytes"],
                        "intra_psnr_rgb": intra["psnr_rgb"],
                    }
                )
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


def _intra_point(coder, frame: torch.Tensor, h: int, w: int) -> dict:
    """Bytes and PSNR-RGB of ``frame`` (padded) coded by ``coder``, over the picture (h, w)."""
    from .stem.exact import samples_to_float

    strings, rec = coder.compress_image(frame)
    return {"bytes": sum(map(len, strings)), "psnr_rgb": _psnr(samples_to_float(rec)[..., :h, :w], frame[..., :h, :w])}


def _coarser(coder, gain: float):
    """The intra coder at quantization steps 1/``gain`` times its own (gained variable rate)."""
    coarse = copy.deepcopy(coder)
    with torch.no_grad():
        coarse.log_gain.add_(math.log(gain))
    coarse.update()
    return coarse


def equal_psnr_bytes(curve: pd.DataFrame, psnr: float) -> tuple[float, str]:
    """Bytes the frame's intra curve (rows of bytes, psnr_rgb, gain) spends at ``psnr``, log
    bytes linear in PSNR between the points around it, and where it was read: "ladder" (the
    models' own points), "extension" (below them, at coarser steps) or "outside" (NaN: above the
    ladder's top or below the extension's bottom, no equal-PSNR intra point to compare with).
    The curve is made monotone first: a point that costs more than a higher-PSNR one is dropped."""
    pts = curve.sort_values("psnr_rgb")
    b = pts["bytes"].to_numpy(float)
    keep = np.array([b[i] <= b[i + 1 :].min() if i + 1 < len(b) else True for i in range(len(b))])
    pts = pts[keep]
    p, b, ext = pts["psnr_rgb"].to_numpy(float), pts["bytes"].to_numpy(float), (pts["gain"] != 1).to_numpy()
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
        at = "—" if math.isnan(r.intra_bytes_at_p_psnr) else f"{r.intra_bytes_at_p_psnr:.0f}" + (" (ext.)" if r.intra_curve == "extension" else "")
        lines.append(
            f"| {r.sequence} | {r._2:g} | {r.frame} ({r.reference}) | {r.p_mode} | {r.p_bytes} ({r.p_motion_bytes}) | {r.p_psnr_rgb:.2f} | "
            f"{r.intra_bytes} | {r.intra_psnr_rgb:.2f} | {r.bytes_ratio:.2f} | {r.psnr_gain:+.2f} | {at} | {'yes' if r.p_wins else 'no'} |"
        )
    wins = df["p_wins"]
    on_ext = wins & (df["intra_curve"] == "extension") & ~((df["p_bytes"] < df["intra_bytes"]) & (df["psnr_gain"] >= 0))
    lines += [
        "",
        f"P frames smaller than the same frame coded intra at equal or better PSNR: {int(wins.sum())} of {len(df)}"
        + (f" ({int(on_ext.sum())} of them against the intra curve's extension below the ladder)." if on_ext.any() else "."),
        "'intra bytes at P's PSNR': the frame's intra rate curve over the ladder's models, log bytes linear in PSNR; "
        "'(ext.)': read where the curve goes on below the ladder, at the lowest-rate model's coarser steps; "
        "'—': outside the curve.",
    ]
    return "\n".join(lines) + "\n"
