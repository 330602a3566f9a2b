"""The codec contract and the codec registry.

A codec turns a :class:`~bench.video.Video` into a bitstream *file* at one rate point and
turns that file, alone, back into a Video. ``encode`` returns an :class:`EncodeResult`: the
file, and what the encoder knows about it (each access unit's bytes and frame type in
decoding order, its own reconstruction, its logs and command line). Everything else a codec
needs (preset, binary, model, device) is constructor configuration and goes into the manifest
via ``describe()``; ``identity()`` is the part of it that changes the numbers, and so the
results cache's key.

What a codec declares, so the harness can check a sweep before encoding anything:

- ``rate_spec``: the type and range of its rate points (:class:`RateSpec`);
- ``bit_depths``: the source bit depths it codes; ``decode(..., bit_depth=N)`` returns N-bit
  samples, as HM's ``-d N`` does. ``convert_bit_depth = True`` lets the harness convert other
  sources to the nearest depth it codes (left shift up, rounding shift down) and back;
- ``options()``: harness-wide command-line options it takes (a location such as ``--my-codec-dir``).

Codecs are found through the ``bench.codecs`` entry-point group, so ``bench`` itself imports
no codec: a new codec is one module plus one line in its package's ``pyproject.toml``::

    [project.entry-points."bench.codecs"]
    mycodec = "mypackage.mycodec:MyCodec"
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import plugins
from .spec import parse_spec
from .video import Video

ENTRY_POINT_GROUP = "bench.codecs"

Rate = int | float | str


class CodecError(RuntimeError):
    """A codec failed to encode or decode."""


class ToolFailed(CodecError):
    """A codec's external tool (HM's encoder, say) failed, leaving a log worth reading.

    The tool wrote its log in the job's scratch folder, which goes with the job, so the log
    travels in ``logs`` (name -> bytes, ``enc.log``), which the harness stores as
    ``bitstreams/<job id>.enc.log``. The message names the log where it is: ``where`` (the
    scratch path) until the harness calls :meth:`keep` with the job's id, the stored file after."""

    def __init__(self, summary: str, logs: dict[str, bytes], *, where: str, detail: str = ""):
        super().__init__(summary)
        self.summary, self.logs, self.where, self.detail = summary, dict(logs), where, detail

    def keep(self, job_id: str, folder: str) -> dict[str, bytes]:
        """The logs by their name in ``folder`` (the store's, where the driver writes them);
        the message names those now."""
        files = {f"{job_id}.{suffix}": data for suffix, data in self.logs.items()}
        self.where = ", ".join(f"{folder}/{name}" for name in files)
        return files

    def __str__(self) -> str:
        return f"{self.summary}; its log: {self.where}" + (f"; its last lines:\n{self.detail}" if self.detail else "")


class CodecUnavailable(CodecError):
    """A codec cannot run on this machine (missing binary, encoder, weights)."""


class UnknownCodec(KeyError):
    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown codec {self.name!r}; registered codecs: {', '.join(sorted(self.known)) or '(none)'}"


class RateError(ValueError):
    """A rate point that the codec does not accept."""


class BitDepthError(ValueError):
    """A source bit depth that the codec cannot code."""


@dataclass(frozen=True)
class Requirement:
    """One thing a codec needs on this machine (a binary, a checkout, a weights file), for
    ``bench codecs`` and ``bench doctor``: whether it is there, and how to get it if not."""

    what: str
    present: bool
    where: str = ""  # where it was found, or where it was looked for
    fix: str = ""  # how to provide it


def check_intra_period(intra_period: int) -> int:
    """-1 (one intra frame) or a positive period; anything else is a ValueError."""
    if intra_period == 0 or intra_period < -1:
        raise ValueError(f"intra_period must be -1 (one intra frame) or a positive number, got {intra_period}")
    return intra_period


def is_intra_frame(index: int, intra_period: int) -> bool:
    """Whether frame ``index`` is intra coded. -1 is handled explicitly: ``i % -1 == 0`` is
    always true in Python, which silently turned one-intra-frame runs all-intra."""
    return index == 0 if intra_period == -1 else index % intra_period == 0


