"""Diff-SIT's model zoo: which model a spec names, and which model a rate point (a λ) codes with.

A *spec* is one of:

- a shipped model's name (``tiny-lambda1``): a folder of ``diffsit/weights`` whose
  ``config.json`` carries that name;
- a model folder named by a path (it holds a ``/``: ``./DIR``, ``runs/x/model``);
- ``random[:SEED]`` or ``preset:NAME[:SEED]``: an untrained model of a ``diffsit.presets``
  shape, for tests and plumbing only.

A *family* is a ladder of models trained at several λ (``tiny``). A shipped family is read from
the shipped models' ``config.json`` files: each gives its ``name`` and the ``lam`` it was
trained with, and belongs to family F when its name is ``F-lambda{lam}`` for its own λ (so a
folder's name is never what decides). A family named by a path (``runs/ladder/tiny``) is the
model folders ``tiny-lambda{λ}`` beside it, as ``python -m diffsit train --recipe`` writes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.codec import CodecUnavailable

from .bitstream import BitstreamError
from .model import DiffSIT, lambda_level, level_lambda, random_model
from .presets import preset_config, preset_names
from .pretrained import WAN_DIR_ENV
from .stem.intra import MAX_STEP_LEVEL

#: the λ ladder of the ``tiny`` family: the shipped models' (``diffsit/weights/tiny-lambda*``,
#: checked against their configs by tests/diffsit/test_diffsit_weights.py), the training recipe's and
#: the CLI's default rate points
LADDER = (0.5, 1, 2, 4)

#: the shipped models' folder
WEIGHTS = Path(__file__).resolve().parent / "weights"


class UntrainedModel(CodecUnavailable):
    pass


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model as its ``config.json`` describes it."""

    name: str
    lam: float | None
    folder: Path

    @property
    def family(self) -> str | None:
        """The family whose λ ladder this model is a rung of, or None (a model of its own)."""
        if self.lam is None:
            return None
        suffix = f"-lambda{self.lam:g}"
        return self.name.removesuffix(suffix) if self.name.endswith(suffix) and len(self.name) > len(suffix) else None


def weights_root() -> Path:
    return WEIGHTS


def shipped() -> dict[str, ShippedModel]:
    """Every shipped model (a folder with ``config.json`` and ``model.safetensors``) by the name
    its config gives."""
    out = {}
    if WEIGHTS.is_dir():
        for folder in sorted(WEIGHTS.iterdir()):
            config = folder / "config.json"
            if config.is_file() and (folder / "model.safetensors").is_file():
                d = json.loads(config.read_text())
                out[d["name"]] = ShippedModel(d["name"], d.get("lam"), folder)
    return out


def shipped_models() -> list[str]:
    return sorted(shipped())


def families() -> dict[str, dict[float, Path]]:
    """family -> λ -> folder, for the shipped models."""
    out: dict[str, dict[float, Path]] = {}
    for m in shipped().values():
        if m.family is not None:
            out.setdefault(m.family, {})[float(m.lam)] = m.folder
    return {f: dict(sorted(ladder.items())) for f, ladder in out.items()}


def is_model_path(spec: str) -> bool:
    """Whether a model spec names a folder: exactly when it holds a ``/`` (``./tiny-lambda4``,
    ``runs/tiny/pframe-1/model``, ``/abs/dir``). A bare name is a shipped model or family, never
    a folder of the current directory, so a stray folder there cannot stand in for one."""
    return "/" in spec or os.sep in spec


def is_untrained_spec(spec: str) -> bool:
    return spec.startswith(("random", "preset:"))


def parse_untrained_spec(spec: str) -> tuple[str, int]:
    """``random[:SEED]`` (the tiny preset) or ``preset:NAME[:SEED]`` -> (preset, seed)."""
    parts = spec.split(":")
    try:
        if parts[0] == "random" and len(parts) <= 2:
            return "tiny", int(parts[1]) if len(parts) == 2 else 0
        if parts[0] == "preset" and len(parts) in (2, 3):
            return parts[1], int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        pass
    raise ValueError(f"model {spec!r}: an untrained model is random[:SEED] or preset:NAME[:SEED], SEED an integer")


