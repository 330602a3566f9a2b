"""The recipe that trains the shipped ``tiny`` models: one command, about 90 minutes on 2 CPU
cores (its logged s/step; docs/measurements/diffsit.md has the run's own figures).

    python -m diffsit train --recipe tiny --out runs/tiny --install

Each part of STEM is trained for what it does before they are trained together. Runs, in
order (each a resumable run folder under ``--out``; a finished run is skipped):

1. ``vae``       stage 0: the tiny Wan VAE as an autoencoder (then frozen, latent stats measured)
2. ``intra``     stage 1, objective ``intra``: the intra coder alone on single frames, from
                 scratch, long enough that its transform passes a plain 4x downsample
3. ``motion``    stage 1, objective ``motion``: the MV coder and the P coder's motion coder
                 alone, on the warps their coded flows give, at the sample clips' speeds
4. ``pframe``    stage 1, objective ``pframe``: the P coder alone, from the intra coder
                 (``pframe_from_intra``: before any step it is the intra coder of the residual
                 image), on a frame three after an intra-coded reference; it logs the same
                 frame coded intra beside it
5. ``stem``      stage 1 at lambda = 1 over GOP clips, from ``pframe``: the parts together;
                 STEM's shared starting point
6. ``stem-L``    stage 1 at each lambda L, from ``stem``
7. ``e2e``       stage 2 at lambda = 1: ODFTE's shared starting point (STEM from ``stem-1``)
8. ``e2e-L``     stage 2 at each lambda L: STEM from ``stem-L``, ODFTE from ``e2e``
9. ``pframe-L``  stage 1, objective ``pframe``, at each lambda L, from ``e2e-L``: the P coder
                 alone again, at that lambda; everything else, ODFTE included, as ``e2e-L``
                 left it. These are the installed models.

Trained from scratch over GOP clips (the recipe before issue 19), the P coder cost more than
coding the same frame intra (and still did as pure conditional coding started from the intra
coder, which codes the whole frame again and did not learn in 1200 GOP steps to leave out
what the context carries), the intra coder's transform reconstructed below a 4x downsample,
and the motion coders, which had seen at most 4 pixels a frame, missed bikes' 11-13 by 7-8.

Stage 2 runs here with STEM frozen (``train_stem=False``): on this budget (a few hundred
steps) a jointly trained STEM drifts in rate and x~, which blurs both the rate ladder and
the x~ -> x^ comparison the ablation measures. The full-scale config trains end to end.
The lambda fine-tunes mostly move the coders' quantization gains (their own learning rate).

Why the P coder is trained alone once more at the end: trained alone (``pframe``) it codes a
frame for about two thirds of the intra coder's bytes, and the GOP stages that follow give
most of that back (their loss weighs a backbone through the MV frames predicted from it, and
``intra_all_frames`` trains the intra coder on every frame, so the bar a P frame must clear
rises). A short run of the P coder alone at each lambda restores its lead without moving the
intra coder, the motion coders or ODFTE (docs/measurements/diffsit.md, issue 19's sixth round).

``--install`` copies each ``pframe-L/model`` to ``diffsit/weights/tiny-lambdaL``. The shared
starting points are the usual way to train a rate ladder (CompressAI fine-tunes its lower
rates from a higher one; DCVC-style P coders start from a trained intra model); the paper
does not say how its four models were started.

Data: ``photos:max_pan=16`` (9 parts in 10: photo clips panning and moving at up to 16
pixels a frame, the sample clips' speeds) and ffmpeg's ``gradients`` source (1 part) for
stages 0 and 1. Stage 2 adds real video: three clips that ship with OpenCV's examples
(Debian/Ubuntu package ``opencv-doc``; ``VIDEOS`` below), half of its clips. A refiner learns
what it is shown: trained on photo pans alone, ODFTE did not carry over to the camera noise,
blur and motion of real video. STEM's stages keep the photo data, so the rate ladder they set
does not depend on the package. Never the benchmark's sample clips. ``scale`` multiplies
every step count (0.01 for a smoke test).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from .. import strength
from ..model import DiffSIT
from ..zoo import LADDER
from .config import TrainConfig
from .trainer import train

LAMBDAS = tuple(float(lam) for lam in LADDER)
# photo clips at the sample clips' speeds (bikes pans 11-13 pixels a frame): see PhotoClips
DATA = ["photos:max_pan=16", "lavfi:gradients=size=384x256:rate=25:speed=0.015:nb_colors=3"]
DATA_WEIGHTS = [0.9, 0.1]

# Real video for stage 2: OpenCV's example clips, not the benchmark's. tree.avi (320x240, a
# webcam view of a tree through a window, leaves moving in the wind), Megamind.avi (720x528, an
# animated film trailer) and vtest.avi (768x576, pedestrians under a fixed camera);
# Megamind_bugy.avi is a damaged copy of Megamind and is left out.
VIDEOS_DIR_ENV = "DIFFSIT_RECIPE_VIDEOS"
VIDEOS_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
VIDEOS = {"tree.avi": 0.2, "Megamind.avi": 0.15, "vtest.avi": 0.15}
# stage 2's w_c (ODFTE's error should move with the picture, not flicker; see TrainConfig) is
# the one the encoder's strength map is chosen with, so the two agree
TEMPORAL_WEIGHT = strength.TEMPORAL_WEIGHT

# frames consecutive ODFTE windows share in the models the recipe writes: one group, the
# overlap the seam measurement chose (docs/measurements/diffsit.md, "Seams between ODFTE
# windows"). Training never meets it (its clips are one window); the first run writes it into
# the model config and every later run starts from a model that carries it
WINDOW_OVERLAP = 3

# steps per run (at scale 1), ~90 min in all on 2 free cores (~0.6 s per VAE step, ~0.14 s
# per intra step, ~0.4 s per motion step, ~0.5 s per P step, ~1.2 s per GOP step, ~2.5 s per stage-2 step with
# STEM frozen: the tiny Wan VAE's frame-by-frame causal passes dominate)
STEPS = {"vae": 400, "intra": 5000, "motion": 1200, "pframe": 1500, "stem": 600, "stem-L": 200, "e2e": 200, "e2e-L": 40, "pframe-L": 300}


class RecipeDataError(FileNotFoundError):
    """A file the recipe trains on is missing; the message says where to get it."""


def videos_dir() -> Path:
    return Path(os.environ.get(VIDEOS_DIR_ENV) or VIDEOS_DIR)


def stage2_data(folder: Path | None = None) -> tuple[list[str], list[float]]:
    """Stage 2's sources and weights: the photo data at half weight, and the real videos."""
    folder = folder or videos_dir()
    missing = [name for name in VIDEOS if not (folder / name).is_file()]
    if missing:
        raise RecipeDataError(
            f"the tiny recipe's stage 2 trains on OpenCV's example videos, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {folder}. Install them with "
            f"`apt-get install opencv-doc` (they land in {VIDEOS_DIR}), or, without root, "
            f"`apt-get download opencv-doc && dpkg -x opencv-doc_*.deb DIR` and set "
            f"{VIDEOS_DIR_ENV}=DIR/usr/share/doc/opencv-doc/examples/data"
        )
    real = 1.0 - sum(VIDEOS.values())
    return [*DATA, *(f"videos:{folder / name}" for name in VIDEOS)], [w * real for w in DATA_WEIGHTS] + list(VIDEOS.values())


