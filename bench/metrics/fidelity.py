"""Fidelity metrics: PSNR on the 4:2:0 planes, PSNR on RGB, MS-SSIM on RGB.

Conventions (DCVC's, the ones learned-video-coding papers report):
- every value is per frame; sequence values are the mean of per-frame values, not the PSNR
  of the pooled MSE (which ffmpeg's summary line and some CompressAI scripts print);
- ``psnr_yuv = (6*Y + U + V) / 8`` on the 4:2:0 planes, peak ``2**bit_depth - 1``;
- ``psnr_rgb`` over all samples of the BT.709 RGB frame in [0, 1];
- ``ms_ssim_rgb``: MS-SSIM per RGB channel, then the channel mean; 11x11 Gaussian window
  (sigma 1.5), 'valid' filtering, 2x2 mean downsampling, 5 scales, or 4 scales with HM's
  renormalised weights when the frame is smaller than 176 pixels (e.g. QCIF).
A frame identical to its reference has infinite PSNR; it is reported as PSNR_MAX (100 dB),
never inf, so that a mean over frames stays finite. That is the one zero-error convention of
the packages: code outside the metrics (training logs, experiments) takes its PSNR from
:func:`psnr` or :func:`psnr_from_mse` here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._kernels import sq_err_per_frame, sse_per_frame, ssim_cs
from . import Column, FrameBatch, Metric, MetricError

PSNR_MAX = 100.0


def psnr_from_mse(mse: np.ndarray, peak: float) -> np.ndarray:
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(peak * peak / mse)
    return np.minimum(out, PSNR_MAX)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    """PSNR over all samples of two tensors (RGB in [0, 1] by default), squared errors in
    float64; PSNR_MAX where they are equal."""
    mse = torch.mean((a.detach().double() - b.detach().double()).square()).item()
    return float(psnr_from_mse(mse, peak))


class PSNR(Metric):
    """PSNR of Y, U, V and their 6:1:1 weighted mean, from exact integer squared errors."""

    name = "psnr"
    column_info = (
        Column("psnr_y", "PSNR-Y", "dB", tolerance={"abs": 0.01}, plot=False),
        Column("psnr_u", "PSNR-U", "dB", tolerance={"abs": 0.01}, plot=False),
        Column("psnr_v", "PSNR-V", "dB", tolerance={"abs": 0.01}, plot=False),
        Column("psnr_yuv", "PSNR-YUV", "dB", tolerance={"abs": 0.01}, aliases=("psnr-yuv",)),
    )

    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        peak = (1 << batch.bit_depth) - 1
        out = {}
        for plane in "yuv":
            a, b = getattr(batch.ref, plane), getattr(batch.dist, plane)
            mse = sse_per_frame(np.asarray(a), np.asarray(b)) / (a.shape[1] * a.shape[2])
            out[f"psnr_{plane}"] = psnr_from_mse(mse, peak)
        out["psnr_yuv"] = (6 * out["psnr_y"] + out["psnr_u"] + out["psnr_v"]) / 8
        return out


class PSNRRGB(Metric):
    name = "psnr_rgb"
    column_info = (Column("psnr_rgb", "PSNR-RGB", "dB", tolerance={"abs": 0.01}, aliases=("psnr-rgb",)),)

    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        a, b = batch.ref_rgb, batch.dist_rgb
        if a.device.type == "cpu":
            # one fused pass, differences and squares in float64
            sse = sq_err_per_frame(a.numpy(), b.numpy())
        else:
            sse = (a - b).square().sum(dim=(1, 2, 3), dtype=torch.float64).cpu().numpy()
        return {"psnr_rgb": psnr_from_mse(sse / a[0].numel(), 1.0)}


# MS-SSIM ------------------------------------------------------------------------------------

_WEIGHTS_5 = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WEIGHTS_4 = (0.0517, 0.3295, 0.3462, 0.2726)  # HM's weights for frames under 176 pixels
_K1, _K2 = 0.01, 0.03
_MIN_SIDE = 88  # four 2x downsamplings must leave room for the 11x11 window


def _gaussian(size: int = 11, sigma: float = 1.5, *, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and contrast-structure of (B,1,H,W) images in [0, 1], 'valid' windows."""
    c1, c2 = _K1**2, _K2**2
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # one separable filter pass for all five
    n = stack.shape[1]
    k = win.numel()
    f = F.conv2d(stack, win.view(1, 1, 1, k).expand(n, 1, 1, k), groups=n)
    f = F.conv2d(f, win.view(1, 1, k, 1).expand(n, 1, k, 1), groups=n)
    mu1, mu2, e11, e22, e12 = f.unbind(1)
    s11, s22, s12 = e11 - mu1 * mu1, e22 - mu2 * mu2, e12 - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
    return ssim.mean(dim=(-1, -2)), cs.mean(dim=(-1, -2))


