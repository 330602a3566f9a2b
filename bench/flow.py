"""Optical-flow helpers shared by the harness (Ewarp) and codecs (motion compensation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample (N,C,H,W) ``image`` at x + flow, flow (N,2,H,W) in pixels (x, y); bilinear,
    border-clamped (as Lai et al.'s Resample2d)."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=flow.dtype), torch.arange(w, device=image.device, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border", align_corners=True)
