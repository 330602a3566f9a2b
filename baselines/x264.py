"""AVC anchor: libx264 through ffmpeg, low delay P, fixed QP."""

from __future__ import annotations

from bench.codec import RateSpec

from .ffmpeg_anchor import FFmpegAnchor

_ONE_GOP = 1 << 30  # x264 has no "infinite" keyint; this is longer than any test sequence


class X264(FFmpegAnchor):
    name = "x264"
    extension = ".264"
    encoder, decoder, muxer = "libx264", "h264", "h264"
    rate_spec = RateSpec("int", 0, 51)
    default_rates = (27, 32, 37, 42, 47)
    default_preset = "medium"
    fastest_preset = "ultrafast"
    params_option = "-x264-params"
    reserved_params = frozenset("qp crf bitrate vbv-maxrate vbv-bufsize bframes keyint min-keyint scenecut aq-mode mbtree threads".split())
    file_params = frozenset("stats qpfile dump-yuv cqmfile tcfile-in tcfile-out".split())
    # x264 has no switch for its options SEI (user data in the first access unit); drop every
    # SEI NAL unit: it writes no other kind in this low-delay set-up (no HRD, no intra refresh)
    strip_bsf = "filter_units=remove_types=6"

    def encoder_args(self, qp: int) -> list[str]:
        gop = _ONE_GOP if self.intra_period == -1 else self.intra_period
        args = [
            "-c:v",
            "libx264",
            "-preset",
            str(self.preset),
            "-qp",
            str(qp),
            "-bf",
            "0",
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-aq-mode",
            "0",
            "-mbtree",
            "0",
        ]
        if self.threads:
            args += ["-threads", str(self.threads)]
        if self.params:
            args += [self.params_option, self.params]
        return args