def _halve(x: torch.Tensor) -> torch.Tensor:
    # 2x2 mean; an odd last row/column is averaged with itself (DCVC's reflect-mode filter).
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, differentiable: bool = False, work: dict | None = None) -> torch.Tensor:
    """MS-SSIM of (N,C,H,W) images in [0, 1], per image and channel -> (N, C).

    ``differentiable=True`` (a training loss) keeps the computation in torch, in the inputs'
    precision, on any device. ``work``: a dict in which the CPU path keeps its buffers
    between calls."""
    n, c, h, w = x.shape
    if min(h, w) < _MIN_SIDE:
        raise MetricError(f"MS-SSIM needs frames of at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {w}x{h}")
    weights = _WEIGHTS_5 if min(h, w) >= 176 else _WEIGHTS_4
    if x.device.type == "cpu" and not differentiable:
        return _ms_ssim_cpu(x, y, weights, work).view(n, c)
    # accelerators and training: torch convolutions, in the inputs' precision for training
    dtype = x.dtype if differentiable else torch.float32
    win = _gaussian(device=x.device, dtype=dtype)
    a, b = x.reshape(n * c, 1, h, w).to(dtype), y.reshape(n * c, 1, h, w).to(dtype)
    terms = []
    for level in range(len(weights)):
        s, cs = _ssim_cs(a, b, win)
        last = level == len(weights) - 1
        # relu: a negative contrast-structure term to a fractional power would be NaN
        terms.append(torch.relu(s if last else cs) ** weights[level])
        if not last:
            a, b = _halve(a), _halve(b)
    return torch.stack(terms).prod(dim=0).view(n, c)


def _ms_ssim_cpu(x: torch.Tensor, y: torch.Tensor, weights: tuple[float, ...], work: dict | None = None) -> torch.Tensor:
    """The same algorithm in float64 with fused numba kernels (torch's depthwise convolutions
    are ~10x slower on a CPU), reading float32 frames as they are: no float64 copy of the
    full-size frames. ``work``: a dict that keeps the downsampled planes' arrays between
    calls. -> (N*C,) values."""
    h, w = x.shape[-2:]
    a = x.detach().reshape(-1, h, w).numpy()
    b = y.detach().reshape(-1, h, w).numpy()
    win = _gaussian().numpy()
    out = np.ones(len(a))
    work = {} if work is None else work
    for level in range(len(weights)):
        last = level == len(weights) - 1
        # the next scale's planes are computed in the same pass, into arrays kept in work
        halves = None if last else tuple(_workspace(work, (level, i), a.shape) for i in range(2))
        s, cs = ssim_cs(a, b, win, _K1**2, _K2**2, halves=halves)
        # relu as above; Python's pow (libm) on each value: numpy's and torch's vectorised
        # pow may differ in the last bit between CPUs
        out *= [max(float(v), 0.0) ** weights[level] for v in (s if last else cs)]
        if not last:
            a, b = halves
    return torch.from_numpy(out)


def _workspace(work: dict, key, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array for the 2x2 means of (B, H, W) planes, kept in work between calls (a
    fresh 50 MB array costs more in page faults than the averaging)."""
    half = (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2)
    arr = work.get(key)
    if arr is None or arr.shape != half:
        arr = work[key] = np.empty(half)
    return arr


class MSSSIMRGB(Metric):
    name = "ms_ssim_rgb"
    column_info = (Column("ms_ssim_rgb", "MS-SSIM (RGB)", tolerance={"abs": 0.0002}, aliases=("ms-ssim", "msssim", "ms_ssim", "ms-ssim-rgb")),)

    def unsupported(self, width: int, height: int) -> str | None:
        if min(width, height) < _MIN_SIDE:
            return f"MS-SSIM needs frames of at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {width}x{height}; drop it with --metrics"
        return None

    def __init__(self, device="cpu"):
        super().__init__(device)
        self._work: dict = {}  # the CPU kernels' downsampled planes, reused between batches

    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        x = batch.ref_rgb.to(self.device)
        y = batch.dist_rgb.to(self.device)
        return {"ms_ssim_rgb": ms_ssim(x, y, work=self._work).mean(dim=1).cpu().numpy()}