def tiny_recipe(scale: float = 1.0, seed: int = 0, videos: Path | None = None, lambdas=LAMBDAS) -> list[tuple[str, TrainConfig]]:
    """The runs, in order; ``lambdas``: the rate points of ``stem-L`` and ``e2e-L`` (another
    ladder, or rate points beyond the shipped one: the shared runs are the same whatever it is,
    so a recipe folder grows a ladder without retraining them)."""
    lambdas = tuple(float(v) for v in lambdas)
    if not lambdas or any(not v > 0 for v in lambdas):
        raise ValueError(f"the recipe's lambdas must be positive, got {list(lambdas)}")
    if 1.0 not in lambdas:
        lambdas = (*lambdas, 1.0)  # stem-1 is e2e's starting point

    def steps(key: str) -> int:
        return max(2, int(round(STEPS[key] * scale)))

    data2, weights2 = stage2_data(videos)
    common = dict(data=list(DATA), data_weights=list(DATA_WEIGHTS), seed=seed, frames=9)
    common2 = {**common, "data": data2, "data_weights": weights2, "temporal_weight": TEMPORAL_WEIGHT}
    return [*_stem_runs(steps, common), *_ladder_runs(steps, common, common2, lambdas)]


def _stem_runs(steps, common: dict) -> list[tuple[str, TrainConfig]]:
    """The runs every rate point shares, up to the λ-1 STEM: the VAE, then STEM's coders one
    at a time (intra, motion, P) and together."""
    vae = dict(stage=0, name="tiny-vae", batch_size=4, crop=(64, 64), lr=3e-3, model={"window_overlap": WINDOW_OVERLAP})
    intra = dict(stage=1, objective="intra", name="tiny-intra", lam=1.0, batch_size=16, lr=1e-3, init="vae", quantize="noise")
    # the motion and P coders: four frames, a P frame's reference three frames back
    motion = dict(stage=1, objective="motion", name="tiny-motion", lam=1.0, batch_size=8, crop=(192, 192), lr=1e-3, init="intra", quantize="noise")
    pframe = dict(stage=1, objective="pframe", name="tiny-pframe", lam=1.0, batch_size=8, lr=5e-4, init="motion", pframe_from_intra=True)
    stem = dict(stage=1, name="tiny-stem", lam=1.0, batch_size=4, lr=3e-4, init="pframe", intra_all_frames=0.25)
    return [
        ("vae", TrainConfig(steps=steps("vae"), **vae, **{**common, "frames": 5})),
        ("intra", TrainConfig(steps=steps("intra"), **intra, **{**common, "frames": 1})),
        ("motion", TrainConfig(steps=steps("motion"), **motion, **{**common, "frames": 4})),
        ("pframe", TrainConfig(steps=steps("pframe"), **pframe, **{**common, "frames": 4})),
        ("stem", TrainConfig(steps=steps("stem"), **stem, **common)),
    ]


