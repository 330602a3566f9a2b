"""Metric registry, in the manner of pyiqa's ``create_metric(name)``.

A metric is a class in one module plus one registration: a line in ``METRICS`` here, or, from
another package, an entry point in the ``bench.metrics`` group::

    [project.entry-points."bench.metrics"]
    mymetric = "mypackage.mymetric:MyMetric"

It sees the reference and the decoded video a batch of frames at a time (:class:`FrameBatch`,
which converts to RGB once and shares it) and returns one value per frame for each of its
columns. Each column is declared once, as a :class:`Column` (label, unit, direction, drift
tolerance, whether it is perceptual); BD tables, plots, imports and drift checks read only
that.
"""

from __future__ import annotations

import functools
import importlib
from abc import ABC
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch

from .. import plugins, progress
from ..spec import parse_spec
from ..video import Video

# registry name -> "module:Class" (imported on first use, so heavy metrics cost nothing until asked for)
METRICS: dict[str, str] = {
    "psnr": "bench.metrics.fidelity:PSNR",
    "psnr_rgb": "bench.metrics.fidelity:PSNRRGB",
    "ms_ssim_rgb": "bench.metrics.fidelity:MSSSIMRGB",
    "lpips": "bench.metrics.perceptual:LPIPS",
    "dists": "bench.metrics.perceptual:DISTS",
    "clipiqa": "bench.metrics.perceptual:CLIPIQA",
    "vmaf": "bench.metrics.vmaf:VMAF",
    "ewarp": "bench.metrics.temporal:Ewarp",
}


ENTRY_POINT_GROUP = "bench.metrics"


@dataclass(frozen=True)
class Column:
    """One result column: what it is called on an axis, which way is better, how far it may
    move in a drift check (``{"abs": x}`` and/or ``{"rel": r}``; None: not checked)."""

    name: str
    label: str
    unit: str = ""
    higher_is_better: bool = True
    tolerance: dict[str, float] | None = None
    perceptual: bool = False
    #: drawn by default in ``bench plot`` (the per-plane PSNRs are not)
    plot: bool = True
    aliases: tuple[str, ...] = field(default=())

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


#: the rate columns every job has, declared like metric columns (drift tolerances, labels)
RATE_COLUMNS: tuple[Column, ...] = (
    Column("bpp", "bpp", "bits per pixel", higher_is_better=False, tolerance={"rel": 0.005}, plot=False),
    Column("bytes", "bytes", "bytes", higher_is_better=False, tolerance={"rel": 0.005}, plot=False),
)


#: columns other tools measure that no metric here computes yet, so that their imported values
#: keep their own name (and plots, BD tables and imports know them): DCVC's YUV tests report
#: MS-SSIM per 4:2:0 plane and their (6Y + U + V)/8 mean, which is not ``ms_ssim_rgb``.
IMPORTED_COLUMNS: tuple[Column, ...] = (
    Column("ms_ssim_y", "MS-SSIM-Y", plot=False, aliases=("msssim_y", "ms-ssim-y")),
    Column("ms_ssim_u", "MS-SSIM-U", plot=False, aliases=("msssim_u", "ms-ssim-u")),
    Column("ms_ssim_v", "MS-SSIM-V", plot=False, aliases=("msssim_v", "ms-ssim-v")),
    Column("ms_ssim_yuv", "MS-SSIM-YUV (6:1:1)", aliases=("msssim_yuv", "ms-ssim-yuv")),
)


