"""``python -m diffsit seams``: does ODFTE leave a temporal seam where its windows meet?

ODFTE refines a clip in windows of 9 + 12m frames. Each window is encoded by the causal VAE
from a fresh cache and refined by the DiT on its own, so the frame pair that straddles two
windows (t-1 in one, t in the next) can change more than a pair inside one. Ewarp (the
harness's, ``bench.metrics``) is measured per frame pair; this compares its mean over the
*boundary* pairs (t = window, 2 window, ... without overlap) with its mean over the others,
for x~ (STEM's output: no windows, the clip's own ratio) and for ODFTE's output as is (the
paper's x^, no strength map) at each window overlap asked for. A seam shows as a boundary
mean above the inside mean by more than x~'s.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from bench.datasets import get_dataset
from bench.metrics import create_metric

from ..pipeline import encode_video, refine, to_video
from ..zoo import load_model


def boundary_pairs(frames: int, window: int) -> np.ndarray:
    """Ewarp's pair index t (pair t-1 -> t) of every hard cut between non-overlapping windows."""
    return np.arange(window, frames, window)


def seam_table(
    dataset: str = "sample",
    *,
    sequences: list[str] | None = None,
    frames: int = 33,
    model: str = "tiny-lambda1",
    overlaps: tuple[int, ...] = (0, 3),
    flow: str = "dis",
    device: str = "cpu",
    allow_untrained: bool = False,
) -> pd.DataFrame:
    m = load_model(model, allow_untrained=allow_untrained)
    ewarp = create_metric("ewarp", device=device, flow=flow)
    rows = []
    for seq in get_dataset(dataset).resolve(None, sequences):
        video = seq.open(frames=frames)
        n = video.frames
        cuts = boundary_pairs(n, m.config.window)
        if not len(cuts):
            raise ValueError(f"{seq.name}: {n} frames fit in one ODFTE window of {m.config.window}: no boundary to measure")
        inside = np.setdiff1d(np.arange(1, n), cuts)
        enc = encode_video(m, video, device=device, output=False)
        variants = {"x_tilde": enc.x_tilde}
        for o in overlaps:
            variants[f"odfte_overlap{o}"] = refine(m, enc.x_tilde, m.config.intra_period, overlap=o)
        for name, rgb in variants.items():
            values = ewarp.compute_sequence(video, to_video(rgb.cpu(), video.width, video.height, video.fps))["ewarp"]
            rows.append(
                {
                    "sequence": seq.name,
                    "variant": name,
                    "frames": n,
                    "ewarp_boundary": float(np.mean(values[cuts])),
                    "ewarp_inside": float(np.mean(values[inside])),
                    "boundary_pairs": ",".join(map(str, cuts)),
                }
            )
    df = pd.DataFrame(rows)
    df["ratio"] = df["ewarp_boundary"] / df["ewarp_inside"]
    return df


def main(args) -> int:
    df = seam_table(
        args.dataset,
        sequences=args.sequences.split(",") if args.sequences else None,
        frames=args.frames,
        model=args.model,
        overlaps=tuple(int(v) for v in args.overlaps.split(",")),
        device=args.device,
        allow_untrained=args.allow_untrained,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "seams.csv", index=False)
    text = df.to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else df.to_string(index=False)
    (out / "seams.md").write_text(text + "\n")
    print(text)
    return 0


def _has_tabulate() -> bool:
    return importlib.util.find_spec("tabulate") is not None
