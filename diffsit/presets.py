"""Named Diff-SIT model shapes, the one place a Wan config is written down.

- ``tiny``: STEM and ODFTE at CPU size (what the shipped ``tiny-lambda*`` models are).
- ``wan2.1-1.3b``: STEM at its tiny size, ODFTE on Wan2.1-T2V-1.3B, loaded from a local
  ``Wan2.1-T2V-1.3B-Diffusers`` folder (``pretrained_dir``; see :func:`resolve_pretrained`).
- ``wan2.1-1.3b-shaped``: ODFTE with Wan2.1-1.3B's *shapes* and random weights, nothing to
  download: for memory and time measurements and GPU plumbing, never for numbers.

They reach training as ``"model": {"preset": NAME, ...}`` in a training config and the codec
as ``--codec diffsit:model=preset:NAME[:SEED]:allow_untrained=true`` (an untrained model
built from the preset; ``pretrained=DIR`` for ``wan2.1-1.3b``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .odfte import ODFTEConfig, tiny_config, wan_13b_config

WAN_DIR_ENV = "DIFFSIT_WAN_DIR"
WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"

#: the transformer of Wan2.1-T2V-1.3B (its diffusers transformer/config.json): 30 blocks of
#: width 1536 (12 heads of 128), FFN 8960, umT5-XXL text features of 4096
WAN_13B_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)


class MissingPretrained(FileNotFoundError):
    """The Wan folder a model needs is not where it was looked for; the message says where to put it."""


def preset_names() -> list[str]:
    return ["tiny", "wan2.1-1.3b", "wan2.1-1.3b-shaped"]


def preset_odfte(name: str, pretrained_dir: str | os.PathLike | None = None) -> ODFTEConfig:
    if name == "tiny":
        return tiny_config()
    if name == "wan2.1-1.3b":
        return wan_13b_config(resolve_pretrained(pretrained_dir))
    if name == "wan2.1-1.3b-shaped":
        # AutoencoderKLWan's defaults are Wan2.1's VAE (base 96, 8x space, 4x time)
        return replace(wan_13b_config("unused"), pretrained_dir=None, transformer=dict(WAN_13B_TRANSFORMER))
    raise ValueError(f"unknown Diff-SIT preset {name!r}; presets: {', '.join(preset_names())}")


def preset_config(name: str, pretrained_dir: str | os.PathLike | None = None, **overrides):
    """A DiffSITConfig for a preset, with DiffSITConfig field overrides."""
    from .model import DiffSITConfig

    config = DiffSITConfig(name=name, odfte=preset_odfte(name, pretrained_dir))
    if name != "tiny":
        # Wan's VAE takes 1 + 4k frames; 33 is the paper's window, and the strength map is
        # the tiny models' crutch (a full-scale ODFTE is meant to be used as is)
        config.window, config.strength_block = 33, 0
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"unknown Diff-SIT model key {key!r}")
        setattr(config, key, ODFTEConfig(**value) if key == "odfte" and isinstance(value, dict) else value)
    return config


def _looks_like_wan(folder: Path) -> bool:
    return (folder / "transformer" / "config.json").is_file() and (folder / "vae" / "config.json").is_file()


def resolve_pretrained(explicit: str | os.PathLike | None = None, *, stored: str | None = None, model_folder: Path | None = None) -> str:
    """The Wan folder: ``explicit`` (an option), else ``$DIFFSIT_WAN_DIR``, else ``stored`` (a
    model's config.json, relative to ``model_folder``). The first that holds transformer/ and
    vae/ wins; none: MissingPretrained naming every place looked at."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("the pretrained option", Path(explicit).expanduser()))
    if os.environ.get(WAN_DIR_ENV):
        candidates.append((f"${WAN_DIR_ENV}", Path(os.environ[WAN_DIR_ENV]).expanduser()))
    if stored:
        p = Path(stored).expanduser()
        candidates.append(("the model's config.json", p if p.is_absolute() or model_folder is None else model_folder / p))
    for _, folder in candidates:
        if _looks_like_wan(folder):
            return str(folder.resolve())
    looked = "; ".join(f"{where}: {folder}" for where, folder in candidates) or "nowhere (no path given)"
    raise MissingPretrained(
        f"this Diff-SIT model runs ODFTE on Wan2.1-T2V-1.3B, and no {WAN_REPO} folder (with transformer/ and vae/) was found. "
        f"Looked at {looked}. Download it with `huggingface-cli download {WAN_REPO} --local-dir DIR` and pass "
        f'pretrained=DIR (--codec diffsit:pretrained=DIR; training: "model": {{"pretrained_dir": DIR}}) or set {WAN_DIR_ENV}=DIR.'
    )
