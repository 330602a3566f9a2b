"""Optical-flow helpers shared by the harness (Ewarp) and codecs (motion compensation)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIS_PRESETS = ("ultrafast", "fast", "medium")


def dis_flow(target: np.ndarray, reference: np.ndarray, preset: str = "medium") -> np.ndarray:
    """OpenCV DIS flow on the target's grid pointing into the reference, (H, W, 2) float32.

    Both inputs are 8-bit luma planes (H, W); which luma (BT.709 from RGB, the coded Y plane)
    is the caller's to choose, because a codec's motion search and a metric's reference
    must each keep theirs."""
    # cv2 costs ~0.3 s to import and only flow users need it
    import cv2

    if preset not in DIS_PRESETS:
        raise ValueError(f"DIS preset {preset!r}: choose one of {', '.join(DIS_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    return dis.calc(np.ascontiguousarray(target), np.ascontiguousarray(reference), None)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample (N,C,H,W) ``image`` at x + flow, flow (N,2,H,W) in pixels (x, y); bilinear,
    border-clamped (as Lai et al.'s Resample2d)."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=flow.dtype), torch.arange(w, device=image.device, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border", align_corners=True)
