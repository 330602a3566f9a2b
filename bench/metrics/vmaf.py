"""VMAF through ffmpeg's libvmaf filter (a built-in model), per frame from its JSON log.

VMAF's motion feature looks at the previous frame, so the whole sequence goes through one
ffmpeg call. The filter takes the distorted video first and the reference second.

Options, each part of the metric's identity and its column name:
- ``model``: ``default`` (vmaf_v0.6.1, column ``vmaf``), ``neg`` (vmaf_v0.6.1neg, the
  "no enhancement gain" model for codec evaluation, ``vmaf_neg``), ``4k`` (vmaf_4k_v0.6.1, for
  2160p at 1.5H, ``vmaf_4k``).
- ``scale``: ``native`` (the default), or ``1080p``: both videos upscaled to 1920x1080 with
  bicubic filtering first, as Netflix's FAQ recommends for the default model, which assumes
  1080p viewed at 3H (column suffix ``_1080p``). A source larger than 1080p is not scaled down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import children, ffmpeg, scratch
from ..video import Video, write_yuv
from . import Column, Metric, MetricError, MetricUnavailable

MODELS = {"default": "vmaf_v0.6.1", "neg": "vmaf_v0.6.1neg", "4k": "vmaf_4k_v0.6.1"}
SCALES = {"native": None, "1080p": (1920, 1080)}


def column_name(model: str, scale: str) -> str:
    return "vmaf" + ("" if model == "default" else f"_{model}") + ("" if scale == "native" else f"_{scale}")


class VMAF(Metric):
    name = "vmaf"
    column_info = tuple(
        Column(
            column_name(m, s), "VMAF" + ("" if m == "default" else f" ({MODELS[m]})") + ("" if s == "native" else f", upscaled to {s}"), tolerance={"abs": 0.05}
        )
        for s in SCALES
        for m in MODELS
    )
    sequence_level = True
    location_options = ("ffmpeg_path",)

    def __init__(self, device="cpu", ffmpeg_path: str | None = None, threads: int | None = None, model: str = "default", scale: str = "native"):
        super().__init__(device)
        if model not in MODELS:
            raise ValueError(f"vmaf model {model!r}: one of {', '.join(MODELS)} ({', '.join(MODELS.values())})")
        if str(scale) not in SCALES:
            raise ValueError(f"vmaf scale {scale!r}: one of {', '.join(SCALES)}")
        self.ffmpeg_path = ffmpeg_path
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.model, self.scale = model, str(scale)
        self.columns = (column_name(self.model, self.scale),)

    def check(self) -> None:
        try:
            exe = ffmpeg.ffmpeg_exe(self.ffmpeg_path)
        except ffmpeg.FFmpegError as e:
            raise MetricUnavailable(str(e)) from e
        if not ffmpeg.has_filter(exe, "libvmaf"):
            raise MetricUnavailable(ffmpeg.missing_component_message(exe, "filter", "libvmaf"))

    def compute_sequence(self, ref: Video, dist: Video) -> dict[str, np.ndarray]:
        self.check()
        exe = ffmpeg.ffmpeg_exe(self.ffmpeg_path)
        pix = "yuv420p" if ref.bit_depth == 8 else "yuv420p10le"
        raw = ["-f", "rawvideo", "-pix_fmt", pix, "-s", f"{ref.width}x{ref.height}", "-r", f"{ref.fps:g}"]
        with scratch.job_dir("vmaf") as tmp:
            t = Path(tmp)
            write_yuv(ref, t / "ref.yuv")
            write_yuv(dist, t / "dist.yuv")
            # relative names: the filter-graph option syntax would need escaping for paths
            graph = self._graph(ref)
            cmd = [exe, "-hide_banner", "-nostdin", *raw, "-i", "dist.yuv", *raw, "-i", "ref.yuv", "-lavfi", graph, "-f", "null", "-"]
            out = children.run(cmd, cwd=t, capture_output=True, text=True)
            if out.returncode != 0:
                raise MetricError(f"ffmpeg libvmaf failed: {ffmpeg.tail(out.stderr)}")
            frames = json.loads((t / "vmaf.json").read_text())["frames"]
        vals = np.array([f["metrics"]["vmaf"] for f in sorted(frames, key=lambda f: f["frameNum"])], dtype=np.float64)
        return {self.columns[0]: vals}

    def _graph(self, ref: Video) -> str:
        vmaf = f"libvmaf=model=version={MODELS[self.model]}:log_fmt=json:log_path=vmaf.json:n_threads={self.threads}"
        size = SCALES[self.scale]
        if size is None or (ref.width >= size[0] and ref.height >= size[1]):
            return f"[0:v][1:v]{vmaf}"
        w, h = size
        return f"[0:v]scale={w}:{h}:flags=bicubic[d];[1:v]scale={w}:{h}:flags=bicubic[r];[d][r]{vmaf}"

    def identity(self):
        # scale only when used: results measured before the option existed keep their cache key
        scaled = {} if self.scale == "native" else {"scale": self.scale}
        return {"metric": self.name, "model": MODELS[self.model], **scaled, "ffmpeg": ffmpeg.ffmpeg_version(ffmpeg.ffmpeg_exe(self.ffmpeg_path))}

    @classmethod
    def spec_for_column(cls, col: str) -> str:
        """``--metrics vmaf_neg_1080p`` means the metric with those options, not the default."""
        for s in SCALES:
            for m in MODELS:
                if column_name(m, s) == col:
                    opts = ([] if m == "default" else [f"model={m}"]) + ([] if s == "native" else [f"scale={s}"])
                    return ":".join([cls.name, *opts])
        return cls.name

    def describe(self):
        return {**super().describe(), **self.identity()}
