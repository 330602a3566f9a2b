"""Decoded videos kept beside the results (``bench run --save-decoded``), for visual checks.

A job's decoded video is stored losslessly as FFV1 in Matroska (``decoded/<job>.mkv``): the
exact samples the metrics measured, at the source's depth, in about half the raw size.
The job's record holds the MD5 of those samples (planar, 16-bit little endian above 8
bits, as ``bench.video.write_yuv`` lays them out), and :func:`load` checks it, so a file that
does not belong to the record is never shown as if it did.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from . import children, ffmpeg
from .store import ResultsStore
from .video import Video, frame_bytes, iter_yuv_bytes, sample_dtype

FOLDER = ResultsStore.DECODED  # the store's folder of decoded videos
EXTENSION = ".mkv"
#: what FFV1 typically keeps of the raw size on natural video (the plan's estimate of the
#: disk a sweep's decoded videos take; the raw size is the bound it is checked against)
TYPICAL_RATIO = 0.5


class DecodedError(ValueError):
    """A decoded video is missing, unreadable, or not the one its record describes."""


def _pix_fmt(bit_depth: int) -> str:
    return "yuv420p" if bit_depth == 8 else f"yuv420p{bit_depth}le"


def samples_md5(video: Video) -> str:
    h = hashlib.md5()
    for chunk in iter_yuv_bytes(video):
        h.update(chunk)
    return h.hexdigest()


def raw_bytes(width: int, height: int, frames: int, bit_depth: int) -> int:
    return frames * frame_bytes(width, height, bit_depth)


def save(video: Video, path: str | Path, exe: str | None = None) -> Path:
    """Write ``video`` losslessly (FFV1 level 3, every frame intra, slice CRCs on)."""
    exe = ffmpeg.ffmpeg_exe(exe)
    path = Path(path)
    args = [
        *("-f", "rawvideo", "-pix_fmt", _pix_fmt(video.bit_depth), "-s", f"{video.width}x{video.height}", "-r", f"{video.fps:g}", "-i", "-"),
        *("-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1", "-threads", "1", "-f", "matroska", str(path)),
    ]
    ffmpeg.run(exe, args, stdin_chunks=iter_yuv_bytes(video), log=path.with_name(path.name + ".log"))
    path.with_name(path.name + ".log").unlink()
    return path


def load(path: str | Path, width: int, height: int, bit_depth: int, frames: int, md5: str | None = None, exe: str | None = None) -> Video:
    """The decoded video at ``path``, checked against its geometry and ``md5``."""
    path = Path(path)
    if not path.is_file():
        raise DecodedError(f"decoded video {path} is missing (the results folder was copied without its decoded/ folder?)")
    exe = ffmpeg.ffmpeg_exe(exe)
    cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", _pix_fmt(bit_depth), "-"]
    proc = children.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise DecodedError(f"cannot read the decoded video {path}: {ffmpeg.tail(proc.stderr)}")
    fb = frame_bytes(width, height, bit_depth)
    if len(proc.stdout) != frames * fb:
        raise DecodedError(f"decoded video {path} holds {len(proc.stdout) / fb:g} frames of {width}x{height} at {bit_depth} bits; its record says {frames}")
    n = width * height
    raw = np.frombuffer(proc.stdout, dtype=sample_dtype(bit_depth)).reshape(frames, n * 3 // 2)
    video = Video(
        raw[:, :n].reshape(-1, height, width),
        raw[:, n : n + n // 4].reshape(-1, height // 2, width // 2),
        raw[:, n + n // 4 :].reshape(-1, height // 2, width // 2),
        bit_depth=bit_depth,
    )
    if md5 is not None and (got := samples_md5(video)) != md5:
        raise DecodedError(
            f"decoded video {path} is not the one its job measured (samples MD5 {got}, the record says {md5}); rerun the job with --save-decoded --force"
        )
    return video


def human(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if n >= size / 10:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def free_bytes(folder: str | Path) -> int:
    """Free space where ``folder`` is (or would be created)."""
    p = Path(folder).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free
