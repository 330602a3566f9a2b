"""Shared machinery of the ffmpeg-driven anchors (x265, vvenc, x264, svtav1).

Test conditions are those of learned-video-coding papers (DESIGN.md §5, §8): low delay (no
frame reordering), one intra frame unless ``intra_period`` says otherwise, scene-cut
detection off, a fixed QP per rate point with perceptual/adaptive quantisation off, raw
8-bit 4:2:0 in with its format and rate stated explicitly, and the *elementary stream* (no
container) as the bitstream whose size is the rate.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from bench import ffmpeg
from bench.codec import Codec, CodecUnavailable, Rate, check_intra_period
from bench.video import Video, iter_yuv_bytes, read_yuv

_PIX_FMT = {8: "yuv420p", 10: "yuv420p10le"}
_OUTPUT_STREAM = re.compile(r"Output #0.*?Video: rawvideo[^\n]*?, (\d+)x(\d+)[^\n]*?(\d+(?:\.\d+)?) fps", re.S)


class FFmpegAnchor(Codec):
    #: ffmpeg encoder, decoder and elementary-stream muxer
    encoder: ClassVar[str]
    decoder: ClassVar[str]
    muxer: ClassVar[str]
    #: bit depth the encoder is fed and the decoder returns; the harness converts to and
    #: from the source depth itself (left shift in, rounding shift out, as HM/VTM do)
    coding_bit_depth: ClassVar[int] = 8
    qp_range: ClassVar[tuple[int, int]] = (0, 51)
    default_preset: ClassVar[str | int | None] = None

    def __init__(
        self,
        *,
        ffmpeg: str | None = None,
        intra_period: int = -1,
        preset: str | int | None = None,
        threads: int | None = None,
    ):
        check_intra_period(intra_period)
        self.ffmpeg = ffmpeg
        self.intra_period = intra_period
        self.preset = self.default_preset if preset is None else preset
        self.threads = threads
        self._last_args: list[str] = []

    # --- what a subclass says -----------------------------------------------------------

    def encoder_args(self, qp: int) -> list[str]:
        """ffmpeg output options selecting the encoder and its low-delay fixed-QP set-up."""
        raise NotImplementedError

    # --- protocol -----------------------------------------------------------------------

    @property
    def exe(self) -> str:
        return ffmpeg.ffmpeg_exe(self.ffmpeg)

    def check(self) -> None:
        try:
            exe = self.exe
            for kind, name, has in (
                ("encoder", self.encoder, ffmpeg.has_encoder),
                ("decoder", self.decoder, ffmpeg.has_decoder),
            ):
                if not has(exe, name):
                    raise CodecUnavailable(ffmpeg.missing_component_message(exe, kind, name))
        except ffmpeg.FFmpegError as e:
            raise CodecUnavailable(str(e)) from e

    def encode(self, video: Video, rate: Rate, workdir: Path) -> Path:
        qp = self.parse_rate(rate)
        self.check()
        out = Path(workdir) / f"{self.name}_qp{qp}{self.extension}"
        depth = self.coding_bit_depth
        chunks = (
            b
            for s in range(0, video.frames, 8)
            for b in iter_yuv_bytes(video[s : s + 8].to_bit_depth(depth), batch=8)
        )
        args = [
            "-f", "rawvideo", "-pix_fmt", _PIX_FMT[depth], "-s", f"{video.width}x{video.height}",
            "-r", f"{video.fps:g}", "-i", "pipe:0",
            "-frames:v", str(video.frames),
            *self.encoder_args(qp),
            "-f", self.muxer, str(out),
        ]  # fmt: skip
        self._last_args = args
        ffmpeg.run(self.exe, args, log=out.with_name(out.name + ".enc.log"), stdin_chunks=chunks)
        if not out.exists() or out.stat().st_size == 0:
            raise ffmpeg.FFmpegError(f"{self.name}: ffmpeg wrote no bitstream to {out}")
        return out

    def decode(self, path: Path, workdir: Path) -> Video:
        path = Path(path)
        depth = self.coding_bit_depth
        out = Path(workdir) / f"{path.stem}.decoded.yuv"
        log = Path(workdir) / f"{path.name}.dec.log"
        ffmpeg.run(
            self.exe,
            ["-c:v", self.decoder, "-f", self.muxer, "-i", str(path), "-f", "rawvideo", "-pix_fmt", _PIX_FMT[depth], str(out)],
            log=log,
        )
        m = _OUTPUT_STREAM.search(log.read_text(errors="replace"))
        if not m:
            raise ffmpeg.FFmpegError(f"{self.name}: cannot read the decoded geometry from {log}")
        width, height, fps = int(m.group(1)), int(m.group(2)), float(m.group(3))
        return read_yuv(out, width, height, bit_depth=depth, fps=fps).to_bit_depth(8)

    def frame_sizes(self, path: Path) -> list[int]:
        """Bytes of each access unit, in decoding order (= display order in low delay)."""
        out = subprocess.run(
            [self.exe, "-hide_banner", "-nostdin", "-f", self.muxer, "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if out.returncode != 0:
            raise ffmpeg.FFmpegError(ffmpeg.tail(out.stderr))
        rows = [line.split(",") for line in out.stdout.splitlines() if line and not line.startswith("#")]
        return [int(r[4]) for r in rows if len(r) >= 5]

    def describe(self) -> dict[str, Any]:
        exe = self.exe
        return {
            **super().describe(),
            "ffmpeg": exe,
            "ffmpeg_version": ffmpeg.ffmpeg_version(exe),
            "encoder": self.encoder,
            "preset": self.preset,
            "intra_period": self.intra_period,
            "threads": self.threads,
            "coding_bit_depth": self.coding_bit_depth,
            "encoder_args_template": self.encoder_args(0 if self.qp_range[0] == 0 else self.qp_range[0]),
            "last_command": self._last_args,
        }