def load_model(spec: str, *, allow_untrained: bool = False, pretrained_dir: str | None = None, dtype: torch.dtype | None = None):
    """``spec``: a shipped model name, a model folder named by a path (:func:`is_model_path`),
    ``random[:SEED]`` (untrained, tiny) or ``preset:NAME[:SEED]`` (untrained, of a
    ``diffsit.presets`` shape). ``pretrained_dir``: the Wan folder of a Wan-based model or preset.
    ``dtype``: ODFTE's, loaded straight into it where it can be (``DiffSIT.materialize``)."""
    if is_untrained_spec(spec):
        preset, seed = parse_untrained_spec(spec)
        if not allow_untrained:
            raise UntrainedModel(_untrained(spec))
        return random_model(seed, preset_config(preset, pretrained_dir), dtype)
    model = DiffSIT.load(model_folder(spec), pretrained_dir=pretrained_dir, dtype=dtype)
    if not model.config.trained and not allow_untrained:
        raise UntrainedModel(_untrained(spec))
    return model


def _untrained(spec: str) -> str:
    if is_untrained_spec(spec):
        return (
            f"the {spec!r} Diff-SIT model is untrained (random weights): its numbers mean nothing. "
            "Pass allow_untrained=true (bench: --codec diffsit:allow_untrained=true; CLI: --allow-untrained) "
            "to run it anyway, for tests, plumbing and memory or time measurements only."
        )
    return f"model {model_folder(spec)} is marked untrained; pass allow_untrained=true to use it anyway"


def model_folder(spec: str) -> Path:
    """The folder of a shipped model's name or of a path; CodecUnavailable, saying how to
    name one, for anything else."""
    if is_model_path(spec):
        if not Path(spec).is_dir():
            raise CodecUnavailable(
                f"no Diff-SIT model folder {spec}: not a folder (a folder from python -m diffsit train, holding config.json and model.safetensors)"
            )
        return Path(spec)
    models = shipped()
    if spec in models:
        return models[spec].folder
    raise CodecUnavailable(
        f"no shipped Diff-SIT model {spec!r} (shipped: {', '.join(sorted(models)) or 'none'}, in {WEIGHTS}); "
        f"a bare name is looked up among the shipped models only; to use a folder, name it with a path: ./{spec}. "
        "Untrained models for plumbing tests: random[:SEED] or preset:NAME[:SEED] with allow_untrained=true."
    )


