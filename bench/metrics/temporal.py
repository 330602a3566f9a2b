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
cache) when its weights are present, else ``dis`` (OpenCV DIS, medium preset, classical, no
weights); both, and the direction, are recorded in the manifest. ``dis_fast`` is DIS's fast
preset, about 5x cheaper at 1080p; it estimates flow at a quarter of the resolution instead
of half, and its values are not those of ``dis`` (1.5-2.1x them on x265-decoded sample clips:
compare codecs under one flow only).

Frames come a batch at a time (:class:`FrameBatch`: the RGB conversion shared with the
other metrics, frame t-1 of a batch's first pair carried over from the previous batch); each
flow is computed once, and on a CPU the occlusion mask, warp and error are one fused pass
(``bench._kernels.warp_error_cpu``, float64, the same value on every CPU).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import weights
from .._kernels import warp_error_cpu
from ..flow import backward_warp as warp
from ..flow import dis_flow
from ..video import Video
from . import Column, FrameBatch, Metric, MetricError, MetricUnavailable, measure

SCALE = 1e3
FLOWS = ("auto", "raft", "raft_small", "dis", "dis_fast")
#: the DIS flows: OpenCV preset of each
DIS_PRESETS = {"dis": "medium", "dis_fast": "fast"}
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
    """OpenCV's DIS (bench.flow.dis_flow) on the coded 8-bit luma plane; flows as (H, W, 2)
    float32 arrays."""

    def __init__(self, preset: str = "medium"):
        self.preset = preset
        self.label = f"OpenCV DIS ({preset} preset) on luma"

    @staticmethod
    def luma(video: Video, t: int) -> np.ndarray:
        """The Y plane as coded (not BT.709 luma from RGB): what this metric has always used."""
        frame = video[t : t + 1]
        y = frame.y if frame.bit_depth == 8 else frame.to_bit_depth(8).y
        return np.ascontiguousarray(y[0])

    def flows(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F (prev -> cur) and B (cur -> prev)."""
        return dis_flow(prev, cur, self.preset), dis_flow(cur, prev, self.preset)

    def __call__(self, video: Video, a: int, b: int, device) -> torch.Tensor:
        flow = dis_flow(self.luma(video, a), self.luma(video, b), self.preset)
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
        return self._flow(video.rgb(a, a + 1, device=device), video.rgb(b, b + 1, device=device))

    def flows(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F (prev -> cur) and B (cur -> prev) of (1, 3, H, W) RGB frames, as (1, 2, H, W)."""
        return self._flow(prev, cur), self._flow(cur, prev)

    @torch.no_grad()
    def _flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y = a * 2 - 1, b * 2 - 1
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
        if self.flow in DIS_PRESETS:
            import importlib.util

            if importlib.util.find_spec("cv2") is None:
                raise MetricUnavailable(f"ewarp with flow={self.flow} needs OpenCV: pip install opencv-python-headless")
        elif not self.random_weights:
            key = "raft_small" if self.flow == "raft_small" else "raft_large"
            if weights.locate(key) is None:
                raise MetricUnavailable(weights.missing_message(key) + " Or use --metrics ewarp:flow=dis (classical flow, labelled).")

    @property
    def backend(self):
        if self._backend is None:
            self.check()
            if self.flow in DIS_PRESETS:
                self._backend = _DIS(DIS_PRESETS[self.flow])
            else:
                self._backend = _RAFT(self.flow == "raft_small", self.device, self.random_weights)
        return self._backend

    @torch.no_grad()
    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        """Each pair (t-1, t) with t in the batch: the batch's RGB frames (frame start-1
        carried over from the previous batch), each flow computed once."""
        if batch.dist_video.frames < 2:
            raise MetricError("ewarp needs at least two frames")
        src = "dist" if self.on == "decoded" else "ref"
        video = batch.dist_video if src == "dist" else batch.ref_video
        dis = isinstance(self.backend, _DIS)
        out = np.full(len(batch), np.nan)
        frames = {}  # the flow's input frames, each prepared once

        def flow_input(t):
            if t not in frames:
                frames[t] = self.backend.luma(video, t) if dis else batch.frame_rgb(src, t)
            return frames[t]

        for t in range(max(batch.start, 1), batch.stop):
            fw, bw = self.backend.flows(flow_input(t - 1), flow_input(t))
            prev, cur = batch.frame_rgb("dist", t - 1), batch.frame_rgb("dist", t)
            if prev.device.type == "cpu":
                err = warp_error_cpu(prev[0].numpy(), cur[0].numpy(), np.asarray(fw if dis else fw[0]), np.asarray(bw if dis else bw[0]))
            else:
                if dis:
                    fw, bw = (torch.from_numpy(f).permute(2, 0, 1)[None].to(prev.device) for f in (fw, bw))
                err = float(warp_error(prev, cur, fw.float(), bw.float())[0])
            out[t - batch.start] = SCALE * err
        return {"ewarp": out}

    def compute_sequence(self, ref: Video, dist: Video) -> dict[str, np.ndarray]:
        """The whole sequence at once (frame 0: NaN)."""
        return measure(ref, dist, [self], device=self.device)

    def identity(self):
        info = {"metric": self.name, "flow": self.flow, "on": self.on, "random_weights": self.random_weights}
        if self.flow not in DIS_PRESETS and not self.random_weights:
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
