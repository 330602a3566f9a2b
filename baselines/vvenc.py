"""VVC anchor: libvvenc through ffmpeg, low delay, fixed QP, 10-bit internally."""

from __future__ import annotations

from bench.codec import RateSpec

from .ffmpeg_anchor import FFmpegAnchor


class VVenC(FFmpegAnchor):
    name = "vvenc"
    extension = ".266"
    encoder, decoder, muxer = "libvvenc", "vvc", "vvc"
    # libvvenc accepts only yuv420p10le, and ffmpeg's VVC decoder returns 10 bits: 8-bit
    # sources are shifted up on the way in and rounded back to 8 bits for measuring.
    coding_bit_depth = 10
    rate_spec = RateSpec("int", 0, 63)
    # The same QPs as x265, as CTC compares anchors: BD-rate integrates over the overlapping
    # *quality* range, which a rate-aligned ladder (22..42) shrank below 50% for MS-SSIM on
    # the sample set. At these QPs vvenc spans ~0.007-0.06 bpp there, x265 ~0.017-0.10.
    default_rates = (27, 32, 37, 42, 47)
    default_preset = "medium"
    fastest_preset = "faster"
    plot_style = ("#ff7f0e", "s")
    anchor = True
    params_option = "-vvenc-params"
    reserved_params = frozenset(
        name.lower()
        for name in "QP PicReordering DecodingRefreshType GOPSize IntraPeriod RefreshSec QPA TargetBitrate InputBitDepth InternalBitDepth Threads".split()
    )
    # vvenc starts every access unit with a delimiter (6 bytes a frame) that a single-layer
    # stream does not need and VTM does not write: dropped, so the two VVC encoders pay alike
    strip_bsf = "filter_units=remove_types=20"
    file_params = frozenset(name.lower() for name in "ReconFile OutputFile InputFile FirstPassStatsFile SummaryOutFilename".split())

    def encoder_args(self, qp: int) -> list[str]:
        # libvvenc's defaults are random access with reordering, an intra refresh every
        # second and perceptual QPA: none of them is a low-delay fixed-QP anchor. Low delay
        # only admits DecodingRefreshType=none, so a finite intra period gives non-IRAP
        # intra pictures, which is still one intra frame per period.
        # IntraPeriod=-1 is vvenc's "one intra picture", as intra_period=-1 is the harness's
        params = f"PicReordering=0:DecodingRefreshType=none:GOPSize=8:IntraPeriod={self.intra_period}"
        args = ["-c:v", "libvvenc", "-preset", str(self.preset), "-qp", str(qp), "-qpa", "0", self.params_option, self._with_params(params)]
        if self.threads:
            args[4:4] = ["-threads", str(self.threads)]
        return args