class MetricError(ValueError):
    """Inputs a metric cannot compare, or values it cannot trust; the message says which."""


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (e.g. missing weights); the message says how to fix it."""


class UnknownMetric(KeyError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        cols = sorted(c for n in metric_names() for c in metric_class(n).columns)
        return f"unknown metric {self.name!r}; metrics: {', '.join(metric_names())}; columns: {', '.join(cols)}"


class FrameBatch:
    """Frames [start, stop) of a reference and a distorted video; RGB computed once, on demand.

    ``ref_video``/``dist_video`` are the whole videos, for metrics on frame pairs:
    :meth:`frame_rgb` also gives frame start-1, which :func:`measure` carries over from the
    previous batch instead of converting it again."""

    def __init__(
        self,
        ref: Video,
        dist: Video,
        start: int,
        stop: int,
        device: str | torch.device = "cpu",
        buffers: tuple[np.ndarray, np.ndarray] | None = None,
        carry: dict[str, tuple[int, torch.Tensor]] | None = None,
    ):
        self.ref_video, self.dist_video = ref, dist
        self.ref, self.dist = ref[start:stop], dist[start:stop]
        self.start, self.stop, self.device = start, stop, torch.device(device)
        self.bit_depth = ref.bit_depth
        # reused between batches by measure(); metrics must not keep the RGB tensors
        self._buffers = buffers if self.device.type == "cpu" else None
        self._carry = carry if carry is not None else {}

    def _rgb(self, video: Video, i: int) -> torch.Tensor:
        out = self._buffers[i][: len(self)] if self._buffers is not None else None
        return video.rgb(device=self.device, out=out)

    def __len__(self) -> int:
        return self.stop - self.start

    @cached_property
    def ref_rgb(self) -> torch.Tensor:
        return self._rgb(self.ref, 0)

    @cached_property
    def dist_rgb(self) -> torch.Tensor:
        return self._rgb(self.dist, 1)

    def frame_rgb(self, which: str, t: int) -> torch.Tensor:
        """Frame t of ``"ref"`` or ``"dist"`` as (1, 3, H, W) RGB, for t in [start-1, stop)."""
        if self.start <= t < self.stop:
            rgb = self.ref_rgb if which == "ref" else self.dist_rgb
            return rgb[t - self.start : t - self.start + 1]
        if t != self.start - 1 or t < 0:
            raise IndexError(f"frame {t} is not in this batch ({self.start}..{self.stop - 1}) nor the one before it")
        kept = self._carry.get(which)
        if kept is not None and kept[0] == t:
            return kept[1]
        video = self.ref_video if which == "ref" else self.dist_video
        return video.rgb(t, t + 1, device=self.device)

    def keep_last(self) -> None:
        """Copy the last frame's RGB, where it was converted, for the next batch's frame_rgb()."""
        for which in ("ref", "dist"):
            rgb = self.__dict__.get(f"{which}_rgb")
            if rgb is None:
                continue
            kept = self._carry.get(which)
            dst = kept[1] if kept is not None and kept[1].shape == rgb[-1:].shape and kept[1].device == rgb.device else torch.empty_like(rgb[-1:])
            self._carry[which] = (self.stop - 1, dst.copy_(rgb[-1:]))


class Metric(ABC):
    name: ClassVar[str]
    #: result columns, one value per frame each, with what a report needs to know of them
    column_info: ClassVar[tuple[Column, ...]]
    #: their names (derived from column_info)
    columns: ClassVar[tuple[str, ...]]
    #: metrics that need the whole sequence at once (VMAF's temporal feature) implement
    #: compute_sequence() instead of compute()
    sequence_level: ClassVar[bool] = False
    #: columns measured on frame pairs (t-1, t): frame 0 has no value (NaN), by definition.
    #: A per-frame metric with pair columns gets frame start-1 from FrameBatch.frame_rgb().
    pair_columns: ClassVar[tuple[str, ...]] = ()
    #: options naming a binary or a file that runs or loads (a golden set may not set them)
    location_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "column_info" in cls.__dict__:
            cls.columns = tuple(c.name for c in cls.column_info)

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def check(self) -> None:  # noqa: B027 - optional hook: most metrics need nothing
        """Raise MetricUnavailable if the metric cannot run (missing weights, binary)."""

    def unsupported(self, width: int, height: int) -> str | None:
        """Why frames of this size cannot be measured, or None (checked at plan time)."""
        return None

    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        """One value per frame of the batch for each column."""
        raise NotImplementedError

    def compute_sequence(self, ref: Video, dist: Video) -> dict[str, np.ndarray]:
        """One value per frame of the sequence for each column (sequence-level metrics)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"metric": self.name, "columns": list(self.columns), "class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def identity(self) -> dict[str, Any]:
        """The resolved settings that change this metric's values (which flow network, which
        weights file and its hash, ...): part of a job's cache key. Must not load networks."""
        return self.describe()


def _registry() -> dict[str, str]:
    """Built-in metrics, then those of other packages' ``bench.metrics`` entry points."""
    out = dict(METRICS)
    for ep in plugins.group(ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep.value)
    return out


def metric_names() -> list[str]:
    return list(_registry())


def metric_class(name: str) -> type[Metric]:
    try:
        module, _, attr = _registry()[name].partition(":")
    except KeyError:
        raise UnknownMetric(name) from None
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _columns() -> dict[str, Column]:
    out = {c.name: c for c in RATE_COLUMNS}
    for name in metric_names():
        try:
            cls = metric_class(name)
        except ImportError:  # a plugin that cannot load contributes no column
            continue
        for c in cls.column_info:
            out.setdefault(c.name, c)
    for c in IMPORTED_COLUMNS:
        out.setdefault(c.name, c)
    return out


def columns() -> dict[str, Column]:
    """Every known column (rate columns first, then each metric's, in registry order, then
    the imported-only ones)."""
    return dict(_columns())


def column(name: str) -> Column | None:
    return _columns().get(name)


def lower_is_better(name: str) -> bool:
    c = column(name)
    return c is not None and not c.higher_is_better


def metric_columns() -> list[str]:
    """The metric columns (no rate columns), in registry order."""
    rate = {c.name for c in RATE_COLUMNS}
    return [n for n in _columns() if n not in rate]


def perceptual_columns() -> list[str]:
    return [n for n, c in _columns().items() if c.perceptual]


def plot_columns() -> list[str]:
    return [n for n, c in _columns().items() if c.plot]


