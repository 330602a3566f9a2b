"""STEM's intra coder: a hyperprior plus a spatial (checkerboard) prior, CompressAI entropy coding.

In the manner of DCVC-DC's IntraNoAR, which splits the latent into four interleaved parts
coded in turn; here it is split into two (the checkerboard of He et al. 2021): the *anchor*
half is coded with parameters from the hyperprior alone, the other half with parameters from
the hyperprior and a context computed from the decoded anchors.

Encoder and decoder compute every entropy parameter with the same code
(:meth:`IntraCoder._params`) from the same already-decoded tensors, so on one machine the
decoder reproduces the encoder's reconstruction exactly. Across machines the float
convolutions that produce the parameters must agree too, which holds for one CPU type and
thread count, as for every learned codec that entropy-codes with float parameters.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.store import file_digest

from . import exact

# the Gaussian scale table: 64 levels, log-spaced, as CompressAI's mean-scale models use
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# The range coder's tables for that scale table. They depend on nothing trained, so one copy
# ships with the package for every coder of every model, instead of being computed with erfc
# on each machine (where an ulp can move a count). gaussian_tables_sha256 pins its content.
GAUSSIAN_TABLES = Path(__file__).with_name("gaussian_tables.safetensors")
GAUSSIAN_TABLES_SHA256 = "7bad8f478d01360f8c661d877a774e31eae45edf2d047a501378826e5d36903b"
GAUSSIAN_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def compute_gaussian_tables() -> dict[str, torch.Tensor]:
    """The tables as CompressAI builds them (float32 erfc): how the shipped file was made."""
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional(None)
    table = torch.exp(torch.linspace(torch.log(torch.tensor(SCALE_MIN)), torch.log(torch.tensor(SCALE_MAX)), SCALE_LEVELS))
    gc.update_scale_table(table, force=True)
    return {name: getattr(gc, name).detach().clone().contiguous() for name in GAUSSIAN_BUFFERS}


@functools.cache
def gaussian_tables() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not GAUSSIAN_TABLES.is_file():
        raise FileNotFoundError(f"{GAUSSIAN_TABLES} is missing (it ships with diffsit; reinstall the package)")
    if file_digest(GAUSSIAN_TABLES) != GAUSSIAN_TABLES_SHA256:
        raise ValueError(f"{GAUSSIAN_TABLES} is not the file this decoder was built with (SHA-256 differs): reinstall the package")
    return load_file(str(GAUSSIAN_TABLES))


# Step levels: a coder's quantization step made finer (level > 0) or coarser (level < 0) than
# the one it was trained with, in steps of the scale table's own ratio q (about 1.131): the
# gain is multiplied by q^level. Because the table is log-spaced, multiplying a scale by q^level
# moves it by `level` table entries, so the stored thresholds serve every level (index +
# level, clamped to the table) and no machine evaluates an exp or a log to decode: q^level is
# a ratio of two stored table entries, one float64 division. Encoder and decoder apply the
# same rule, so decoding is exact; the rule is an approximation only of the entropy model.
# Where a channel's gain is below 1 and a scale sits below the table's first entry at the
# trained step, the stored thresholds cannot tell how far below, and at a finer level the
# shifted index names a Gaussian up to 8 entries too wide: 0.1-1.9 % more bytes at levels
# 6-17 than exact indexes (docs/architecture.md). Thresholds stored for the entries below the
# table would remove that, at the price of a new coding constant in every weights file.
# Rate points between and beyond a ladder's trained models (gained variable rate, Cui et al.
# CVPR 2021) are a model at a level; the stream records which (bitstream version 7).
MAX_STEP_LEVEL = SCALE_LEVELS // 2


def step_gain(level: int) -> float:
    """The gain multiplier of a step level, q^level as a ratio of two scale-table entries."""
    if isinstance(level, bool) or not isinstance(level, int) or abs(level) > MAX_STEP_LEVEL:
        raise ValueError(f"a step level is an integer from {-MAX_STEP_LEVEL} to {MAX_STEP_LEVEL}, got {level!r}")
    table = gaussian_tables()["scale_table"].double()
    ratio = float(table[abs(level)]) / float(table[0])
    return ratio if level >= 0 else 1.0 / ratio


def step_ratio() -> float:
    """q, the scale table's ratio: one step level's factor on the gain."""
    return step_gain(1)


# g_a halves the size four times, so a coded picture is a multiple of 16 on each side. The
# hyperprior halves y twice more; rather than pad the picture to 64 (carphone's 176x144 would
# be coded as 192x192, 45 % more pixels), y is zero-padded to a multiple of 4 for h_a and h_s's
# output is cut back to y's size: the padding costs a few z values, not pixels.
PICTURE_MULTIPLE = 16
HYPER_MULTIPLE = 4


def coded_size(height: int, width: int) -> tuple[int, int]:
    """The picture size STEM codes a height x width frame at (padded by edge replication)."""
    return -(-height // PICTURE_MULTIPLE) * PICTURE_MULTIPLE, -(-width // PICTURE_MULTIPLE) * PICTURE_MULTIPLE


def _pad_for_hyper(y: torch.Tensor) -> torch.Tensor:
    ph, pw = (-y.shape[-2]) % HYPER_MULTIPLE, (-y.shape[-1]) % HYPER_MULTIPLE
    return F.pad(y, (0, pw, 0, ph)) if ph or pw else y


def _z_size(y_size) -> tuple[int, int]:
    return tuple(-(-int(v) // HYPER_MULTIPLE) for v in y_size)


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.1))


def _up(cin: int, cout: int, act: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2)]
    if act:
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def checkerboard(shape: tuple[int, ...], device=None) -> torch.Tensor:
    """1 on anchor positions ((i + j) even), 0 elsewhere, broadcastable over (B, C, H, W)."""
    h, w = shape[-2:]
    i = torch.arange(h, device=device).view(-1, 1)
    j = torch.arange(w, device=device).view(1, -1)
    return ((i + j) % 2 == 0).to(torch.float32).view(1, 1, h, w)


class IntraCoder(nn.Module):
    """Image (B, C, H, W), H and W multiples of 16 (``PICTURE_MULTIPLE``) -> strings -> image.

    ``channels=3`` codes RGB frames in [0, 1]; the MV and P coders reuse it for 2-channel flow
    fields and for [frame, context]. Coding works on the activation grid
    (``diffsit.stem.exact``); what its output means (samples, motion vectors) is the caller's.
    """

    def __init__(self, n: int = 32, m: int = 48, channels: int = 3):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck, GaussianConditional

        self.g_a = nn.Sequential(_down(channels, n), _down(n, n), _down(n, n), nn.Conv2d(n, m, 5, stride=2, padding=2))
        self.g_s = nn.Sequential(_up(m, n), _up(n, n), _up(n, n), _up(n, channels, act=False))
        self.h_a = nn.Sequential(nn.Conv2d(m, n, 3, padding=1), nn.LeakyReLU(0.1), _down(n, n), nn.Conv2d(n, n, 5, stride=2, padding=2))
        self.h_s = nn.Sequential(_up(n, n), _up(n, n), nn.Conv2d(n, 2 * m, 3, padding=1))
        self.context = nn.Conv2d(m, 2 * m, 5, padding=2)
        self.fuse = nn.Sequential(nn.Conv2d(4 * m, 2 * m, 1), nn.LeakyReLU(0.1), nn.Conv2d(2 * m, 2 * m, 1))
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian = GaussianConditional(None)
        for name, t in gaussian_tables().items():
            getattr(self.gaussian, name).resize_(t.shape).copy_(t)
        # Per-channel quantization gain (step 1/g), the rate knob of gained variable-rate
        # codecs (Cui et al., CVPR 2021): y, and the predicted means and scales, are scaled
        # by g before rounding and y back after, so the transforms and the prior work in one
        # unit space. A lambda fine-tune moves this one parameter per channel quickly (its
        # own learning rate), where re-learning the transforms' scale takes many steps.
        self.log_gain = nn.Parameter(torch.zeros(1, m, 1, 1))
        # Training only: what the decoder sees. False: straight-through rounding (as coded);
        # True: additive uniform noise, which lets a freshly initialised encoder, whose
        # latents all round to the mean, start transmitting (set by diffsit.train).
        self.noisy_decoder_input = False
        # coding's constants (update()): the gain exp(log_gain) and, per channel, the
        # activation thresholds of the scale indexes, computed once and stored, so no machine
        # evaluates an exp or log to decode
        self.register_buffer("exact_gain", torch.ones(m, dtype=torch.float64))
        self.register_buffer("exact_thresholds", torch.zeros(m, SCALE_LEVELS - 1, dtype=torch.float64))
        # coding only, not a weight: the step level the next compress/decompress codes at
        self.step_level = 0

    # --- entropy parameters: one code path for encoder and decoder ---------------------------

    def _params(self, hyper: torch.Tensor, anchors_hat: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.context(anchors_hat) if anchors_hat is not None else torch.zeros_like(hyper)
        scales, means = self.fuse(torch.cat([hyper, ctx], dim=1)).chunk(2, dim=1)
        return F.softplus(scales) + SCALE_MIN, means

    # --- training --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> dict:
        """Reconstruction and likelihoods, with additive-noise quantization (training)."""
        y = self.g_a(x)
        z_hat, z_lik = self.entropy_bottleneck(self.h_a(_pad_for_hyper(y)))
        y_hat, y_lik = self.train_y(y, self.hyper_float(z_hat, y))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}}

    def hyper_float(self, z_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """h_s's output cut to y's size (training's twin of :meth:`hyper`)."""
        return self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]

    def train_y(self, y: torch.Tensor, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two-pass model as coding uses it: noise likelihoods, straight-through values."""
        mask = checkerboard(y.shape, y.device)
        g = self.log_gain.exp()
        s_a, m_a = self._params(hyper, None)
        _, lik_a = self.gaussian(y * g, s_a * g, means=m_a * g)
        anchors = self._q(y * g, m_a * g) / g * mask  # decoder input
        s_b, m_b = self._params(hyper, anchors)
        _, lik_b = self.gaussian(y * g, s_b * g, means=m_b * g)
        y_hat = anchors + self._q(y * g, m_b * g) / g * (1 - mask)
        return y_hat, torch.where(mask.bool().expand_as(y), lik_a, lik_b)

    def _q(self, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        if self.noisy_decoder_input and self.training:
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        return self._ste(y, means)

    @staticmethod
    def _ste(y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        return torch.round(y - means).detach() + (y - means) - (y - means).detach() + means

    # --- coding: integer-exact (diffsit.stem.exact) ----------------------------------------

    def update(self) -> None:
        """Build what coding needs and must not recompute at decode time (after training or
        loading old weights): the hyperprior's range-coder tables, and the exact gain and
        scale-index thresholds, which take an exp and a log. Saved with the weights. (The
        Gaussian tables are the package's, set at construction.)"""
        self.entropy_bottleneck.update(force=True)
        gain = [math.exp(v) for v in self.log_gain.detach().double().flatten().tolist()]
        table = self.gaussian.scale_table.double().tolist()
        self.exact_gain.copy_(torch.tensor(gain, dtype=torch.float64))
        self.exact_thresholds.copy_(torch.tensor([[_threshold(t / g) for t in table[:-1]] for g in gain], dtype=torch.float64))

    def exact_nets(self, device) -> SimpleNamespace:
        """The integer twins of the coding networks (``exact.twins``)."""
        return exact.twins(self, ("g_a", "h_a", "h_s", "context", "fuse", "g_s"), device)

    def _exact_params(self, nets, hyper: torch.Tensor, anchors: torch.Tensor | None):
        """Scale indexes and gained means from integer activations: exact on every machine."""
        ctx = nets.context(anchors) if anchors is not None else torch.zeros_like(hyper)
        scales, means = nets.fuse(torch.cat([hyper, ctx], dim=1)).chunk(2, dim=1)
        thresholds = self.exact_thresholds.to(scales.device)
        idx = (scales.unsqueeze(-1) > thresholds.view(1, -1, 1, 1, thresholds.shape[-1])).sum(-1)
        if self.step_level:
            idx = (idx + self.step_level).clamp_(0, SCALE_LEVELS - 1)
        return idx.to(torch.int32), exact.from_act(means, torch.float64) * self._coding_gain(means.device)

    def _coding_gain(self, device) -> torch.Tensor:
        """The per-channel gain coding uses, (1, M, 1, 1): the stored exact gain at the step level."""
        gain = self.exact_gain.to(device).view(1, -1, 1, 1)
        return gain * step_gain(self.step_level) if self.step_level else gain

    def _code_half(self, y_g, idx, means_g, mask, string: bytes | None = None) -> tuple[torch.Tensor, bytes]:
        """Encode (``string`` None) or decode the positions where mask == 1; their decoded
        values on the activation grid (ungained), and the string."""
        sel = mask.bool().expand_as(means_g)
        index = idx[sel].view(1, 1, -1)
        mu = means_g[sel].view(1, 1, -1)
        if string is None:
            string = self.gaussian.compress(y_g[sel].view(1, 1, -1), index, means=mu)[0]
        values = self.gaussian.decompress([string], index, means=mu)
        gain = self._coding_gain(values.device).expand_as(means_g)[sel]
        out = torch.zeros_like(means_g)
        out[sel] = exact.to_act(values.view(-1) / gain)
        return out, string

    @torch.no_grad()
    def compress_image(self, x: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """An intra frame: RGB (1, 3, H, W) in [0, 1] -> strings, and its decoded picture (DPB samples)."""
        strings, out = self.compress(x)
        return strings, exact.act_to_samples(out)

    @torch.no_grad()
    def decompress_image(self, strings: list[bytes], size: tuple[int, int], device="cpu") -> torch.Tensor:
        return exact.act_to_samples(self.decompress(strings, size, device))

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """One input (image in [0, 1], or flow / FLOW_SCALE) -> [z, anchors, non-anchors]
        strings, and the synthesis output on the activation grid, as the decoder makes it."""
        if x.shape[0] != 1:
            raise ValueError("compress one image at a time")
        nets = self.exact_nets(x.device)
        return self.compress_act(nets, exact.to_act(x))

    def compress_act(self, nets, x_act: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        y_act, hyper, z_string = self.analyse(nets, x_act)
        y_hat, strings = self.code_y(nets, hyper, y_act)
        return [z_string, *strings], nets.g_s(y_hat)

    def analyse(self, nets, x_act: torch.Tensor, prior: torch.Tensor | None = None):
        """Encoder: y, the hyperprior (plus ``prior``, a temporal one) and z's string."""
        y_act = nets.g_a(x_act)
        z = exact.from_act(nets.h_a(_pad_for_hyper(y_act)), torch.float64)
        z_strings = self.entropy_bottleneck.compress(z)
        return y_act, self.hyper(nets, z_strings[0], y_act.shape[-2:], prior), z_strings[0]

    def hyper(self, nets, z_string: bytes, y_size, prior: torch.Tensor | None = None) -> torch.Tensor:
        """The hyperprior for a y of ``y_size`` (h, w) from z's string (plus ``prior``)."""
        z_hat = self.entropy_bottleneck.decompress([z_string], _z_size(y_size)).to(torch.float64)
        hyper = nets.h_s(exact.to_act(z_hat))[..., : y_size[0], : y_size[1]]
        return hyper if prior is None else exact.clip(hyper + prior)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], size: tuple[int, int], device="cpu") -> torch.Tensor:
        """Strings -> the synthesis output on the activation grid."""
        nets = self.exact_nets(device)
        hyper = self.hyper(nets, strings[0], (size[0] // PICTURE_MULTIPLE, size[1] // PICTURE_MULTIPLE))
        y_hat, _ = self.code_y(nets, hyper, None, strings[1:])
        return nets.g_s(y_hat)

    def code_y(self, nets, hyper, y_act, strings=None):
        """Code y (or decode it from ``strings``) given the prior ``hyper`` (B, 2M, h, w),
        both on the activation grid; y^ on the activation grid, and the two strings."""
        mask = checkerboard(hyper.shape, hyper.device).to(torch.float64)
        gain = self._coding_gain(hyper.device)
        y_g = None if y_act is None else exact.from_act(y_act, torch.float64) * gain
        idx, mu = self._exact_params(nets, hyper, None)
        a_hat, a_str = self._code_half(y_g, idx, mu, mask, None if strings is None else strings[0])
        idx, mu = self._exact_params(nets, hyper, a_hat * mask)
        b_hat, b_str = self._code_half(y_g, idx, mu, 1 - mask, None if strings is None else strings[1])
        return a_hat * mask + b_hat * (1 - mask), [a_str, b_str]


def _threshold(r: float) -> float:
    """The largest activation (in grid steps) whose scale softplus(a) + 0.11 is at most r: a
    scale index counts the table entries t with scale * gain > t, i.e. activations above
    this threshold for r = t / gain."""
    r -= SCALE_MIN
    if r <= 0:
        return -exact.EXACT_LIMIT  # every activation's scale exceeds it
    inverse = r + math.log(-math.expm1(-r))  # softplus^-1(r) = log(exp(r) - 1), stably
    return float(math.floor(inverse * 2.0**exact.ACT_BITS))
