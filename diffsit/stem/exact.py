"""Exact integer evaluation of STEM: the same numbers on every CPU, thread count and GPU.

An entropy decoder stays in step with its encoder only if both compute the *same* entropy
parameters, and a P or MV frame decodes right only if its reference is the same picture on
both sides. Float convolutions give neither across machines: a sum's value depends on its
order (SIMD width, threads, GPU tiling, TF32), and one scale index that flips desynchronises
the range coder for the rest of the frame. So everything from the bitstream to the entropy
coder's parameters and to the reference pictures is evaluated here in integers:

- **Activations** are integers on a fixed grid of step 2^-``ACT_BITS``, clipped to
  ±``ACT_LIMIT`` steps.
- **Weights** are integers too, each output channel's scaled by its own power of two so that
  its largest weight has ``WEIGHT_BITS`` bits; a bias sits on its channel's accumulator grid.
- **Convolutions** run in float64 on integer-valued tensors. Every product is an integer and
  every partial sum is bounded by sum |w| * ACT_LIMIT + |b|, which :class:`ExactConv` checks
  to be below 2^53 when it is built, so every partial sum is exactly representable and the
  result does not depend on the order of summation: any ISA, any thread count, CPU or CUDA
  (with cuDNN off, whose Winograd and FFT algorithms transform their operands; PyTorch's own
  kernels multiply and add).
- **Everything else** is an IEEE basic operation applied element by element (add, multiply,
  divide by a stored constant, round half to even, compare), which is correctly rounded, so
  it too gives the same bits everywhere. No exp, log or erf runs at decode time: what needs
  one (the quantization gain, the scale-index thresholds, the range coder's tables) is
  computed once and stored with the weights.
- **Reference pictures** are integer samples of ``DPB_BITS`` bits, as a codec's decoded
  picture buffer holds them, and motion compensation is integer bilinear interpolation at
  1/``MV_FRAC`` pel, as in HEVC.

The float modules stay what training differentiates; these are their integer twins, built
from the same weights (:func:`exact_net`), deterministically (scaling by a power of two and
rounding are exact).
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

ACT_BITS = 12  # fractional bits of every activation
ACT_LIMIT = 2.0**24  # activations are clipped to +-this many steps (+-4096)
WEIGHT_BITS = 12  # magnitude bits of each output channel's largest weight
EXACT_LIMIT = 2.0**53  # float64 holds every integer below this exactly
DPB_BITS = 10  # reference pictures: RGB samples of this many bits
DPB_MAX = 2**DPB_BITS - 1
MV_FRAC = 16  # motion vectors in 1/16 pel
_ONE = 2.0**ACT_BITS


class ExactnessError(ValueError):
    """A layer whose integer evaluation could not be exact (its partial sums could exceed 2^53)."""


@contextlib.contextmanager
def _exact_kernels(device: torch.device):
    # cuDNN may choose Winograd or FFT convolution, which is not an integer computation
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


class ExactConv:
    """An ``nn.Conv2d`` as integer weights, per-channel power-of-two scales and integer biases."""

    def __init__(self, conv: nn.Conv2d):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ExactnessError(f"{conv}: only plain zero-padded convolutions have an exact form here")
        w = conv.weight.detach().cpu().to(torch.float64)
        # each channel's shift from its peak's binary exponent (frexp: peak = m * 2^e, m in
        # [0.5, 1)); powers of two from ldexp, so every scale below is exact
        shifts = [WEIGHT_BITS - math.frexp(p)[1] if p > 0 else 0 for p in w.abs().flatten(1).amax(1).tolist()]
        scale = torch.tensor([math.ldexp(1.0, s) for s in shifts], dtype=torch.float64)
        self.weight = torch.round(w * scale.view(-1, 1, 1, 1))
        bias = conv.bias.detach().cpu().to(torch.float64) if conv.bias is not None else torch.zeros_like(scale)
        self.bias = torch.round(bias * scale * _ONE)
        # accumulator grid -> activation grid
        self.rescale = torch.tensor([math.ldexp(1.0, -s) for s in shifts], dtype=torch.float64).view(1, -1, 1, 1)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        bound = self.weight.abs().flatten(1).sum(1) * ACT_LIMIT + self.bias.abs()
        if float(bound.max()) >= EXACT_LIMIT:
            raise ExactnessError(f"{conv}: partial sums could reach {float(bound.max()):.3g} >= 2^53")

    def to(self, device) -> ExactConv:
        self.weight, self.bias, self.rescale = (t.to(device) for t in (self.weight, self.bias, self.rescale))
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.dilation == (1, 1):
            acc = self._gemm_conv(x)
        else:
            with _exact_kernels(x.device):
                acc = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return clip(torch.round(acc * self.rescale))

    def _gemm_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution as one channel GEMM per kernel tap, summed: on CPU, PyTorch's
        float64 convolution is its slow im2col path (no oneDNN kernel for float64), 3-4x
        slower than BLAS's dgemm on the same products. Every partial sum is still an integer
        below the bound checked at construction, so the order of the sums changes nothing."""
        n, cin, h, w = x.shape
        cout, _, kh, kw = self.weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        out = torch.empty(n, cout, ho * wo, dtype=x.dtype)
        for b in range(n):
            acc = self.bias.view(-1, 1).expand(cout, ho * wo).clone()
            for i in range(kh):
                for j in range(kw):
                    tap = xp[b, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
                    acc.addmm_(self.weight[:, :, i, j], tap.reshape(cin, ho * wo))
            out[b] = acc
        return out.view(n, cout, ho, wo)


def clip(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-ACT_LIMIT, ACT_LIMIT)


class ExactNet:
    """A ``Sequential`` of Conv2d, LeakyReLU and PixelShuffle (nested or not), on the activation grid."""

    def __init__(self, net: nn.Module):
        self.ops: list = []
        self._flatten(net)

    def _flatten(self, m: nn.Module) -> None:
        if isinstance(m, nn.Sequential):
            for child in m:
                self._flatten(child)
        elif isinstance(m, nn.Conv2d):
            self.ops.append(ExactConv(m))
        elif isinstance(m, nn.LeakyReLU):
            self.ops.append(_Leaky(m.negative_slope))
        elif isinstance(m, nn.PixelShuffle):
            self.ops.append(_Shuffle(m.upscale_factor))
        else:
            raise ExactnessError(f"{type(m).__name__} has no exact form here")

    def to(self, device) -> ExactNet:
        for op in self.ops:
            if isinstance(op, ExactConv):
                op.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x


def twins(module: nn.Module, names: tuple[str, ...], device) -> SimpleNamespace:
    """The integer twins of ``module``'s submodules ``names``, cached on the module and
    rebuilt when a weight (its storage or version) or the device changes."""
    key = (torch.device(device), tuple((p.data_ptr(), p._version) for p in module.parameters()))
    cached = getattr(module, "_exact_twins", None)
    if cached is None or cached[0] != key:
        cached = (key, SimpleNamespace(**{name: ExactNet(getattr(module, name)).to(device) for name in names}))
        module._exact_twins = cached
    return cached[1]


class _Leaky:
    def __init__(self, slope: float):
        self.slope = slope

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, torch.round(x * self.slope), x)


