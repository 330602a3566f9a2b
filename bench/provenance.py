"""Where a result came from: the command and configuration, the code (git), the host, the
package versions, the codecs' descriptions and bench's own ffmpeg. One implementation, used by
the sweep's manifest and by Diff-SIT's training runs (``git_state``)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ffmpeg, weights

if TYPE_CHECKING:
    from .codec import Codec
    from .config import SweepConfig

#: the packages whose versions a manifest records
PACKAGES = (
    "diffsit-bench",
    "numpy",
    "pandas",
    "torch",
    "torchvision",
    "numba",
    "imageio-ffmpeg",
    "lpips",
    "DISTS-pytorch",
    "opencv-python-headless",
    "pyiqa",
)


def now() -> str:
    """The time, UTC, to the second (ISO 8601), as records and manifests write it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Each installed package's version; None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def provenance(
    codecs: dict[str, Codec],
    argv: list[str] | None = None,
    skipped_metrics: dict[str, str] | None = None,
    config: SweepConfig | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """A sweep's provenance, as its manifest records it."""
    info: dict[str, Any] = {
        "command": argv if argv is not None else sys.argv,
        "config": config.to_dict() if config is not None else None,
        "time": now(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "codecs": {},
        "notes": notes or [],
        "metrics_skipped": skipped_metrics or {},
        "weights_dirs": [str(p) for p in weights.search_dirs()],
    }
    for name, codec in codecs.items():
        try:
            info["codecs"][name] = codec.describe()
        except Exception as e:
            info["codecs"][name] = {"error": str(e)}
    try:  # bench's own ffmpeg: VMAF, sample clips (codecs record theirs in describe())
        exe = ffmpeg.ffmpeg_exe(config.codec_options.get("ffmpeg") if config else None)
        info["ffmpeg"] = {"path": exe, "version": ffmpeg.ffmpeg_version(exe)}
    except ffmpeg.FFmpegError as e:
        info["ffmpeg"] = {"error": str(e)}
    return info


def git_state(where: str | Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it: ``{"commit", "dirty"}``
    (commit None outside a git checkout); ``{"commit": None}`` where git cannot run.
    ``where``: a folder in the checkout (default: this package's)."""
    here = str(where or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    commit = head.stdout.strip() if head.returncode == 0 else ""
    return {"commit": commit or None, "dirty": status.stdout.strip() != ""}


def git_commit() -> str | None:
    """The commit, with ``-dirty`` when tracked files differ from it; None outside git."""
    state = git_state()
    if not state["commit"]:
        return None
    return state["commit"] + ("-dirty" if state.get("dirty") else "")
