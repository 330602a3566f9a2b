"""Where a Wan-based model's Wan2.1-T2V-1.3B-Diffusers folder is: the option, the
environment, or the model's own config.json. No model code here, so both ``diffsit.model``
(loading) and ``diffsit.presets`` (building) use it without importing each other."""

from __future__ import annotations

import os
from pathlib import Path

WAN_DIR_ENV = "DIFFSIT_WAN_DIR"
WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


class MissingPretrained(FileNotFoundError):
    """The Wan folder a model needs is not where it was looked for; the message says where to put it."""


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