class _Shuffle:
    def __init__(self, factor: int):
        self.factor = factor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, self.factor)


# --- between grids -------------------------------------------------------------------------


def to_act(x: torch.Tensor) -> torch.Tensor:
    """Float values -> the activation grid (encoder inputs, decoded latents)."""
    return clip(torch.round(x.to(torch.float64) * _ONE))


def from_act(a: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return (a * (1.0 / _ONE)).to(dtype)


def samples_to_act(samples: torch.Tensor) -> torch.Tensor:
    """DPB samples (0..DPB_MAX) -> the activation grid of values in [0, 1]."""
    return torch.round(samples.to(torch.float64) * _ONE / DPB_MAX)


def act_to_samples(a: torch.Tensor) -> torch.Tensor:
    """A network's picture output -> DPB samples: x * (2^B - 1), rounded and clipped."""
    return torch.round(a * (DPB_MAX / _ONE)).clamp(0, DPB_MAX)


def samples_to_float(samples: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return (samples / DPB_MAX).to(dtype)


def float_to_samples(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.to(torch.float64) * DPB_MAX).clamp(0, DPB_MAX)


def act_to_mv(a: torch.Tensor, flow_scale: float) -> torch.Tensor:
    """A motion network's output (flow / flow_scale) -> motion vectors in 1/MV_FRAC pel."""
    return torch.round(a * (flow_scale * MV_FRAC / _ONE))


def mv_to_float(mv: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return (mv / MV_FRAC).to(dtype)


# --- motion compensation ---------------------------------------------------------------------


def warp(image: torch.Tensor, mv: torch.Tensor) -> torch.Tensor:
    """Backward warp of an integer-valued (N, C, H, W) ``image`` by ``mv`` (N, 2, H, W) in
    1/MV_FRAC pel: sample at (x + mv_x / 16, y + mv_y / 16), bilinear with integer weights,
    positions clamped to the picture (``bench.flow.backward_warp``'s border rule), the sum of
    the four weighted samples divided by 256 and rounded half to even."""
    n, c, h, w = image.shape
    device = image.device
    ys = torch.arange(h, device=device, dtype=torch.float64).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float64).view(1, 1, w)
    px = (xs * MV_FRAC + mv[:, 0].to(torch.float64)).clamp(0, (w - 1) * MV_FRAC)
    py = (ys * MV_FRAC + mv[:, 1].to(torch.float64)).clamp(0, (h - 1) * MV_FRAC)
    x0, y0 = torch.floor(px / MV_FRAC), torch.floor(py / MV_FRAC)
    fx, fy = px - x0 * MV_FRAC, py - y0 * MV_FRAC
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = image.reshape(n, c, h * w).to(torch.float64)

    def tap(yy, xx):
        idx = (yy * w + xx).to(torch.int64).view(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, idx).view(n, c, h, w)

    wx1, wy1 = fx.unsqueeze(1), fy.unsqueeze(1)
    wx0, wy0 = MV_FRAC - wx1, MV_FRAC - wy1
    total = (tap(y0, x0) * wx0 + tap(y0, x1) * wx1) * wy0 + (tap(y1, x0) * wx0 + tap(y1, x1) * wx1) * wy1
    return torch.round(total / (MV_FRAC * MV_FRAC))
