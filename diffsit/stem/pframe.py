"""STEM's P coder for backbone frames: conditional coding from the previous backbone.

DCVC-DC's DMC in small: motion estimation (DIS, current -> reference grid), motion coding
(the MV coder's flow transform), motion compensation of reference *features* by the decoded
flow, context generation, a contextual encoder and decoder that see the context, and an
entropy model whose prior adds a temporal prior from the context to the hyperprior (with the
same checkerboard spatial prior as the intra coder).

Coding is integer-exact (``diffsit.stem.exact``): the reference is the previous backbone's
DPB samples, motion vectors are in 1/16 pel, and every network runs on the activation grid,
so the context, and with it the temporal prior, is the same on every machine. ``forward``
is the float twin that training differentiates.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn

from bench.flow import backward_warp

from . import exact
from .intra import PICTURE_MULTIPLE, IntraCoder, _down, _pad_for_hyper
from .mv import FLOW_SCALE, estimate_flow


class PCoder(nn.Module):
    def __init__(self, n: int = 32, m: int = 48, ctx: int = 16, mv_n: int = 32, mv_m: int = 32):
        super().__init__()
        self.motion = IntraCoder(mv_n, mv_m, channels=2)
        self.feature = nn.Sequential(nn.Conv2d(3, ctx, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(ctx, ctx, 3, padding=1))
        self.refine = nn.Sequential(nn.Conv2d(ctx + 3, ctx, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(ctx, ctx, 3, padding=1))
        # the contextual codec: the intra coder's transforms and entropy model, on [frame, context]
        self.codec = IntraCoder(n, m, channels=3 + ctx)
        self.codec.g_s[-1] = nn.Sequential(nn.Conv2d(n, 4 * n, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.1))
        self.out = nn.Sequential(nn.Conv2d(n + ctx, ctx, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(ctx, 3, 3, padding=1))
        self.temporal_prior = nn.Sequential(_down(ctx, n), _down(n, n), _down(n, n), nn.Conv2d(n, 2 * m, 5, stride=2, padding=2))

    @torch.no_grad()
    def init_from_intra(self, intra: IntraCoder) -> None:
        """Start the contextual codec from a trained intra coder of the same size: every
        tensor of the intra coder that the codec has with the same shape is copied (analysis,
        hyperprior, spatial prior, entropy bottleneck, gains, and the synthesis but its last
        layer), and the analysis's first layer gets the intra weights on its frame inputs and
        zero on its context inputs. The P coder then starts as an intra coder that ignores
        the context, and training teaches it to use it."""
        ours = self.codec.state_dict()
        for key, value in intra.state_dict().items():
            if key not in ours or key.endswith(("._quantized_cdf", "._offset", "._cdf_length")):
                continue  # the range coder's tables: rebuilt by update()
            if ours[key].shape == value.shape:
                ours[key].copy_(value)
            elif key == "g_a.0.0.weight":
                ours[key].zero_()
                ours[key][:, : value.shape[1]].copy_(value)

    def update(self) -> None:
        self.motion.update()
        self.codec.update()

    def _context(self, ref_hat: torch.Tensor, flow_hat: torch.Tensor) -> torch.Tensor:
        warped = backward_warp(self.feature(ref_hat), flow_hat)
        return self.refine(torch.cat([warped, backward_warp(ref_hat, flow_hat)], dim=1))

    def _decode_frame(self, y_hat: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.codec.g_s(y_hat), ctx], dim=1))

    def forward(self, cur: torch.Tensor, ref_hat: torch.Tensor, flow: torch.Tensor) -> dict:
        m = self.motion(flow / FLOW_SCALE)
        ctx = self._context(ref_hat, m["x_hat"] * FLOW_SCALE)
        y = self.codec.g_a(torch.cat([cur, ctx], dim=1))
        z_hat, z_lik = self.codec.entropy_bottleneck(self.codec.h_a(_pad_for_hyper(y)))
        y_hat, y_lik = self.codec.train_y(y, self.codec.hyper_float(z_hat, y) + self.temporal_prior(ctx))
        return {"x_hat": self._decode_frame(y_hat, ctx), "likelihoods": {"mv": m["likelihoods"], "y": y_lik, "z": z_lik}}

    def exact_nets(self, device) -> SimpleNamespace:
        return exact.twins(self, ("feature", "refine", "out", "temporal_prior"), device)

    def _exact_context(self, nets, ref: torch.Tensor, mv: torch.Tensor) -> torch.Tensor:
        ref_act = exact.samples_to_act(ref)
        warped = exact.warp(nets.feature(ref_act), mv)
        return nets.refine(torch.cat([warped, exact.warp(ref_act, mv)], dim=1))

    def _exact_frame(self, nets, codec_nets, y_hat: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return exact.act_to_samples(nets.out(torch.cat([codec_nets.g_s(y_hat), ctx], dim=1)))

    @torch.no_grad()
    def compress(self, cur: torch.Tensor, ref: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """``cur``: RGB in [0, 1]; ``ref``: the previous backbone (DPB samples). The strings,
        and the decoded frame (DPB samples)."""
        flow = estimate_flow(cur, exact.samples_to_float(ref))
        mv_strings, mv_act = self.motion.compress(flow / FLOW_SCALE)
        nets, codec_nets = self.exact_nets(ref.device), self.codec.exact_nets(ref.device)
        ctx = self._exact_context(nets, ref, exact.act_to_mv(mv_act, FLOW_SCALE))
        x_act = torch.cat([exact.to_act(cur), ctx], dim=1)
        y_act, hyper, z_string = self.codec.analyse(codec_nets, x_act, prior=nets.temporal_prior(ctx))
        y_hat, y_strings = self.codec.code_y(codec_nets, hyper, y_act)
        return [*mv_strings, z_string, *y_strings], self._exact_frame(nets, codec_nets, y_hat, ctx)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], ref: torch.Tensor) -> torch.Tensor:
        size = tuple(ref.shape[-2:])
        mv_act = self.motion.decompress(strings[:3], size, ref.device)
        nets, codec_nets = self.exact_nets(ref.device), self.codec.exact_nets(ref.device)
        ctx = self._exact_context(nets, ref, exact.act_to_mv(mv_act, FLOW_SCALE))
        hyper = self.codec.hyper(codec_nets, strings[3], (size[0] // PICTURE_MULTIPLE, size[1] // PICTURE_MULTIPLE), prior=nets.temporal_prior(ctx))
        y_hat, _ = self.codec.code_y(codec_nets, hyper, None, strings[4:])
        return self._exact_frame(nets, codec_nets, y_hat, ctx)
