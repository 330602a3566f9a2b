"""The recipe that trains the shipped ``tiny`` models: one command, about an hour on 2 CPU cores
(its logged s/step; 88 min of wall time measured while the test suite shared the cores).

    python -m diffsit train --recipe tiny --out runs/tiny --install

Runs, in order (each a resumable run folder under ``--out``; a finished run is skipped):

1. ``vae``       stage 0: the tiny Wan VAE as an autoencoder (then frozen, latent stats measured)
2. ``stem``      stage 1 at lambda = 1, from scratch: STEM's shared starting point
3. ``stem-L``    stage 1 at each lambda L, from ``stem``
4. ``e2e``       stage 2 at lambda = 1: ODFTE's shared starting point (STEM from ``stem-1``)
5. ``e2e-L``     stage 2 at each lambda L: STEM from ``stem-L``, ODFTE from ``e2e``

Stage 2 runs here with STEM frozen (``train_stem=False``): on this budget (a few hundred
steps) a jointly trained STEM drifts in rate and x~, which blurs both the rate ladder and
the x~ -> x^ comparison the ablation measures. The full-scale config trains end to end.
The lambda fine-tunes mostly move the coders' quantization gains (their own learning rate).

``--install`` copies each ``e2e-L/model`` to ``diffsit/weights/tiny-lambdaL``. The shared
starting points are the usual way to train a rate ladder (CompressAI fine-tunes its lower
rates from a higher one); the paper does not say how its four models were started.

Data: ``photos`` (9 parts in 10) and ffmpeg's ``gradients`` source (1 part), never the
benchmark's sample clips. ``scale`` multiplies every step count (0.01 for a smoke test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import TrainConfig

LAMBDAS = (0.5, 1.0, 2.0, 4.0)
DATA = ["photos", "lavfi:gradients=size=384x256:rate=25:speed=0.015:nb_colors=3"]
DATA_WEIGHTS = [0.9, 0.1]

# steps per run (at scale 1), ~60 min in all on 2 free cores (~0.6 s per VAE step, ~1.5 s per
# STEM step, ~2.5 s per stage-2 step with STEM frozen: the tiny Wan VAE's frame-by-frame
# causal passes dominate)
STEPS = {"vae": 400, "stem": 800, "stem-L": 200, "e2e": 200, "e2e-L": 40}


def tiny_recipe(scale: float = 1.0, seed: int = 0) -> list[tuple[str, TrainConfig]]:
    def steps(key: str) -> int:
        return max(2, int(round(STEPS[key] * scale)))

    common = dict(data=list(DATA), data_weights=list(DATA_WEIGHTS), seed=seed, frames=9)
    runs = [
        ("vae", TrainConfig(stage=0, name="tiny-vae", steps=steps("vae"), batch_size=4, crop=(64, 64), lr=3e-3,
                            **{**common, "frames": 5})),  # fmt: skip
        ("stem", TrainConfig(stage=1, name="tiny-stem", lam=1.0, steps=steps("stem"), batch_size=4, lr=8e-4, init="vae",
                             intra_all_frames=1.0, quantize="noise", **common)),  # fmt: skip
    ]
    for lam in LAMBDAS:
        runs.append((f"stem-{lam:g}", TrainConfig(stage=1, name=f"tiny-stem-lambda{lam:g}", lam=lam, steps=steps("stem-L"),
                                                   batch_size=4, lr=2e-4, warmup=10, init="stem", intra_all_frames=0.5, **common)))  # fmt: skip
    runs.append(("e2e", TrainConfig(stage=2, name="tiny-e2e", lam=1.0, steps=steps("e2e"), batch_size=2, lr=1e-3, dit="full",
                                    train_stem=False, init="stem-1", **common)))  # fmt: skip
    for lam in LAMBDAS:
        runs.append((f"e2e-{lam:g}", TrainConfig(stage=2, name=f"tiny-lambda{lam:g}", lam=lam, steps=steps("e2e-L"), batch_size=2,
                                                 lr=5e-4, warmup=10, dit="full", train_stem=False, init=f"stem-{lam:g}", init_odfte="e2e",
                                                 **common)))  # fmt: skip
    return runs


def run_recipe(out: str | Path, *, scale: float = 1.0, install: bool = False, weights_dir: Path | None = None, progress: bool = True) -> list[Path]:
    from .trainer import train

    out = Path(out)
    results = []
    for name, cfg in tiny_recipe(scale):
        # run names in init fields are relative to the recipe folder
        for attr in ("init", "init_odfte"):
            if getattr(cfg, attr):
                setattr(cfg, attr, str(out / getattr(cfg, attr)))
        folder = out / name
        if (folder / "model" / "model.safetensors").is_file() and (folder / "train_config.json").read_text() == cfg.to_json():
            results.append(folder / "model")
            continue
        results.append(train(cfg, folder, progress=progress))
    if install:
        target_root = weights_dir or Path(__file__).resolve().parents[1] / "weights"
        for lam in LAMBDAS:
            install_model(out / f"e2e-{lam:g}" / "model", target_root / f"tiny-lambda{lam:g}")
    return results


def install_model(src: Path, dst: Path) -> Path:
    """Copy a trained model into the package, its weights stored as float16 (half the bytes;
    the four tiny models must fit in 16 MB), with its training metadata."""
    import torch

    from ..model import DiffSIT

    model = DiffSIT.load(src)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, metadata=DiffSIT.read_metadata(src), dtype=torch.float16)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
