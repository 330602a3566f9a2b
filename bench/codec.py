"""The codec protocol and the codec registry.

A codec turns a :class:`~bench.video.Video` into a bitstream *file* at one rate point and
turns that file, alone, back into a Video. Everything else a codec needs (preset, binary,
model, device) is constructor configuration and goes into the manifest via ``describe()``.

Codecs are found through the ``bench.codecs`` entry-point group, so ``bench`` itself imports
no codec: a new codec is one module plus one line in its package's ``pyproject.toml``::

    [project.entry-points."bench.codecs"]
    mycodec = "mypackage.mycodec:MyCodec"
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from .video import Video

ENTRY_POINT_GROUP = "bench.codecs"

Rate = int | float | str


class CodecError(RuntimeError):
    """A codec failed to encode or decode."""


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
    always true in Python, which silently turned one-intra-frame runs all-intra (DESIGN.md §8)."""
    return index == 0 if intra_period == -1 else index % intra_period == 0


class Codec(ABC):
    """Base class of every codec plugin."""

    #: registry name, e.g. ``x265``
    name: ClassVar[str]
    #: what a rate point means for this codec (``qp``, ``lambda``, ``quality``)
    rate_name: ClassVar[str] = "qp"
    #: rate points swept when ``--rates`` is not given, in order of decreasing rate
    default_rates: ClassVar[tuple[Rate, ...]] = ()
    #: bitstream file extension
    extension: ClassVar[str] = ".bin"
    #: the valid QPs of a QP-driven codec (checked by parse_rate); None: no range
    qp_range: ClassVar[tuple[int, int] | None] = None

    def parse_rate(self, text: str | Rate) -> Rate:
        """Turn a ``--rates`` item into this codec's rate value; raise RateError if invalid."""
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise RateError(f"{self.name}: rate {text!r} is not an integer {self.rate_name}") from None
        if self.qp_range is not None and not self.qp_range[0] <= value <= self.qp_range[1]:
            raise RateError(f"{self.name}: QP {value} is outside {self.qp_range[0]}..{self.qp_range[1]}")
        return value

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
    def encode(self, video: Video, rate: Rate, workdir: Path) -> Path:
        """Encode ``video`` at ``rate``; return the path of the bitstream file (in workdir)."""

    @abstractmethod
    def decode(self, path: Path, workdir: Path) -> Video:
        """Reconstruct the video from the bitstream file alone."""

    def encoder_reconstruction(self) -> Video | None:
        """The encoder's own reconstruction of the last encode, if it has one.

        The runner checks it against the decoder's output: a mismatch is an encoder/decoder
        drift bug, reported as a failed job.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Configuration and versions for the manifest."""
        return {"codec": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


_runtime: dict[str, type[Codec] | str] = {}


def register_codec(name: str, target: type[Codec] | str) -> None:
    """Register a codec class (or ``"module:Class"``) at run time, e.g. from a test."""
    _runtime[name] = target


def codec_names() -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | set(_runtime))


def codec_class(name: str) -> type[Codec]:
    target = _runtime.get(name)
    if target is None:
        eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
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
    """``x265:preset=slow:threads=1`` -> ("x265", {"preset": "slow", "threads": 1})."""
    from .spec import parse_spec

    return parse_spec(spec)
