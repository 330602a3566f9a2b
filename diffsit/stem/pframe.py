"""STEM's P coder for backbone frames: conditional coding from the previous backbone.

DCVC-DC's DMC in small, on a residual: motion estimation (DIS, current -> reference grid),
motion coding (the MV coder's flow transform), motion compensation of the reference by the
decoded flow (the *prediction*), a context computed from the prediction, a contextual
encoder that sees [current - prediction + 1/2, context] and a decoder whose picture is
prediction + (its first three channels - 1/2) + a correction from [its output, context], and
an entropy model whose prior adds a temporal prior from the context to the hyperprior (with
the same checkerboard spatial prior as the intra coder).

Why a residual and not pure conditional coding: started from the intra coder
(:meth:`PCoder.init_from_intra`), this P coder *is* the intra coder applied to the residual
image, which is mostly flat grey where the prediction is right and so costs far less than the
frame; the context, the temporal prior and the correction start at zero and training adds
what they are worth. Pure conditional coding (the analysis of [frame, context]) started from
the intra coder codes the whole frame again, and on the tiny recipe's budget it never learned
to leave out what the context carries: its P frames cost 1.1-1.7x the same frame coded intra.

A P frame may also skip its residual (bitstream version 6): the encoder weighs each frame's
bits against its squared error as training did (``lambda * bits + w_d * SSE``, the model's own
lambda) and, where the coded residual does not pay for its bits, sends the motion alone; the
decoder's frame is then the prediction. Where the prediction is already as good as the frame
would be coded (a static camera, a reference coded at the same quality), the tiny residual
coder would otherwise spend about an intra frame's bytes on noise-like residual for no gain.
The decision is the encoder's, not a trained part, and needs no flag: a P record with the
motion strings only is a skipped one.

Coding is integer-exact (``diffsit.stem.exact``): the reference is the previous backbone's
DPB samples, motion vectors are in 1/16 pel, and every network runs on the activation grid,
so the prediction, the context, and with them the temporal prior, are the same on every
machine. ``forward`` is the float twin that training differentiates.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn

from bench.flow import backward_warp

from . import exact
from .intra import PICTURE_MULTIPLE, IntraCoder, _down, _pad_for_hyper
from .mv import FLOW_SCALE, estimate_flow

#: strings of the coded motion (the motion coder's z, y anchors, y non-anchors); a P record with
#: these alone skips its residual
MOTION_STRINGS = 3

# the residual image's offset: where the prediction is right, the analysis sees flat mid-grey
RESIDUAL_OFFSET = 0.5
_OFFSET_ACT = RESIDUAL_OFFSET * 2.0**exact.ACT_BITS  # on the activation grid (exact: a power of two)


class PCoder(nn.Module):
    def __init__(self, n: int = 32, m: int = 48, ctx: int = 16, mv_n: int = 32, mv_m: int = 32):
        super().__init__()
        self.motion = IntraCoder(mv_n, mv_m, channels=2)
        self.feature = nn.Sequential(nn.Conv2d(3, ctx, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(ctx, ctx, 3, padding=1))
        # the contextual codec: the intra coder's transforms and entropy model; its analysis
        # sees [residual image, context], its synthesis gives [residual image, ctx features]
        self.codec = IntraCoder(n, m, channels=3 + ctx)
        self.out = nn.Sequential(nn.Conv2d(3 + 2 * ctx, ctx, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(ctx, 3, 3, padding=1))
        self.temporal_prior = nn.Sequential(_down(ctx, n), _down(n, n), _down(n, n), nn.Conv2d(n, 2 * m, 5, stride=2, padding=2))

    @torch.no_grad()
    def init_from_intra(self, intra: IntraCoder) -> None:
        """Start as the intra coder of the residual image: every tensor of the intra coder
        that the codec has with the same shape is copied (analysis, hyperprior, spatial
        prior, entropy bottleneck, gains, synthesis); the analysis's first layer gets the
        intra weights on its residual inputs and zero on its context inputs, the synthesis's
        last layer the intra weights on its residual outputs; the correction and the temporal
        prior start at zero. Training then teaches the context what it is worth."""
        ours = self.codec.state_dict()
        last = f"g_s.{len(self.codec.g_s) - 1}.0."
        for key, value in intra.state_dict().items():
            if key not in ours or key.endswith(("._quantized_cdf", "._offset", "._cdf_length")):
                continue  # the range coder's tables: rebuilt by update()
            if ours[key].shape == value.shape:
                ours[key].copy_(value)
            elif key == "g_a.0.0.weight":
                ours[key].zero_()
                ours[key][:, : value.shape[1]].copy_(value)
            elif key.startswith(last):
                # PixelShuffle(2): output channel c comes from conv channels 4c..4c+3
                ours[key][: value.shape[0]].copy_(value)
        for conv in (self.out[-1], self.temporal_prior[-1]):
            conv.weight.zero_()
            conv.bias.zero_()

    def update(self) -> None:
        self.motion.update()
        self.codec.update()

    def _decode_frame(self, y_hat: torch.Tensor, pred: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        r = self.codec.g_s(y_hat)
        return pred + (r[:, :3] - RESIDUAL_OFFSET) + self.out(torch.cat([r, ctx], dim=1))

    def forward(self, cur: torch.Tensor, ref_hat: torch.Tensor, flow: torch.Tensor) -> dict:
        m = self.motion(flow / FLOW_SCALE)
        pred = backward_warp(ref_hat, m["x_hat"] * FLOW_SCALE)
        ctx = self.feature(pred)
        y = self.codec.g_a(torch.cat([cur - pred + RESIDUAL_OFFSET, ctx], dim=1))
        z_hat, z_lik = self.codec.entropy_bottleneck(self.codec.h_a(_pad_for_hyper(y)))
        y_hat, y_lik = self.codec.train_y(y, self.codec.hyper_float(z_hat, y) + self.temporal_prior(ctx))
        return {"x_hat": self._decode_frame(y_hat, pred, ctx), "likelihoods": {"mv": m["likelihoods"], "y": y_lik, "z": z_lik}}

    def exact_nets(self, device) -> SimpleNamespace:
        return exact.twins(self, ("feature", "out", "temporal_prior"), device)

    def _exact_prediction(self, nets, ref: torch.Tensor, mv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and the context, on the activation grid."""
        pred = exact.warp(exact.samples_to_act(ref), mv)
        return pred, nets.feature(pred)

    def _exact_frame(self, nets, codec_nets, y_hat: torch.Tensor, pred: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        r = codec_nets.g_s(y_hat)
        return exact.act_to_samples(exact.clip(pred + (r[:, :3] - _OFFSET_ACT) + nets.out(torch.cat([r, ctx], dim=1))))

    @torch.no_grad()
    def compress(self, cur: torch.Tensor, ref: torch.Tensor, rd: tuple[float, float] | None = None) -> tuple[list[bytes], torch.Tensor]:
        """``cur``: RGB in [0, 1]; ``ref``: the previous backbone (DPB samples). The strings,
        and the decoded frame (DPB samples). ``rd``: (lambda, distortion weight) of the
        skip decision (``DiffSIT.rd_tradeoff``); None codes the residual always."""
        flow = estimate_flow(cur, exact.samples_to_float(ref))
        mv_strings, mv_act = self.motion.compress(flow / FLOW_SCALE)
        nets, codec_nets = self.exact_nets(ref.device), self.codec.exact_nets(ref.device)
        pred, ctx = self._exact_prediction(nets, ref, exact.act_to_mv(mv_act, FLOW_SCALE))
        x_act = torch.cat([exact.clip(exact.to_act(cur) - pred + _OFFSET_ACT), ctx], dim=1)
        y_act, hyper, z_string = self.codec.analyse(codec_nets, x_act, prior=nets.temporal_prior(ctx))
        y_hat, y_strings = self.codec.code_y(codec_nets, hyper, y_act)
        strings, frame = [*mv_strings, z_string, *y_strings], self._exact_frame(nets, codec_nets, y_hat, pred, ctx)
        if rd is not None:
            skipped = _skipped_frame(pred)
            if rd_cost(skipped, cur, mv_strings, rd) <= rd_cost(frame, cur, strings, rd):
                return list(mv_strings), skipped
        return strings, frame

    @torch.no_grad()
    def decompress(self, strings: list[bytes], ref: torch.Tensor) -> torch.Tensor:
        size = tuple(ref.shape[-2:])
        mv_act = self.motion.decompress(strings[:MOTION_STRINGS], size, ref.device)
        mv = exact.act_to_mv(mv_act, FLOW_SCALE)
        if len(strings) == MOTION_STRINGS:  # skipped: neither the context nor the codec runs
            return _skipped_frame(exact.warp(exact.samples_to_act(ref), mv))
        nets, codec_nets = self.exact_nets(ref.device), self.codec.exact_nets(ref.device)
        pred, ctx = self._exact_prediction(nets, ref, mv)
        hyper = self.codec.hyper(
            codec_nets, strings[MOTION_STRINGS], (size[0] // PICTURE_MULTIPLE, size[1] // PICTURE_MULTIPLE), prior=nets.temporal_prior(ctx)
        )
        y_hat, _ = self.codec.code_y(codec_nets, hyper, None, strings[MOTION_STRINGS + 1 :])
        return self._exact_frame(nets, codec_nets, y_hat, pred, ctx)


def _skipped_frame(pred: torch.Tensor) -> torch.Tensor:
    """A skipped P frame's DPB samples: the prediction itself."""
    return exact.act_to_samples(exact.clip(pred))


def rd_cost(samples: torch.Tensor, cur: torch.Tensor, strings: list[bytes], rd: tuple[float, float]) -> float:
    """Training's loss, ``lambda * bpp + w_d * MSE``, times the pixel count: lambda times the
    bits the frame's record holds (each string with its u32 length) plus w_d times the squared
    error of the decoded RGB in [0, 1] per pixel (the MSE's mean runs over its three planes)."""
    lam, distortion_weight = rd
    bits = 8 * sum(4 + len(s) for s in strings)
    sse = torch.sum((exact.samples_to_float(samples, torch.float64) - cur.double()) ** 2).item() / cur.shape[-3]
    return lam * bits + distortion_weight * sse
