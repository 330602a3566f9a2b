"""Metric registry, in the manner of pyiqa's ``create_metric(name)``.

A metric is a class in one module of this package plus one line in ``METRICS``. It sees the
reference and the decoded video a batch of frames at a time (:class:`FrameBatch`, which
converts to RGB once and shares it) and returns one value per frame for each of its
``columns``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch

from ..video import Video

# registry name -> "module:Class" (imported on first use, so heavy metrics cost nothing until asked for)
METRICS: dict[str, str] = {
    "psnr": "bench.metrics.fidelity:PSNR",
    "psnr_rgb": "bench.metrics.fidelity:PSNRRGB",
    "ms_ssim_rgb": "bench.metrics.fidelity:MSSSIMRGB",
}


class MetricError(ValueError):
    """Inputs a metric cannot compare, or values it cannot trust; the message says which."""


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (e.g. missing weights); the message says how to fix it."""


class UnknownMetric(KeyError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        cols = sorted(c for n in METRICS for c in metric_class(n).columns)
        return f"unknown metric {self.name!r}; metrics: {', '.join(METRICS)}; columns: {', '.join(cols)}"


class FrameBatch:
    """Frames [start, stop) of a reference and a distorted video; RGB computed once, on demand."""

    def __init__(self, ref: Video, dist: Video, start: int, stop: int, device: str | torch.device = "cpu", buffers: tuple[np.ndarray, np.ndarray] | None = None):
        self.ref, self.dist = ref[start:stop], dist[start:stop]
        self.start, self.stop, self.device = start, stop, torch.device(device)
        self.bit_depth = ref.bit_depth
        # reused between batches by measure(); metrics must not keep the RGB tensors
        self._buffers = buffers if self.device.type == "cpu" else None

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


class Metric(ABC):
    name: ClassVar[str]
    #: result columns, one value per frame each
    columns: ClassVar[tuple[str, ...]]

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def check(self) -> None:
        """Raise MetricUnavailable if the metric cannot run (missing weights, binary)."""

    def unsupported(self, width: int, height: int) -> str | None:
        """Why frames of this size cannot be measured, or None (checked at plan time)."""
        return None

    @abstractmethod
    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        """One value per frame of the batch for each column."""

    def describe(self) -> dict[str, Any]:
        return {"metric": self.name, "columns": list(self.columns), "class": f"{type(self).__module__}.{type(self).__qualname__}"}


def metric_class(name: str) -> type[Metric]:
    try:
        module, _, attr = METRICS[name].partition(":")
    except KeyError:
        raise UnknownMetric(name) from None
    return getattr(importlib.import_module(module), attr)


def create_metric(name: str, **kwargs: Any) -> Metric:
    return metric_class(name)(**kwargs)


def resolve_metrics(names: list[str]) -> list[str]:
    """Registry names for a list of registry names or column names (``psnr_y`` -> ``psnr``)."""
    by_column = {c: n for n in METRICS for c in metric_class(n).columns}
    out: list[str] = []
    for name in names:
        key = name if name in METRICS else by_column.get(name)
        if key is None:
            raise UnknownMetric(name)
        if key not in out:
            out.append(key)
    return out


def default_metrics() -> list[str]:
    return list(METRICS)


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
    shape = (min(batch, ref.frames), 3, ref.height, ref.width)
    buffers = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    for start in range(0, ref.frames, batch):
        fb = FrameBatch(ref, dist, start, min(start + batch, ref.frames), device, buffers)
        for m in metrics:
            for col, v in m.compute(fb).items():
                values[col].append(np.asarray(v, dtype=np.float64).reshape(-1))
    out = {c: np.concatenate(v) if v else np.empty(0) for c, v in values.items()}
    bad = {c: np.flatnonzero(~np.isfinite(v)).tolist() for c, v in out.items() if not np.isfinite(v).all()}
    if bad:
        detail = "; ".join(f"{c} at frames {idx[:10]}" for c, idx in bad.items())
        raise MetricError(f"non-finite metric values ({detail}); the job is recorded as failed rather than averaged")
    return out
