"""Ewarp, the flow-warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency").

For each pair (t-1, t): the flow F from frame t-1 to frame t and the flow B back; a pixel of
frame t-1 is occluded where

    |F + B~|^2 > 0.01 (|F|^2 + |B~|^2) + 0.5        (B~ = B sampled at x + F(x))

or on a motion boundary, where |grad u|^2 + |grad v|^2 > 0.01 |F|^2 + 0.002 (gradients of F by
forward differences). Then

    E_t = sum M (W(O_t) - O_{t-1})^2 / sum M

over RGB in [0, 1] (M counted per channel), W(O_t) being frame t warped back onto frame
t-1 by F (bilinear, clamped at the border). The sequence value is the mean over pairs; it is
stored x1e3, i.e. in units of 10^-3, the way recent papers report it.

Which video the flow is computed on changes the number: the original measures flow on the
*source*; recent video-restoration papers (DOVE, the Diff-SIT authors') compute RAFT flow on
the *evaluated* video. The default here is the latter (``on=decoded``); ``on=source`` is the
original. The flow backend is ``raft`` (torchvision RAFT-large, weights from the torch hub
cache) when its weights are present, else ``dis`` (OpenCV DIS, classical, no weights); both,
and the direction, are recorded in the manifest.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import weights
from ..flow import backward_warp as warp
from ..video import Video
from . import Column, Metric, MetricError, MetricUnavailable

SCALE = 1e3
FLOWS = ("auto", "raft", "raft_small", "dis")
ON = ("decoded", "source")


def occlusion_mask(fw: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """Occluded pixels (N,H,W) of frame t-1, from F = t-1 -> t (fw) and B = t -> t-1 (bw)."""
    bw_w = warp(bw, fw)
    mag = lambda f: f[:, 0] ** 2 + f[:, 1] ** 2
    inconsistent = mag(fw + bw_w) > 0.01 * (mag(fw) + mag(bw_w)) + 0.5
    du = torch.zeros_like(fw)
    dv = torch.zeros_like(fw)
    du[..., :, :-1] = fw[..., :, :-1] - fw[..., :, 1:]
    dv[..., :-1, :] = fw[..., :-1, :] - fw[..., 1:, :]
    grad = du[:, 0] ** 2 + dv[:, 0] ** 2 + du[:, 1] ** 2 + dv[:, 1] ** 2
    boundary = grad > 0.01 * mag(fw) + 0.002
    return inconsistent | boundary


def warp_error(prev: torch.Tensor, cur: torch.Tensor, fw: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """E per pair for RGB frames (N,3,H,W) in [0, 1] (raw, not scaled)."""
    valid = (~occlusion_mask(fw, bw)).unsqueeze(1).to(prev.dtype).expand_as(prev)
    diff = (warp(cur, fw) - prev) * valid
    count = valid.sum(dim=(1, 2, 3))
    total = torch.tensor(prev[0].numel(), dtype=prev.dtype, device=prev.device)
    return diff.square().sum(dim=(1, 2, 3)) / torch.where(count > 0, count, total)


class _DIS:
    label = "OpenCV DIS (medium preset) on luma"

    def __init__(self):
        import cv2

        self.cv2 = cv2
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, video: Video, a: int, b: int, device) -> torch.Tensor:
        y = video.y if video.bit_depth == 8 else (video.to_bit_depth(8).y)
        flow = self.dis.calc(np.ascontiguousarray(y[a]), np.ascontiguousarray(y[b]), None)
        return torch.from_numpy(flow).permute(2, 0, 1)[None].to(device)


class _RAFT:
    def __init__(self, small: bool, device, random_weights: bool = False):
        from torchvision.models.optical_flow import raft_large, raft_small

        key = "raft_small" if small else "raft_large"
        self.label = f"torchvision RAFT-{'small' if small else 'large'} ({weights.WEIGHTS[key].filename})"
        net = (raft_small if small else raft_large)(weights=None)
        if not random_weights:
            net.load_state_dict(weights.load_state_dict(key))
        self.net = net.to(device).eval()

    @torch.no_grad()
    def __call__(self, video: Video, a: int, b: int, device) -> torch.Tensor:
        x = video.rgb(a, a + 1, device=device) * 2 - 1
        y = video.rgb(b, b + 1, device=device) * 2 - 1
        h, w = x.shape[-2:]
        # RAFT needs sizes divisible by 8 and at least 128 (its correlation pyramid)
        ph, pw = max(-h % 8, 128 - h), max(-w % 8, 128 - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            y = F.pad(y, (0, pw, 0, ph), mode="replicate")
        return self.net(x, y)[-1][..., :h, :w]


class Ewarp(Metric):
    name = "ewarp"
    column_info = (Column("ewarp", "Ewarp", "×10⁻³", higher_is_better=False, tolerance={"abs": 0.005}, perceptual=True, aliases=("e_warp",)),)
    sequence_level = True
    pair_columns = ("ewarp",)

    def __init__(self, device="cpu", flow: str = "auto", on: str = "decoded", random_weights: bool = False):
        super().__init__(device)
        if flow not in FLOWS:
            raise ValueError(f"ewarp flow must be one of {', '.join(FLOWS)}, got {flow!r}")
        if on not in ON:
            raise ValueError(f"ewarp on= must be one of {', '.join(ON)}, got {on!r}")
        if flow == "auto":
            flow = "raft" if (random_weights or weights.locate("raft_large")) else "dis"
        self.flow, self.on, self.random_weights = flow, on, random_weights
        self._backend = None

    def check(self) -> None:
        if self.flow == "dis":
            import importlib.util

            if importlib.util.find_spec("cv2") is None:
                raise MetricUnavailable("ewarp with flow=dis needs OpenCV: pip install opencv-python-headless")
        elif not self.random_weights:
            key = "raft_small" if self.flow == "raft_small" else "raft_large"
            if weights.locate(key) is None:
                raise MetricUnavailable(weights.missing_message(key) + " Or use --metrics ewarp:flow=dis (classical flow, labelled).")

    @property
    def backend(self):
        if self._backend is None:
            self.check()
            self._backend = _DIS() if self.flow == "dis" else _RAFT(self.flow == "raft_small", self.device, self.random_weights)
        return self._backend

    @torch.no_grad()
    def compute_sequence(self, ref: Video, dist: Video) -> dict[str, np.ndarray]:
        if dist.frames < 2:
            raise MetricError("ewarp needs at least two frames")
        src = dist if self.on == "decoded" else ref
        out = np.full(dist.frames, np.nan)
        for t in range(1, dist.frames):
            fw = self.backend(src, t - 1, t, self.device).float()
            bw = self.backend(src, t, t - 1, self.device).float()
            pair = dist.rgb(t - 1, t + 1, device=self.device)
            out[t] = SCALE * float(warp_error(pair[:1], pair[1:], fw, bw)[0])
            src[t - 1].release()  # frame t-1 is done with (Video.release: bounded memory)
            dist[t - 1].release()
        return {"ewarp": out}

    def identity(self):
        info = {"metric": self.name, "flow": self.flow, "on": self.on, "random_weights": self.random_weights}
        if self.flow != "dis" and not self.random_weights:
            info["weights"] = weights.fingerprint("raft_small" if self.flow == "raft_small" else "raft_large")
        return info

    def describe(self):
        return {
            **super().describe(),
            "flow": self.flow,
            "flow_backend": self.backend.label if self._backend else self.flow,
            "flow_on": f"{self.on} video",
            "direction": "F: frame t-1 -> t, B: t -> t-1; W(O_t) onto t-1",
            "units": "x1e-3 (value = 1000 * E)",
            "random_weights": self.random_weights,
        }
