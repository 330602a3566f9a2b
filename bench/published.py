"""Names and numbers as published results files give them, read one way by every importer
(``bench import``, :mod:`bench.dcvc`): dataset and sequence names mapped onto the registry's,
and values checked to be finite."""

from __future__ import annotations

import math
import re
from pathlib import Path

_DATASET_ALIASES = {"hevc_b": "hevc_b", "hevcb": "hevc_b", "classb": "hevc_b", "uvg": "uvg", "mcl_jcv": "mcl_jcv", "mcljcv": "mcl_jcv"}


class ImportFormatError(ValueError):
    """The file does not have the structure its format promises; the message says what is wrong."""


def dataset_name(text: str) -> str:
    """``HEVC_B``, ``HEVC-B``, ``UVG``, ``MCL-JCV`` -> the registry's names; others lower-cased."""
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    for alias, name in _DATASET_ALIASES.items():
        if key == alias.replace("_", ""):
            return name
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def sequence_name(text: str) -> str:
    """``BasketballDrive_1920x1080_50.yuv`` / ``videoSRC01_1920x1080_30`` -> the name before the geometry."""
    stem = re.sub(r"\.(yuv|png|mp4)$", "", text, flags=re.I)
    m = re.match(r"(.+?)_\d+x\d+", stem)
    return m.group(1) if m else stem


def finite(value, path: Path, where: str, key: str, *, positive: bool = False) -> float:
    """``value`` as a finite number (> 0 with ``positive``), or an ImportFormatError naming the
    file, where in it, the value, and what to do: a NaN or infinite point would be plotted."""
    fix = "correct it in the file or remove that point"
    try:
        x = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise ImportFormatError(f"{path}: {where}: {key} is {value!r}, not a finite number; {fix}")
    if positive and x <= 0:
        raise ImportFormatError(f"{path}: {where}: {key} is {value!r}; bits per pixel must be positive; {fix}")
    return x
