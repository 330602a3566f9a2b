"""HEVC anchor: libx265 through ffmpeg, low delay P, fixed QP."""

from __future__ import annotations

from .ffmpeg_anchor import FFmpegAnchor


class X265(FFmpegAnchor):
    name = "x265"
    extension = ".hevc"
    encoder, decoder, muxer = "libx265", "hevc", "hevc"
    default_rates = (27, 32, 37, 42, 47)
    default_preset = "medium"
    fastest_preset = "ultrafast"
    plot_style = ("#1f77b4", "s")
    anchor = True
    params_option = "-x265-params"
    reserved_params = frozenset(
        "qp crf bitrate vbv-maxrate vbv-bufsize bframes keyint min-keyint scenecut open-gop aq-mode cutree rc-lookahead info pools frame-threads "
        "input-depth output-depth input-res fps input-csp".split()
    )
    file_params = frozenset("csv analysis-save analysis-load qpfile zonefile lambda-file scaling-list dhdr10-info recon stats dolby-vision-rpu".split())

    def encoder_args(self, qp: int) -> list[str]:
        # bframes=0: I then P frames, no reordering. keyint=-1 is x265's "one keyframe".
        # aq-mode=0 and cutree=0 keep the QP fixed; the I/P offset of ipratio stays at x265's
        # default and is recorded with the command. info=0: no options SEI (2.3 kB a stream of
        # text that no decoder needs, a quarter to three quarters of a 9-frame sample stream).
        gop = "keyint=-1" if self.intra_period == -1 else f"keyint={self.intra_period}:min-keyint={self.intra_period}"
        params = f"qp={qp}:bframes=0:{gop}:scenecut=0:open-gop=0:aq-mode=0:cutree=0:rc-lookahead=0:info=0"
        if self.threads:
            params += f":pools={self.threads}:frame-threads=1"
        return ["-c:v", "libx265", "-preset", str(self.preset), self.params_option, self._with_params(params)]