# the models of this process, for as long as a codec holds one
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def shared_model(spec: str, *, allow_untrained: bool = False, pretrained_dir: str | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """:func:`load_model`'s model on ``device``, one per process for each set of weights, dtype
    and device: every codec instance (the sweep's plan and each job build their own, the
    decoder of a stream looks its model up) gets the same one while any holds it, where each
    used to load its own copy. It must not be changed: callers pass their coding settings
    (strength block, P skip) to the pipeline instead."""
    key = (*_model_key(spec, pretrained_dir, dtype), str(device))
    model = _SHARED.get(key)
    if model is None:
        # cast on the CPU, then moved: a GPU never holds the float32 weights of a bf16 model
        model = _SHARED[key] = load_model(spec, allow_untrained=allow_untrained, pretrained_dir=pretrained_dir, dtype=dtype).to(device)
    elif not (allow_untrained or model.config.trained):
        raise UntrainedModel(_untrained(spec))
    return model


def _model_key(spec: str, pretrained_dir: str | None, dtype: torch.dtype) -> tuple:
    """What names one set of loaded weights: the spec, the Wan folder it may read, and a folder's
    files as they are now (a model trained or rewritten in place is another model)."""
    where = (pretrained_dir, os.environ.get(WAN_DIR_ENV), str(dtype))
    if is_untrained_spec(spec):
        return (parse_untrained_spec(spec), *where)  # random:3 is preset:tiny:3, which streams name
    folder = model_folder(spec).resolve()
    config, weights = folder / "config.json", folder / "model.safetensors"
    # config.json is small enough to read; the weights, gigabytes at full scale, by their stat
    stamp = (weights.stat().st_ino, weights.stat().st_size, weights.stat().st_mtime_ns) if weights.is_file() else None
    return (str(folder), *where, config.read_bytes() if config.is_file() else None, stamp)


@dataclass(frozen=True)
class RatePoint:
    """What a rate point (a λ) codes with: a model, and the step level of its texture coders."""

    spec: str
    level: int = 0


def family_lambdas(family: str) -> list[float]:
    """The λ of a family's trained models, lowest first: a shipped family's (read from the
    models' configs: ``tiny`` -> 0.5, 1, 2, 4), or those of folders ``{family}-lambda{λ}``
    beside a path (``runs/ladder/tiny``, ``./tiny``: :func:`is_model_path`)."""
    if not is_model_path(family):
        return list(families().get(family, {}))
    path = Path(family)
    prefix = f"{path.name}-lambda"
    out = []
    for p in path.parent.glob(f"{prefix}*"):
        if (p / "model.safetensors").is_file():
            try:
                out.append(float(p.name[len(prefix) :]))
            except ValueError:
                continue
    return sorted(out)


def rate_point(family: str, lam: float) -> RatePoint:
    """The model and step level a rate point codes with. A family's trained λ is its own model
    at level 0. Any other λ is the trained model nearest in log λ at the step level that stands
    for λ (``diffsit.model.lambda_level``): finer steps below the ladder's lowest λ reach higher
    rates, coarser ones above its highest lower rates, as gained variable-rate codecs
    interpolate between their trained points. A folder or an untrained model is one model for
    every λ, at level 0."""
    if is_untrained_spec(family) or (is_model_path(family) and Path(family).is_dir()):
        return RatePoint(family)
    trained = family_lambdas(family)
    if not trained or any(f"{t:g}" == f"{lam:g}" for t in trained):
        return RatePoint(f"{family}-lambda{lam:g}")  # a missing model fails to load, with its message
    nearest = min(trained, key=lambda t: abs(math.log(lam / t)))
    level = lambda_level(lam, nearest)
    if abs(level) > MAX_STEP_LEVEL:
        lo, hi = lambda_bounds(family)
        raise ValueError(
            f"λ {lam:g} is beyond what the {family} models reach: their trained λ are {', '.join(f'{t:g}' for t in trained)}, "
            f"and finer or coarser steps (up to {MAX_STEP_LEVEL} step levels) reach λ {lo:.3g} to {hi:.3g}"
        )
    return RatePoint(f"{family}-lambda{nearest:g}", level)


def lambda_bounds(family: str) -> tuple[float, float]:
    """The lowest and highest λ a family reaches through step levels."""
    trained = family_lambdas(family)
    return level_lambda(trained[0], MAX_STEP_LEVEL), level_lambda(trained[-1], -MAX_STEP_LEVEL)


def spec_for_model_id(model_id: str) -> str:
    """Which model to load for a stream: a shipped one by name, an untrained one by preset and
    seed (``tiny-random-seed0``). A stream's bytes are anyone's, so its model id is only ever
    looked up among these names, never opened as a path: anything else is refused."""
    preset, sep, seed = model_id.rpartition("-random-seed")
    if sep and preset in preset_names() and re.fullmatch(r"\d{1,9}", seed):
        return f"preset:{preset}:{seed}"
    models = shipped_models()
    if model_id in models:
        return model_id
    shown = repr(model_id) if len(model_id) <= 80 else repr(model_id[:80]) + "…"
    raise BitstreamError(
        f"the stream names model {shown}, which is neither a shipped model ({', '.join(models) or 'none'}) nor an "
        "untrained preset's; a stream's model id is never used as a path. If you have the model it was made with, "
        "decode with --model ./DIR (bench: --codec diffsit:model=./DIR)."
    )