@dataclass(frozen=True)
class RateSpec:
    """What a codec's rate points are: ``int`` (a QP, a quality index), ``float`` (a λ, a
    quality), or one of ``choices`` (named models). ``low``/``high`` bound the numeric kinds,
    inclusive; ``exclusive_low`` makes ``low`` itself invalid (λ > 0)."""

    kind: str = "int"  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    choices: tuple[Rate, ...] = ()
    exclusive_low: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "choice"):
            raise ValueError(f"RateSpec kind must be int, float or choice, got {self.kind!r}")

    def describe(self) -> str:
        if self.kind == "choice" or self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        lo = "" if self.low is None else f"{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in {lo}..{hi}" if not self.exclusive_low else f"{noun} in ({lo}, {hi}]"
        if self.low is not None:
            return f"{noun} {'>' if self.exclusive_low else '>='} {lo}"
        if self.high is not None:
            return f"{noun} <= {hi}"
        return noun

    def parse(self, text: str | Rate, what: str) -> Rate:
        """``text`` as a rate value; RateError naming the valid range if it is not one."""
        valid = self.describe()
        if self.kind == "choice":
            for c in self.choices:
                if str(c) == str(text).strip():
                    return c
            raise RateError(f"{what} {text!r} is not valid: it must be {valid}")
        if isinstance(text, bool):
            raise RateError(f"{what} {text!r} is not valid: it must be {valid}")
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise RateError(f"{what} {text!r} is not a number: it must be {valid}") from None
        if not math.isfinite(value):
            raise RateError(f"{what} {text!r} is not valid: it must be {valid}")
        if self.kind == "int":
            if value != int(value):
                raise RateError(f"{what} {text!r} is not an integer: it must be {valid}")
            value = int(value)
        too_low = self.low is not None and (value <= self.low if self.exclusive_low else value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high:
            raise RateError(f"{what} {text!r} is out of range: it must be {valid}")
        if self.choices and value not in self.choices:
            raise RateError(f"{what} {text!r} is not valid: it must be one of {', '.join(map(str, self.choices))}")
        return value


@dataclass(frozen=True)
class CodecOption:
    """A harness-wide command-line option that a codec plugin contributes (``--my-codec-dir``):
    ``bench`` adds it to ``run``, ``codecs`` and ``doctor`` and passes it to every codec of the
    sweep that takes ``dest`` as a constructor option."""

    flag: str
    dest: str
    help: str


@dataclass
class EncodeResult:
    """What ``encode`` produced.

    ``frame_bytes`` and ``frame_types`` are per access unit in *decoding* order (``I``, ``P``,
    ``B``, or a codec's own letter, e.g. ``MV``); ``display_index`` maps each to the frame it
    shows (None: decoding order is display order). Bytes the frames do not account for
    (parameter sets, container headers) belong to the first frame. ``frame_qps`` where the
    encoder reports one. ``reconstruction`` is the encoder's own decoded video, which the
    harness compares with the decoder's output.
    """

    bitstream: Path
    frame_bytes: list[int] | None = None
    frame_types: list[str] | None = None
    frame_qps: list[float] | None = None
    display_index: list[int] | None = None
    reconstruction: Video | None = None
    logs: list[Path] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    tools: dict[str, Any] = field(default_factory=dict)
    #: work this instance's decoder will not do again because the encoder did it (Diff-SIT's
    #: ODFTE refinement in a sweep): the job's decode time and kMAC/px leave it out, and its
    #: record and the report say so; empty for a decoder that does all of its work
    decode_leaves_out: str = ""

    def __post_init__(self) -> None:
        self.bitstream = Path(self.bitstream)

    def per_frame(self, frames: int) -> dict[str, list]:
        """Bits, type and QP per frame in display order, bits summing to 8 x file size;
        CodecError if the lists do not describe ``frames`` frames."""
        size = self.bitstream.stat().st_size
        if self.frame_bytes is None:
            raise CodecError(f"{self.bitstream.name}: the codec reported no per-frame sizes")
        n = len(self.frame_bytes)
        for name, values in (("frame_types", self.frame_types), ("frame_qps", self.frame_qps), ("display_index", self.display_index)):
            if values is not None and len(values) != n:
                raise CodecError(f"{self.bitstream.name}: {n} frame sizes but {len(values)} {name}")
        if n != frames:
            raise CodecError(f"{self.bitstream.name}: the codec reported {n} access units for {frames} frames")
        total = sum(self.frame_bytes)
        if total > size:
            raise CodecError(f"{self.bitstream.name}: frame sizes add up to {total} bytes, more than the file's {size}")
        bits = [8 * b for b in self.frame_bytes]
        bits[0] += 8 * (size - total)
        order = self.display_index if self.display_index is not None else list(range(n))
        if sorted(order) != list(range(n)):
            raise CodecError(f"{self.bitstream.name}: display_index is not a permutation of 0..{n - 1}")
        out = {"bits": [0] * n, "frame_type": [""] * n, "qp": [math.nan] * n}
        for k, shown in enumerate(order):
            out["bits"][shown] = bits[k]
            out["frame_type"][shown] = self.frame_types[k] if self.frame_types is not None else ""
            out["qp"][shown] = float(self.frame_qps[k]) if self.frame_qps is not None else math.nan
        return out


@dataclass(frozen=True)
class Resources:
    """What one job of a codec needs: a GPU (one, whole), CPU threads, and optionally memory.

    Executors schedule by it: the local one runs at most one GPU job per device
    (``--gpus``), Ray asks for ``num_gpus``/``num_cpus``, Slurm for ``--gpus-per-task`` and
    ``--cpus-per-task``."""

    gpu: bool = False
    cpus: int = 1
    memory_gb: float | None = None
    #: run in a worker process even at ``--jobs 1``: a crash in the codec's native code (a
    #: C++ extension in the calling process) then costs this job only
    isolate: bool = False

    @property
    def kind(self) -> str:
        """The resource class jobs are grouped by (one Slurm array each)."""
        return f"{'gpu' if self.gpu else 'cpu'}-c{self.cpus}" + (f"-m{self.memory_gb:g}" if self.memory_gb else "")


class Codec(ABC):
    """Base class of every codec plugin."""

    #: registry name, as in the entry point
    name: ClassVar[str]
    #: whether encode/decode run native code inside this Python process (a C++ entropy
    #: coder, CUDA ops): its jobs then run in a worker process, so a crash costs one job
    native_code: ClassVar[bool] = False
    #: whether it runs torch networks: its jobs count MACs per pixel (bench.complexity)
    learned: ClassVar[bool] = False
    #: what a rate point means for this codec (``qp``, ``lambda``, ``quality``)
    rate_name: ClassVar[str] = "qp"
    #: the type and range of rate points (checked by parse_rate at plan time)
    rate_spec: ClassVar[RateSpec] = RateSpec("int")
    #: rate points swept when ``--rates`` is not given, in order of decreasing rate
    default_rates: ClassVar[tuple[Rate, ...]] = ()
    #: bitstream file extension
    extension: ClassVar[str] = ".bin"
    #: source bit depths the codec codes (4:2:0); decode(bit_depth=N) returns N-bit samples
    bit_depths: ClassVar[tuple[int, ...]] = (8,)
    #: whether the harness may convert a source of another depth to the nearest of
    #: ``bit_depths`` (and the decoded video back); else such a source is refused at plan time
    convert_bit_depth: ClassVar[bool] = False
    #: (colour, marker) in plots; None: derived from the name
    plot_style: ClassVar[tuple[str, str] | None] = None
    #: a standard anchor of the field (the HEVC and VVC encoders): `bench report` compares
    #: every other codec with it by default, and with published curves named after it
    #: (``HM16.25`` for ``hm``)
    anchor: ClassVar[bool] = False
    #: constructor options naming a file or folder whose contents run or load (a binary, a
    #: checkout, a weights file, an encoder cfg), beyond ``ffmpeg`` and the ``options()``
    #: dests: a golden set, being data, may not set them (:func:`location_options`)
    location_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def options(cls) -> list[CodecOption]:
        """Harness-wide command-line options this codec contributes (locations, mostly)."""
        return []

    def parse_rate(self, text: str | Rate) -> Rate:
        """Turn a ``--rates`` item into this codec's rate value; RateError naming the valid range."""
        return self.rate_spec.parse(text, f"{self.name}: {self.rate_name}")

    def coded_bit_depth(self, source_bit_depth: int) -> int:
        """The depth this codec codes a source of ``source_bit_depth`` at; RateError-like
        BitDepthError when it cannot."""
        if source_bit_depth in self.bit_depths:
            return source_bit_depth
        if self.convert_bit_depth and self.bit_depths:
            return min(self.bit_depths, key=lambda d: (abs(d - source_bit_depth), -d))
        raise BitDepthError(
            f"{self.name} codes {'/'.join(map(str, self.bit_depths))}-bit 4:2:0 sources, not {source_bit_depth}-bit; "
            f"convert the source (e.g. ffmpeg -pix_fmt {'yuv420p' if 8 in self.bit_depths else 'yuv420p10le'}) or leave {self.name} out"
        )

    def check(self) -> None:
        """Raise CodecUnavailable, saying what is missing and how to fix it, if it cannot run."""
        missing = [r for r in self.requirements() if not r.present]
        if missing:
            r = missing[0]
            more = f"; and {len(missing) - 1} more missing (`python -m bench doctor` lists them)" if len(missing) > 1 else ""
            raise CodecUnavailable(f"{r.what} not found (looked in {r.where}): {r.fix}{more}")

    def requirements(self) -> list[Requirement]:
        """What this codec needs outside the Python packages, each marked present or not."""
        return []

    @abstractmethod
    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        """Encode ``video`` at ``rate`` into a file in ``workdir``."""

    @abstractmethod
    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        """Reconstruct the video from the bitstream file alone, with ``bit_depth``-bit samples
        (None: the depth the stream was coded at)."""

    def describe(self) -> dict[str, Any]:
        """Configuration and versions for the manifest."""
        return {"codec": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def take_counted_flops(self) -> int:
        """FLOPs a learned codec's last calls ran outside this process (a child process of its
        own), counted there the same way (bench.complexity), then reset; 0 for the others."""
        return 0

    def resources(self) -> Resources:
        """What one job needs. The default: a GPU when the codec runs on CUDA (its ``device``
        option), and as many CPUs as its ``threads`` option says (one when it says none); a
        codec with other needs overrides it."""
        threads = getattr(self, "threads", None)
        cpus = threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else 1
        return Resources(gpu=str(getattr(self, "device", "cpu")).startswith("cuda"), cpus=cpus, isolate=self.native_code)

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """The resolved settings that change what this codec produces: part of a job's cache
        key. Name every version and hash the numbers depend on (the binary's or library's
        version, the weights' SHA-256, the preset); leave out what does not change them (where
        a binary lies). No default: one that named only the codec would serve results made by
        an older binary as if they were this one's."""

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        """Constructor options under which ``bench.testing``'s contract runs this codec: its
        fastest settings that still code (a fast preset, random weights). JSON-able: a fresh
        process builds the codec from them to decode."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


_runtime: dict[str, type[Codec] | str] = {}


def register_codec(name: str, target: type[Codec] | str) -> None:
    """Register a codec class (or ``"module:Class"``) at run time, e.g. from a test."""
    _runtime[name] = target


def codec_names() -> list[str]:
    names = {ep.name for ep in plugins.group(ENTRY_POINT_GROUP)}
    return sorted(names | set(_runtime))


def codec_class(name: str) -> type[Codec]:
    target = _runtime.get(name)
    if target is None:
        eps = [ep for ep in plugins.group(ENTRY_POINT_GROUP) if ep.name == name]
        if not eps:
            raise UnknownCodec(name, codec_names())
        return eps[0].load()
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        mod = __import__(module, fromlist=[attr])
        return getattr(mod, attr)
    return target


def accepted_options(cls: type[Codec]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def create_codec(name: str, **options: Any) -> Codec:
    """Instantiate a registered codec; unknown options are an error naming the valid ones."""
    cls = codec_class(name)
    valid = accepted_options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"codec {name!r} has no option {', '.join(unknown)}; its options: {', '.join(valid) or '(none)'}")
    return cls(**options)


def parse_codec_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``mycodec:preset=slow:threads=1`` -> ("mycodec", {"preset": "slow", "threads": 1})."""
    return parse_spec(spec)


def location_options(cls: type[Codec] | None = None) -> set[str]:
    """Option names that say where a binary, code or weights are: ``ffmpeg``, every dest the
    registered plugins contribute, and ``cls``'s own ``location_options``."""
    own = set(cls.location_options) | {o.dest for o in cls.options()} if cls is not None else set()
    return {"ffmpeg", *(o.dest for o in contributed_options()), *own}


def contributed_options() -> list[CodecOption]:
    """Every option the registered codec plugins contribute, once per ``dest``; a plugin that
    fails to load contributes none (``bench codecs`` reports it)."""
    seen: dict[str, CodecOption] = {}
    for name in codec_names():
        try:
            cls = codec_class(name)
        except Exception:  # a broken plugin must not break the command line
            continue
        for opt in cls.options():
            seen.setdefault(opt.dest, opt)
    return list(seen.values())
