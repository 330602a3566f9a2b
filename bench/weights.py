"""Where pretrained weights are looked for, and what is missing.

Nothing is downloaded at run time: offline cluster nodes (and this project's CI) cannot reach
the hosts, and a download failing deep inside a sweep wastes the sweep. Weights are looked
for, in order, in
1. ``--weights DIR`` (or ``$BENCH_WEIGHTS``), flat or in ``hub/checkpoints/``;
2. torch's hub cache, ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``),
   where torchvision and lpips would have put them;
and loaded with ``torch.load(weights_only=True)``. A metric or model whose weights are missing
fails at plan time with the message of :func:`missing_message`; it never runs with random
weights unless a test asks for that explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .store import file_digest

ENV = "BENCH_WEIGHTS"


class WeightsMissing(RuntimeError):
    """A needed weights file is not present; the message names it and where to put it."""


@dataclass(frozen=True)
class WeightFile:
    filename: str
    what: str
    url: str
    used_by: tuple[str, ...]
    hub_subdir: str = "checkpoints"  # under torch's hub dir: torchvision's place, or pyiqa's "clip"


WEIGHTS: dict[str, WeightFile] = {
    "alexnet": WeightFile(
        "alexnet-owt-7be5be79.pth",
        "torchvision AlexNet (LPIPS v0.1 backbone)",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        ("lpips",),
    ),
    "vgg16": WeightFile(
        "vgg16-397923af.pth",
        "torchvision VGG16 (DISTS backbone)",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        ("dists",),
    ),
    "raft_large": WeightFile(
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "torchvision RAFT-large (Ewarp flow, --metrics ewarp:flow=raft)",
        "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        ("ewarp",),
    ),
    "raft_small": WeightFile(
        "raft_small_C_T_V2-01064c6d.pth",
        "torchvision RAFT-small (Ewarp flow, --metrics ewarp:flow=raft_small)",
        "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
        ("ewarp",),
    ),
    "clip_rn50": WeightFile(
        "RN50.pt",
        "OpenAI CLIP RN50 (CLIPIQA, through pyiqa)",
        "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
        ("clipiqa",),
        hub_subdir="clip",
    ),
}


def hub_dir() -> Path:
    try:
        import torch.hub

        return Path(torch.hub.get_dir())
    except Exception:  # torch is a dependency; be robust anyway
        return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"


def search_dirs(subdir: str = "checkpoints") -> list[Path]:
    dirs = []
    extra = os.environ.get(ENV)
    if extra:
        base = Path(extra).expanduser()
        dirs += [base, base / "hub" / subdir]
    dirs.append(hub_dir() / subdir)
    return dirs


def find_file(filename: str, subdir: str = "checkpoints") -> Path | None:
    """A weights file by name in the search folders (codec plugins use this for their own files)."""
    for d in search_dirs(subdir):
        p = d / filename
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


def locate(key: str) -> Path | None:
    wf = WEIGHTS[key]
    return find_file(wf.filename, wf.hub_subdir)


def file_missing_message(filename: str, what: str, url: str, subdir: str = "checkpoints") -> str:
    dirs = search_dirs(subdir)
    return (
        f"{what} weights not found: {filename}. Looked in: {', '.join(map(str, dirs))}. "
        f"On a machine with internet, download {url} and put it in {dirs[-1]} "
        f"(torch's hub cache; TORCH_HOME moves it) or in a folder you pass as --weights DIR / {ENV}=DIR. "
        f"`python -m bench doctor` lists every weights file."
    )


def missing_message(key: str) -> str:
    wf = WEIGHTS[key]
    return file_missing_message(wf.filename, wf.what, wf.url, wf.hub_subdir)


def require(key: str) -> Path:
    path = locate(key)
    if path is None:
        raise WeightsMissing(missing_message(key))
    return path


def fingerprint(key: str) -> dict[str, str | None]:
    """Which file a registered weights key resolves to here, and its hash (None: missing)."""
    path = locate(key)
    return {"file": WEIGHTS[key].filename, "sha256": file_digest(path) if path else None}


def load_state_dict(key: str):
    import torch

    return torch.load(require(key), map_location="cpu", weights_only=True)


def doctor_rows() -> list[dict]:
    rows = []
    for key, wf in WEIGHTS.items():
        path = locate(key)
        rows.append(
            {
                "key": key,
                "file": wf.filename,
                "what": wf.what,
                "used_by": ", ".join(wf.used_by),
                "present": path is not None,
                "path": str(path) if path else "",
                "url": wf.url,
            }
        )
    return rows
