"""Shared machinery of the ffmpeg-driven anchors (x265, vvenc, x264, svtav1).

Test conditions are those of learned-video-coding papers (docs/architecture.md, "Anchors"):
low delay (no frame reordering), one intra frame unless ``intra_period`` says otherwise,
scene-cut detection off, a fixed QP per rate point with perceptual/adaptive quantisation off,
raw 4:2:0 in (8 or 10 bits) with its format and rate stated explicitly, and the *elementary
stream* (no container) as the bitstream whose size is the rate. Per-frame sizes, picture types
and slice QPs are read back from the stream's own access units (``bench.ffmpeg.access_units``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from bench import ffmpeg
from bench.codec import Codec, CodecError, CodecUnavailable, EncodeResult, Rate, RateSpec, Requirement, check_intra_period
from bench.video import Video, iter_yuv_bytes, read_yuv

_PIX_FMT = {8: "yuv420p", 10: "yuv420p10le"}
_OUTPUT_STREAM = re.compile(r"Output #0.*?Video: rawvideo[^\n]*?(yuv420p(?:10le)?)[^\n]*?, (\d+)x(\d+)[^\n]*?(\d+(?:\.\d+)?) fps", re.S)
_DEPTH = {"yuv420p": 8, "yuv420p10le": 10}
_PARAM = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)=([A-Za-z0-9.,+_-]+)")


class FFmpegAnchor(Codec):
    #: ffmpeg encoder, decoder and elementary-stream muxer
    encoder: ClassVar[str]
    decoder: ClassVar[str]
    muxer: ClassVar[str]
    #: bit depth the encoder is fed; None: the source's. A codec coding at a fixed depth gets
    #: other sources shifted up on the way in and rounded back on the way out, as HM/VTM do.
    coding_bit_depth: ClassVar[int | None] = None
    bit_depths = (8, 10)
    rate_spec = RateSpec("int", 0, 51)
    default_preset: ClassVar[str | int | None] = None
    #: the encoder's fastest preset: what the reusable contract (bench.testing) runs
    fastest_preset: ClassVar[str | int | None] = None
    #: the ffmpeg option that takes the encoder's own ``key=value:...`` list (``params=``)
    params_option: ClassVar[str]
    #: keys ``params=`` may not set: what the harness sets for its test conditions, rate
    #: control, and informational output (``info``); compared case-insensitively
    reserved_params: ClassVar[frozenset[str]] = frozenset()
    #: keys that name files the encoder would read or write: never taken from a spec
    file_params: ClassVar[frozenset[str]] = frozenset()
    #: bitstream filter that drops what no decoder needs (an encoder's options SEI), so the
    #: rate counts picture data; None where the encoder writes none
    strip_bsf: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        ffmpeg: str | None = None,
        intra_period: int = -1,
        preset: str | int | None = None,
        threads: int | None = None,
        params: str | None = None,
    ):
        check_intra_period(intra_period)
        self.ffmpeg = ffmpeg
        self.intra_period = intra_period
        self.preset = self.default_preset if preset is None else preset
        self.threads = threads
        self.params = self.parse_params(params)

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        return {} if cls.fastest_preset is None else {"preset": cls.fastest_preset}

    @classmethod
    def parse_params(cls, text: str | None) -> str:
        """``params=`` checked: the encoder's ``key=value`` pairs, none that the harness sets
        (the test conditions would silently change), none naming a file, values of plain
        characters. Returns them joined as the encoder takes them."""
        if text is None or text == "":
            return ""
        pairs = []
        for item in str(text).split(":"):
            m = _PARAM.fullmatch(item)
            if not m:
                raise ValueError(f"{cls.name}: params item {item!r} is not key=value (key: letters, digits, - and _; value: letters, digits and . , + - _)")
            key = m.group(1).lower()
            if key in cls.reserved_params:
                raise ValueError(
                    f"{cls.name}: params may not set {m.group(1)}: the harness sets it (the rate point, the low-delay GOP, or no informational SEI)"
                )
            if key in cls.file_params:
                raise ValueError(f"{cls.name}: params may not set {m.group(1)}: it names a file the encoder would read or write")
            pairs.append(item)
        return ":".join(pairs)

    def _with_params(self, harness: str) -> str:
        return f"{harness}:{self.params}" if self.params else harness

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

    def requirements(self) -> list[Requirement]:
        """The ffmpeg and its encoder and decoder, declared so that a missing one is "not
        installed here" rather than a broken codec (``bench doctor``, ``bench.testing``)."""
        try:
            exe = self.exe
        except ffmpeg.FFmpegError as e:
            return [Requirement("an ffmpeg binary", False, str(self.ffmpeg or f"${ffmpeg.ENV_VAR}"), str(e))]
        return [
            Requirement(f"ffmpeg {kind} {name}", has(exe, name), exe, ffmpeg.missing_component_message(exe, kind, name))
            for kind, name, has in (("encoder", self.encoder, ffmpeg.has_encoder), ("decoder", self.decoder, ffmpeg.has_decoder))
        ]

    def depth_for(self, source_bit_depth: int) -> int:
        return self.coding_bit_depth or source_bit_depth

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        qp = self.parse_rate(rate)
        self.check()
        out = Path(workdir) / f"{self.name}_qp{qp}{self.extension}"
        depth = self.depth_for(video.bit_depth)
        chunks = (b for s in range(0, video.frames, 8) for b in iter_yuv_bytes(video[s : s + 8].to_bit_depth(depth), batch=8))
        args = [
            *("-f", "rawvideo", "-pix_fmt", _PIX_FMT[depth], "-s", f"{video.width}x{video.height}"),
            *("-r", f"{video.fps:g}", "-i", "pipe:0", "-frames:v", str(video.frames)),
            *self.encoder_args(qp),
            *(("-bsf:v", self.strip_bsf) if self.strip_bsf else ()),
            *("-pix_fmt", _PIX_FMT[depth], "-f", self.muxer, str(out)),
        ]
        log = out.with_name(out.name + ".enc.log")
        ffmpeg.run(self.exe, args, log=log, stdin_chunks=chunks)
        if not out.exists() or out.stat().st_size == 0:
            raise ffmpeg.FFmpegError(f"{self.name}: ffmpeg wrote no bitstream to {out}")
        units = ffmpeg.access_units(self.exe, out, self.muxer)
        return EncodeResult(
            out,
            frame_bytes=[u.bytes for u in units],
            frame_types=[u.type for u in units],
            frame_qps=[u.qp for u in units],
            logs=[log],
            command=[self.exe, *map(str, args)],
            tools={"ffmpeg": ffmpeg.ffmpeg_version(self.exe)},
        )

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        path = Path(path)
        out = Path(workdir) / f"{path.stem}.decoded.yuv"
        log = Path(workdir) / f"{path.name}.dec.log"
        # the decoder's own output format (8 or 10 bits, as the stream says); a change of
        # depth is done here, exactly, rather than by ffmpeg's dithering scaler
        try:
            ffmpeg.decode(self.exe, self.decoder, self.muxer, path, out, log)
        except ffmpeg.FFmpegError as e:
            raise CodecError(f"{self.name}: {e}") from e
        m = _OUTPUT_STREAM.search(log.read_text(errors="replace"))
        if not m:
            raise ffmpeg.FFmpegError(f"{self.name}: cannot read the decoded format and geometry from {log}")
        depth, width, height, fps = _DEPTH[m.group(1)], int(m.group(2)), int(m.group(3)), float(m.group(4))
        frame_bytes = width * height * 3 // 2 * (2 if depth > 8 else 1)
        try:
            ffmpeg.check_frame_count(self.exe, path, self.muxer, out.stat().st_size // frame_bytes, log)
        except ffmpeg.FFmpegError as e:
            raise CodecError(f"{self.name}: {e}") from e
        video = read_yuv(out, width, height, bit_depth=depth, fps=fps)
        return video.to_bit_depth(bit_depth) if bit_depth else video

    def identity(self) -> dict[str, Any]:
        # where the binary lies does not change the stream; its version does
        return {k: v for k, v in self.describe().items() if k != "ffmpeg"}

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
            "params": self.params,
            "strip_bsf": self.strip_bsf,
            "coding_bit_depth": self.coding_bit_depth or "the source's",
            "encoder_args_template": self.encoder_args(int(self.rate_spec.low or 0)),
        }
