"""Video container, raw YUV 4:2:0 file I/O and BT.709 colour conversion.

Colour conversion follows DCVC-DC/FM, the convention learned-video-coding papers report in:
codes are divided by the peak value (full range, no 16..235 offset), chroma is upsampled by
corner-aligned bilinear interpolation (``scipy.ndimage.zoom(order=1)`` in DCVC, which is
``align_corners=True``), BT.709 coefficients, and RGB is clipped to [0, 1]. ffmpeg's default
conversion (BT.601, limited range) moves PSNR-RGB by more than 1 dB, so never use it here.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
# Rows R, G, B; columns Cb, Cr (after removing the 0.5 offset).
_CHROMA_TO_RGB = (
    (0.0, 2 - 2 * KR),
    (-KB * (2 - 2 * KB) / KG, -KR * (2 - 2 * KR) / KG),
    (2 - 2 * KB, 0.0),
)


class VideoError(ValueError):
    """A video file or array that cannot be read as described."""


class YuvSizeError(VideoError):
    def __init__(self, path: Path, frame_bytes: int, file_bytes: int, width: int, height: int, bit_depth: int):
        self.path, self.frame_bytes, self.file_bytes = path, frame_bytes, file_bytes
        super().__init__(
            f"{path}: {file_bytes} bytes is not a whole number of {width}x{height} "
            f"{bit_depth}-bit 4:2:0 frames ({frame_bytes} bytes each; "
            f"{file_bytes / frame_bytes:.3f} frames). Check the geometry and bit depth "
            f"(-s WxH, --bit-depth) or the file name (Name_WxH_FPS.yuv)."
        )


class SampleRangeError(VideoError):
    """Samples above the claimed bit depth's peak: the file is not what it was said to be."""


