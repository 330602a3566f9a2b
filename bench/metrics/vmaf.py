"""VMAF through ffmpeg's libvmaf filter (built-in model vmaf_v0.6.1), per frame from its JSON log.

VMAF's motion feature looks at the previous frame, so the whole sequence goes through one
ffmpeg call. The filter takes the distorted video first and the reference second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import children, ffmpeg, scratch
from ..video import Video, write_yuv
from . import Column, Metric, MetricError, MetricUnavailable

MODEL = "vmaf_v0.6.1"


class VMAF(Metric):
    name = "vmaf"
    column_info = (Column("vmaf", "VMAF", tolerance={"abs": 0.05}),)
    sequence_level = True
    location_options = ("ffmpeg_path",)

    def __init__(self, device="cpu", ffmpeg_path: str | None = None, threads: int | None = None):
        super().__init__(device)
        self.ffmpeg_path = ffmpeg_path
        self.threads = threads or max(1, os.cpu_count() or 1)

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
            graph = f"[0:v][1:v]libvmaf=model=version={MODEL}:log_fmt=json:log_path=vmaf.json:n_threads={self.threads}"
            cmd = [exe, "-hide_banner", "-nostdin", *raw, "-i", "dist.yuv", *raw, "-i", "ref.yuv", "-lavfi", graph, "-f", "null", "-"]
            out = children.run(cmd, cwd=t, capture_output=True, text=True)
            if out.returncode != 0:
                raise MetricError(f"ffmpeg libvmaf failed: {ffmpeg.tail(out.stderr)}")
            frames = json.loads((t / "vmaf.json").read_text())["frames"]
        vals = np.array([f["metrics"]["vmaf"] for f in sorted(frames, key=lambda f: f["frameNum"])], dtype=np.float64)
        return {"vmaf": vals}

    def identity(self):
        return {"metric": self.name, "model": MODEL, "ffmpeg": ffmpeg.ffmpeg_version(ffmpeg.ffmpeg_exe(self.ffmpeg_path))}

    def describe(self):
        return {**super().describe(), "model": MODEL, "ffmpeg": ffmpeg.ffmpeg_version(ffmpeg.ffmpeg_exe(self.ffmpeg_path))}
