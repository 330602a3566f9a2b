"""Named Diff-SIT model shapes, the one place a Wan config is written down.

- ``tiny``: STEM and ODFTE at CPU size (what the shipped ``tiny-lambda*`` models are).
- ``wan2.1-1.3b``: STEM at its tiny size, ODFTE on Wan2.1-T2V-1.3B, loaded from a local
  ``Wan2.1-T2V-1.3B-Diffusers`` folder (``pretrained_dir``; see
  :func:`diffsit.pretrained.resolve_pretrained`).
- ``wan2.1-1.3b-shaped``: ODFTE with Wan2.1-1.3B's *shapes* and random weights, nothing to
  download: for memory and time measurements and GPU plumbing, never for numbers.

They reach training as ``"model": {"preset": NAME, ...}`` in a training config and the codec
as ``--codec diffsit:model=preset:NAME[:SEED]:allow_untrained=true`` (an untrained model
built from the preset; ``pretrained=DIR`` for ``wan2.1-1.3b``).
"""

from __future__ import annotations

import os
from dataclasses import replace

from .model import DiffSITConfig
from .odfte import ODFTEConfig, tiny_config, wan_13b_config
from .pretrained import resolve_pretrained

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