@dataclass
class Video:
    """A 4:2:0 video as three planes of integer samples.

    ``y`` is (frames, H, W); ``u`` and ``v`` are (frames, H/2, W/2). Arrays may be read-only
    memmaps: slicing a Video never copies samples.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bit_depth: int = 8
    fps: float = 25.0
    #: where the frames lie in a mapped file (read_yuv): the mapping, the byte offset of frame 0
    #: and the bytes of a frame, so that ``release`` can drop pages already used
    backing: tuple[Any, int, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.y.ndim != 3 or self.u.ndim != 3 or self.v.ndim != 3:
            raise VideoError("planes must be (frames, height, width) arrays")
        t, h, w = self.y.shape
        if h % 2 or w % 2:
            raise VideoError(f"4:2:0 needs even width and height, got {w}x{h}")
        if self.u.shape != (t, h // 2, w // 2) or self.v.shape != (t, h // 2, w // 2):
            raise VideoError(f"chroma planes {self.u.shape}, {self.v.shape} do not match luma {self.y.shape}")
        if self.bit_depth not in (8, 10, 12, 16):
            raise VideoError(f"unsupported bit depth {self.bit_depth}")

    @property
    def frames(self) -> int:
        return self.y.shape[0]

    @property
    def height(self) -> int:
        return self.y.shape[1]

    @property
    def width(self) -> int:
        return self.y.shape[2]

    @property
    def peak(self) -> int:
        return (1 << self.bit_depth) - 1

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: slice) -> Video:
        if not isinstance(index, slice):
            index = slice(index, index + 1)
        backing = self.backing
        if backing is not None:
            first, _, step = index.indices(self.frames)
            backing = (backing[0], backing[1] + first * backing[2], backing[2]) if step == 1 else None
        return replace(self, y=self.y[index], u=self.u[index], v=self.v[index], backing=backing)

    def release(self) -> None:
        """Drop this video's pages of its mapped file from the process (they stay in the page
        cache): a job that has read its frames once, chunk by chunk, then holds none of them.
        Without it a 1080p x 600-frame job holds both whole files in its RSS (3.7 GB)."""
        if self.backing is None:
            return
        mm, offset, fb = self.backing
        page = mmap.PAGESIZE
        start = offset // page * page
        stop = min(len(mm), offset + self.frames * fb)
        if stop > start and hasattr(mm, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, start, stop - start)

    def rgb(self, start: int = 0, stop: int | None = None, device: str | torch.device = "cpu", out: np.ndarray | None = None) -> torch.Tensor:
        """Frames [start, stop) as (N, 3, H, W) float32 RGB in [0, 1] (into ``out`` on CPU)."""
        part = self[start:stop]
        return yuv420_to_rgb(part.y, part.u, part.v, self.bit_depth, device=device, out=out)

    def to_bit_depth(self, bit_depth: int) -> Video:
        """Change bit depth the way HM/VTM do: left shift up, round-half-up right shift down."""
        if bit_depth == self.bit_depth:
            return self
        shift = bit_depth - self.bit_depth
        dtype = np.uint8 if bit_depth <= 8 else np.uint16

        def conv(p: np.ndarray) -> np.ndarray:
            p = p.astype(np.uint32)
            if shift > 0:
                return (p << shift).astype(dtype)
            s = -shift
            return np.minimum((p + (1 << (s - 1))) >> s, (1 << bit_depth) - 1).astype(dtype)

        return Video(conv(self.y), conv(self.u), conv(self.v), bit_depth=bit_depth, fps=self.fps)

    def copy(self) -> Video:
        return replace(self, y=np.array(self.y), u=np.array(self.u), v=np.array(self.v))


def sample_dtype(bit_depth: int) -> np.dtype:
    return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")


def frame_bytes(width: int, height: int, bit_depth: int = 8) -> int:
    return width * height * 3 // 2 * sample_dtype(bit_depth).itemsize


def count_frames(path: str | os.PathLike, width: int, height: int, bit_depth: int = 8) -> int:
    path = Path(path)
    size = path.stat().st_size
    fb = frame_bytes(width, height, bit_depth)
    if size == 0 or size % fb:
        raise YuvSizeError(path, fb, size, width, height, bit_depth)
    return size // fb


def read_yuv(
    path: str | os.PathLike,
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    fps: float = 25.0,
    start: int = 0,
    frames: int | None = None,
) -> Video:
    """Map frames [start, start+frames) of a planar 4:2:0 .yuv file.

    Above 8 bits the mapped frames are scanned once, a few at a time, and a sample above the
    depth's peak is refused (:class:`SampleRangeError`): an 8-bit file read as 10-bit gives
    16-bit words up to 65535, which would otherwise be coded and measured as if valid."""
    path = Path(path)
    if width % 2 or height % 2:
        raise VideoError(f"{path}: 4:2:0 needs even width and height, got {width}x{height}")
    total = count_frames(path, width, height, bit_depth)
    if start < 0 or start >= total:
        raise VideoError(f"{path}: start frame {start} is outside its {total} frames")
    stop = total if frames is None else start + frames
    if frames is not None and (frames <= 0 or stop > total):
        raise VideoError(f"{path}: asked for frames {start}..{stop - 1} but the file has {total}")
    dtype = sample_dtype(bit_depth)
    n = width * height
    whole = np.memmap(path, dtype=dtype, mode="r", shape=(total, n * 3 // 2))
    raw = whole[start:stop]
    y = raw[:, :n].reshape(-1, height, width)
    u = raw[:, n : n + n // 4].reshape(-1, height // 2, width // 2)
    v = raw[:, n + n // 4 :].reshape(-1, height // 2, width // 2)
    fb = n * 3 // 2 * dtype.itemsize
    video = Video(y, u, v, bit_depth=bit_depth, fps=fps, backing=(whole._mmap, start * fb, fb))
    if 8 < bit_depth < 8 * dtype.itemsize:
        _check_range(path, video, n, bit_depth, start)
    return video


def _check_range(path: Path, video: Video, n: int, bit_depth: int, start: int, batch: int = 8) -> None:
    peak = (1 << bit_depth) - 1
    for s in range(0, video.frames, batch):
        part = video[s : s + batch]
        chunk = np.concatenate([part.y.reshape(part.frames, -1), part.u.reshape(part.frames, -1), part.v.reshape(part.frames, -1)], axis=1)
        part.release()
        if chunk.max() <= peak:
            continue
        i = int(np.argmax(chunk.max(axis=1) > peak))
        planes = {"Y": chunk[i, :n], "U": chunk[i, n : n + n // 4], "V": chunk[i, n + n // 4 :]}
        plane, top = next((k, int(p.max())) for k, p in planes.items() if p.max() > peak)
        raise SampleRangeError(
            f"{path}: frame {start + s + i} holds the value {top} in its {plane} plane, above {peak}, the most a "
            f"{bit_depth}-bit sample can be. An 8-bit file read as --bit-depth {bit_depth}? Give the file's true depth "
            f"(--bit-depth, or a name like Name_WxH_FPS_8bit.yuv)."
        )


def iter_yuv_bytes(video: Video, batch: int = 8):
    """Planar frame bytes in file order, a few frames at a time (bounded memory for 1080p)."""
    dtype = sample_dtype(video.bit_depth)
    for s in range(0, video.frames, batch):
        part = video[s : s + batch]
        t = part.frames
        buf = np.concatenate([part.y.reshape(t, -1), part.u.reshape(t, -1), part.v.reshape(t, -1)], axis=1).astype(dtype, copy=False)
        part.release()
        yield buf.tobytes()


def write_yuv(video: Video, path: str | os.PathLike) -> Path:
    """Write planar 4:2:0 (16-bit little-endian samples above 8 bits), replacing atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in iter_yuv_bytes(video):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- colour -----------------------------------------------------------------------------