def _ladder_runs(steps, common: dict, common2: dict, lambdas: tuple[float, ...]) -> list[tuple[str, TrainConfig]]:
    """The per-λ runs (STEM at each λ), stage 2 at λ 1 (ODFTE, shared), and at each λ: stage 2
    from that λ's STEM, then its P coder fine-tuned (``pframe-L``: the shipped model)."""
    stem_l = dict(stage=1, steps=steps("stem-L"), batch_size=4, lr=1e-4, warmup=10, init="stem", intra_all_frames=0.25, **common)
    e2e_l = dict(stage=2, steps=steps("e2e-L"), batch_size=2, lr=5e-4, warmup=10, dit="full", train_stem=False, init_odfte="e2e", **common2)
    pframe_l = dict(stage=1, objective="pframe", steps=steps("pframe-L"), batch_size=8, lr=1e-4, warmup=10, **{**common, "frames": 4})
    e2e = TrainConfig(stage=2, name="tiny-e2e", lam=1.0, steps=steps("e2e"), batch_size=2, lr=1e-3, dit="full", train_stem=False, init="stem-1", **common2)
    return [
        *((f"stem-{lam:g}", TrainConfig(name=f"tiny-stem-lambda{lam:g}", lam=lam, **stem_l)) for lam in lambdas),
        ("e2e", e2e),
        *((f"e2e-{lam:g}", TrainConfig(name=f"tiny-lambda{lam:g}", lam=lam, init=f"stem-{lam:g}", **e2e_l)) for lam in lambdas),
        *((f"pframe-{lam:g}", TrainConfig(name=f"tiny-lambda{lam:g}", lam=lam, init=f"e2e-{lam:g}", **pframe_l)) for lam in lambdas),
    ]


def run_recipe(
    out: str | Path, *, scale: float = 1.0, install: bool = False, weights_dir: Path | None = None, progress: bool = True, lambdas=LAMBDAS
) -> list[Path]:
    """Train every run not yet finished; ``install`` copies each ``pframe-L`` of ``lambdas``."""
    out = Path(out)
    results = []
    for name, cfg in tiny_recipe(scale, lambdas=lambdas):
        # run names in init fields are relative to the recipe folder
        for attr in ("init", "init_odfte"):
            if getattr(cfg, attr):
                setattr(cfg, attr, str(out / getattr(cfg, attr)))
        folder = out / name
        if _finished(folder, cfg):
            results.append(folder / "model")
            continue
        results.append(train(cfg, folder, progress=progress))
    if install:
        target_root = weights_dir or Path(__file__).resolve().parents[1] / "weights"
        for lam in lambdas:
            install_model(out / f"pframe-{lam:g}" / "model", target_root / f"tiny-lambda{lam:g}")
    return results


def _finished(folder: Path, cfg: TrainConfig) -> bool:
    """A run to skip: trained with this config, and after every run it starts from (a run
    whose starting point was retrained since is stale, even with the same config)."""
    result = folder / "model" / "model.safetensors"
    if not result.is_file() or _saved_config(folder) != cfg:
        return False
    starts = [Path(getattr(cfg, attr)) / "model" / "model.safetensors" for attr in ("init", "init_odfte") if getattr(cfg, attr)]
    return all(start.is_file() and start.stat().st_mtime <= result.stat().st_mtime for start in starts)


def _saved_config(folder: Path) -> TrainConfig | None:
    """The config a finished run was trained with, keys added since then at their defaults."""
    try:
        return TrainConfig.from_file(folder / "train_config.json")
    except (OSError, ValueError):
        return None


def install_model(src: Path, dst: Path) -> Path:
    """Copy a trained model into the package, its weights stored as float16 (half the bytes;
    the four tiny models must fit in 16 MB), with its training metadata."""
    model = DiffSIT.load(src)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, metadata=DiffSIT.read_metadata(src), dtype=torch.float16)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
