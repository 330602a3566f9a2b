"""AV1 anchor: SVT-AV1 through ffmpeg, low-delay prediction structure, fixed QP (qindex 1..63)."""

from __future__ import annotations

from bench.codec import RateSpec

from .ffmpeg_anchor import FFmpegAnchor


class SvtAv1(FFmpegAnchor):
    name = "svtav1"
    extension = ".obu"
    encoder, decoder, muxer = "libsvtav1", "libdav1d", "obu"
    rate_spec = RateSpec("int", 1, 63)
    default_rates = (40, 46, 52, 57, 62)
    default_preset = 8
    fastest_preset = 12
    params_option = "-svtav1-params"
    reserved_params = frozenset("rc qp crf tbr mbr pred-struct keyint scd enable-tf aq-mode enable-overlays lp input-depth".split())
    file_params = frozenset("stat-file input-stat-file output-stat-file fgs-table roi-map-file".split())

    def encoder_args(self, qp: int) -> list[str]:
        # rc=0 is CQP; pred-struct=1 is low delay; temporal filtering and overlays off so
        # that no frame is coded that the viewer does not see.
        # keyint=-1 is SVT-AV1's "one keyframe", as intra_period=-1 is the harness's
        params = f"rc=0:qp={qp}:pred-struct=1:keyint={self.intra_period}:scd=0:enable-tf=0:aq-mode=0:enable-overlays=0"
        if self.threads:
            params += f":lp={self.threads}"
        return ["-c:v", "libsvtav1", "-preset", str(self.preset), self.params_option, self._with_params(params)]