def _as_tensor(a, device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(device)
    a = np.ascontiguousarray(a)
    if a.dtype == np.uint16:  # torch has limited uint16 support; int32 holds every code
        a = a.astype(np.int32)
    return torch.from_numpy(a).to(device)


def yuv420_to_rgb(y, u, v, bit_depth: int = 8, *, device: str | torch.device = "cpu", out: np.ndarray | None = None) -> torch.Tensor:
    """4:2:0 planes (N,H,W)/(N,H/2,W/2) of integer codes -> (N,3,H,W) float32 RGB in [0, 1].

    On CPU, ``out`` may be a reusable float32 buffer that receives the result.
    """
    if torch.device(device).type == "cpu" and not any(isinstance(p, torch.Tensor) for p in (y, u, v)):
        # numba compiles (or loads from its cache) every kernel when _kernels is imported
        from ._kernels import yuv420_to_rgb_cpu

        return torch.from_numpy(yuv420_to_rgb_cpu(np.asarray(y), np.asarray(u), np.asarray(v), bit_depth, out))
    # Accelerators (and tensors already on one): the same arithmetic in torch.
    scale = 1.0 / ((1 << bit_depth) - 1)
    ty = _as_tensor(y, device)
    n, h, w = ty.shape
    luma = ty.to(torch.float32).mul_(scale).unsqueeze(1)
    chroma = torch.stack([_as_tensor(u, device), _as_tensor(v, device)], 1).to(torch.float32)
    chroma.mul_(scale).sub_(0.5)
    # Linear, so mix chroma into R,G,B offsets at quarter resolution and upsample those.
    mix = torch.tensor(_CHROMA_TO_RGB, dtype=torch.float32, device=luma.device)
    offsets = torch.einsum("kc,nchw->nkhw", mix, chroma)
    rgb = F.interpolate(offsets, size=(h, w), mode="bilinear", align_corners=True)
    return rgb.add_(luma).clamp_(0.0, 1.0)


def rgb_to_yuv420(rgb: torch.Tensor, bit_depth: int = 8, fps: float = 25.0) -> Video:
    """(N,3,H,W) RGB in [0, 1] -> 4:2:0 Video; chroma is the 2x2 mean, as DCVC does."""
    rgb = rgb.detach().to(torch.float32).cpu()
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2 - 2 * KB) + 0.5
    cr = (r - y) / (2 - 2 * KR) + 0.5
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth <= 8 else np.uint16

    def q(x: torch.Tensor) -> np.ndarray:
        return (x.clamp(0, 1) * peak).round().numpy().astype(dtype)

    return Video(q(y), q(chroma[:, 0]), q(chroma[:, 1]), bit_depth=bit_depth, fps=fps)


# --- padding ------------------------------------------------------------------------------


def padded_size(height: int, width: int, multiple: int = 64) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to_multiple(x: torch.Tensor, multiple: int = 64) -> torch.Tensor:
    """Replicate-pad (..., H, W) right and bottom up to a multiple, as learned codecs need."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) == (h, w):
        return x
    shape = x.shape
    flat = x.reshape(-1, 1, h, w)
    out = F.pad(flat.float() if not flat.is_floating_point() else flat, (0, pw - w, 0, ph - h), mode="replicate")
    return out.to(x.dtype).reshape(*shape[:-2], ph, pw)


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return x[..., :height, :width]


def pad_video(video: Video, multiple: int = 64) -> Video:
    ph, pw = padded_size(video.height, video.width, multiple)
    dh, dw = ph - video.height, pw - video.width
    if not (dh or dw):
        return video
    p = lambda a, d: np.pad(a, ((0, 0), (0, d[0]), (0, d[1])), mode="edge")
    return replace(video, y=p(video.y, (dh, dw)), u=p(video.u, (dh // 2, dw // 2)), v=p(video.v, (dh // 2, dw // 2)))


def crop_video(video: Video, height: int, width: int) -> Video:
    return replace(
        video,
        y=video.y[:, :height, :width],
        u=video.u[:, : height // 2, : width // 2],
        v=video.v[:, : height // 2, : width // 2],
    )


# --- file names -----------------------------------------------------------------------------

_GEOMETRY = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")
_FPS = re.compile(r"^(\d+(?:\.\d+)?)(?:fps|hz|p)?$", re.IGNORECASE)
_BITS = re.compile(r"^(8|10|12|16)(?:bit|b)$", re.IGNORECASE)


@dataclass(frozen=True)
class YuvName:
    width: int
    height: int
    fps: float | None
    bit_depth: int | None


def parse_yuv_name(name: str) -> YuvName | None:
    """Geometry from the usual raw-video naming conventions, or None if there is none.

    ``BQTerrace_1920x1080_60``, ``Beauty_1920x1080_120fps_420_8bit_YUV``,
    ``videoSRC01_1920x1080_30``, ``foo_1920x1080_50_10bit``, ``foo_1920x1080_yuv420p10le``.
    """
    stem = Path(name).name
    for ext in (".yuv", ".raw"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    m = _GEOMETRY.search(stem)
    if not m:
        return None
    width, height = int(m.group(1)), int(m.group(2))
    tokens = [t for t in re.split(r"[_\- ]", stem[m.end() :]) if t]
    fps = bit_depth = None
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low in ("420", "422", "444"):  # chroma format, not a frame rate
            continue
        if fps is None and i <= 1 and _FPS.match(low) and not _BITS.match(low):
            fps = float(_FPS.match(low).group(1))
        elif _BITS.match(low):
            bit_depth = int(_BITS.match(low).group(1))
        elif low.startswith("yuv420p"):
            bit_depth = int(low[7:9]) if low[7:9].isdigit() else 8
    return YuvName(width, height, fps, bit_depth)
