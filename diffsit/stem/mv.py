"""STEM's MV-frame coder: flow from the group's backbone, coded with a hyperprior, then a warp.

An MV frame carries only motion. The encoder estimates the flow on the MV frame's grid that
points into the group's *reconstructed* backbone (so the prediction is a backward warp,
pred(x) = backbone(x + F(x))), codes it with the hyperprior + spatial-prior transform coder
(2 channels, scaled by ``FLOW_SCALE``), and the decoder warps the backbone by the decoded
flow. There is no residual: what the warp cannot explain is left to ODFTE.

Coding is integer-exact (``diffsit.stem.exact``): the decoded flow becomes motion vectors in
1/16 pel and the warp interpolates the backbone's integer samples. Training differentiates
the float twin (``forward``: ``bench.flow.backward_warp`` on float pictures).

The encoder-side flow estimate is OpenCV DIS (``bench.flow.dis_flow``) on BT.709 luma (no weights, not differentiable; it is
an *input* to the learned MV encoder, so training does not need its gradient).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.flow import backward_warp, dis_flow

from . import exact
from .intra import IntraCoder

FLOW_SCALE = 16.0  # pixels; brings typical flows to O(1) for the transform


def luma8(x: torch.Tensor) -> np.ndarray:
    """BT.709 luma of RGB (1,3,H,W) in [0, 1], 8-bit: what the encoder's flow search sees. It
    is STEM's own, not the harness's Y plane: changing it would change every stream."""
    y = 0.2126 * x[0, 0] + 0.7152 * x[0, 1] + 0.0722 * x[0, 2]
    return (y.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def estimate_flow(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """DIS flow (``bench.flow.dis_flow``, medium preset) on the target's grid pointing into the
    reference, from their :func:`luma8`; RGB (1,3,H,W) in [0, 1] -> (1,2,H,W)."""
    flow = dis_flow(luma8(target), luma8(reference), "medium")
    return torch.from_numpy(flow).permute(2, 0, 1)[None].to(target.device, target.dtype)


class MVCoder(torch.nn.Module):
    def __init__(self, n: int = 32, m: int = 32):
        super().__init__()
        self.flow_coder = IntraCoder(n, m, channels=2)

    def update(self) -> None:
        self.flow_coder.update()

    def forward(self, flow: torch.Tensor, backbone_hat: torch.Tensor) -> dict:
        out = self.flow_coder(flow / FLOW_SCALE)
        flow_hat = out["x_hat"] * FLOW_SCALE
        return {"x_hat": backbone_warp_clamped(backbone_hat, flow_hat), "flow_hat": flow_hat, "likelihoods": out["likelihoods"]}

    @torch.no_grad()
    def compress(self, frame: torch.Tensor, backbone: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """``frame``: RGB in [0, 1]; ``backbone``: the decoded backbone (DPB samples). The
        strings, and the decoded MV frame (DPB samples)."""
        flow = estimate_flow(frame, exact.samples_to_float(backbone))
        strings, out = self.flow_coder.compress(flow / FLOW_SCALE)
        return strings, exact.warp(backbone, exact.act_to_mv(out, FLOW_SCALE))

    @torch.no_grad()
    def decompress(self, strings: list[bytes], backbone: torch.Tensor) -> torch.Tensor:
        out = self.flow_coder.decompress(strings, tuple(backbone.shape[-2:]), backbone.device)
        return exact.warp(backbone, exact.act_to_mv(out, FLOW_SCALE))


def backbone_warp_clamped(backbone_hat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    return backward_warp(backbone_hat, flow).clamp(0, 1)