def default_tolerances() -> dict[str, dict[str, float]]:
    return {n: dict(c.tolerance) for n, c in _columns().items() if c.tolerance}


def create_metric(spec: str, **kwargs: Any) -> Metric:
    """``create_metric("lpips", device="cuda")`` or ``create_metric("ewarp:flow=dis")``."""
    name, options = parse_spec(spec)
    cls = metric_class(name)
    try:
        return cls(**options, **kwargs)
    except TypeError as e:
        raise TypeError(f"metric {name}: {e}") from None


def metric_name(spec: str) -> str:
    return spec.split(":", 1)[0]


def resolve_metrics(specs: list[str]) -> list[str]:
    """Metric specs for a list of registry names or column names (``psnr_y`` -> ``psnr``),
    keeping options (``ewarp:flow=dis``)."""
    names = metric_names()
    by_column = {c: n for n in names for c in metric_class(n).columns}
    out: list[str] = []
    for spec in specs:
        name, sep, opts = spec.partition(":")
        key = name if name in names else by_column.get(name)
        if key is None:
            raise UnknownMetric(name)
        full = key + sep + opts
        if name not in names and not opts and hasattr(metric_class(key), "spec_for_column"):
            full = metric_class(key).spec_for_column(name)  # a column that names options
        if all(metric_name(o) != key for o in out):
            out.append(full)
    return out


def default_metrics() -> list[str]:
    return metric_names()


def measure(ref: Video, dist: Video, metrics: list[Metric], *, batch: int = 4, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Per-frame values of every metric column for a reference/distorted pair.

    Raises MetricError if the two videos do not describe the same frames, or if a metric
    produced NaN or inf (a failure to report, never a number to average in).
    """
    if (ref.frames, ref.height, ref.width) != (dist.frames, dist.height, dist.width):
        raise MetricError(
            f"reference is {ref.frames} frames of {ref.width}x{ref.height} but the distorted video is "
            f"{dist.frames} frames of {dist.width}x{dist.height}: they cannot be compared frame by frame"
        )
    if ref.bit_depth != dist.bit_depth:
        raise MetricError(f"reference is {ref.bit_depth}-bit but the distorted video is {dist.bit_depth}-bit")
    values: dict[str, list[np.ndarray]] = {c: [] for m in metrics for c in m.columns}
    per_frame = [m for m in metrics if not m.sequence_level]
    # the progress of a job's metrics stage: a pass over the frames for the per-frame
    # metrics together, one for each sequence-level metric
    passes = bool(per_frame) + sum(m.sequence_level for m in metrics)
    with progress.stage("metrics", ref.frames * passes):
        _measure_frames(ref, dist, per_frame, values, batch, device)
        for m in metrics:
            if m.sequence_level:
                for col, v in m.compute_sequence(ref, dist).items():
                    values[col].append(np.asarray(v, dtype=np.float64).reshape(-1))
                progress.advance(ref.frames)
    return _checked(ref, metrics, values)


def _measure_frames(ref: Video, dist: Video, per_frame: list[Metric], values: dict[str, list[np.ndarray]], batch: int, device) -> None:
    """The per-frame metrics, a batch of frames at a time, each frame read once."""
    if per_frame:
        shape = (min(batch, ref.frames), 3, ref.height, ref.width)
        buffers = (np.empty(shape, np.float32), np.empty(shape, np.float32))
        pairs = any(m.pair_columns for m in per_frame)
        carry: dict = {}
        for start in range(0, ref.frames, batch):
            fb = FrameBatch(ref, dist, start, min(start + batch, ref.frames), device, buffers, carry)
            for m in per_frame:
                for col, v in m.compute(fb).items():
                    values[col].append(np.asarray(v, dtype=np.float64).reshape(-1))
            if pairs:
                fb.keep_last()
            # a long clip's frames are read once, never held (Video.release); from the frame
            # before the batch, which pair metrics read again
            first = max(start - 1, 0)
            ref[first : fb.stop].release()
            dist[first : fb.stop].release()
            progress.advance(fb.stop - start)


def _checked(ref: Video, metrics: list[Metric], values: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """One value per frame for every column, each finite (pair columns: from frame 1)."""
    out = {c: np.concatenate(v) if v else np.empty(0) for c, v in values.items()}
    bad_len = {c: len(v) for c, v in out.items() if len(v) != ref.frames}
    if bad_len:
        raise MetricError(f"metric columns with the wrong number of values (expected {ref.frames}): {bad_len}")
    pairs = {c for m in metrics for c in m.pair_columns}
    checked = {c: (v[1:] if c in pairs else v) for c, v in out.items()}
    bad = {c: (np.flatnonzero(~np.isfinite(v)) + (1 if c in pairs else 0)).tolist() for c, v in checked.items() if not np.isfinite(v).all()}
    if bad:
        detail = "; ".join(f"{c} at frames {idx[:10]}" for c, idx in bad.items())
        raise MetricError(f"non-finite metric values ({detail}); the job is recorded as failed rather than averaged")
    return out
