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

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    """Image (B, C, H, W), H and W multiples of 64 -> strings -> image.

    ``channels=3, clamp=True`` codes RGB frames in [0, 1]; the MV coder reuses it for
    2-channel flow fields (``clamp=False``).
    """

    def __init__(self, n: int = 32, m: int = 48, channels: int = 3, clamp: bool = True):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck, GaussianConditional

        self.clamp = clamp
        self.g_a = nn.Sequential(_down(channels, n), _down(n, n), _down(n, n), nn.Conv2d(n, m, 5, stride=2, padding=2))
        self.g_s = nn.Sequential(_up(m, n), _up(n, n), _up(n, n), _up(n, channels, act=False))
        self.h_a = nn.Sequential(nn.Conv2d(m, n, 3, padding=1), nn.LeakyReLU(0.1), _down(n, n), nn.Conv2d(n, n, 5, stride=2, padding=2))
        self.h_s = nn.Sequential(_up(n, n), _up(n, n), nn.Conv2d(n, 2 * m, 3, padding=1))
        self.context = nn.Conv2d(m, 2 * m, 5, padding=2)
        self.fuse = nn.Sequential(nn.Conv2d(4 * m, 2 * m, 1), nn.LeakyReLU(0.1), nn.Conv2d(2 * m, 2 * m, 1))
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian = GaussianConditional(None)
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

    # --- entropy parameters: one code path for encoder and decoder ---------------------------

    def _params(self, hyper: torch.Tensor, anchors_hat: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.context(anchors_hat) if anchors_hat is not None else torch.zeros_like(hyper)
        scales, means = self.fuse(torch.cat([hyper, ctx], dim=1)).chunk(2, dim=1)
        return F.softplus(scales) + 0.11, means

    # --- training --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> dict:
        """Reconstruction and likelihoods, with additive-noise quantization (training)."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        y_hat, y_lik = self.train_y(y, self.h_s(z_hat))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}}

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

    # --- coding ------------------------------------------------------------------------------

    def update(self) -> None:
        """Build the CDF tables the range coder needs (after training or loading)."""
        from compressai.entropy_models.entropy_models import GaussianConditional

        self.entropy_bottleneck.update(force=True)
        scale_table = torch.exp(torch.linspace(torch.log(torch.tensor(0.11)), torch.log(torch.tensor(256.0)), 64))
        GaussianConditional.update_scale_table(self.gaussian, scale_table, force=True)

    def _code_half(self, y, scales, means, mask, string: bytes | None = None) -> tuple[torch.Tensor, bytes]:
        """Encode (``string`` None) or decode the positions where mask == 1.

        Returns their dequantized values (as the decoder sees them) and the string."""
        sel = mask.bool().expand_as(scales)
        idx = self.gaussian.build_indexes(scales[sel].view(1, 1, -1))
        mu = means[sel].view(1, 1, -1)
        if string is None:
            string = self.gaussian.compress(y[sel].view(1, 1, -1), idx, means=mu)[0]
        values = self.gaussian.decompress([string], idx, means=mu)
        out = torch.zeros_like(scales)
        out[sel] = values.view(-1).to(out.dtype)
        return out, string

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """One image -> [z, anchors, non-anchors] strings, and the reconstruction the decoder will make."""
        if x.shape[0] != 1:
            raise ValueError("compress one image at a time")
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        y_hat, strings = self._code_y(self.h_s(z_hat), y)
        return [z_strings[0], *strings], self._out(y_hat)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], size: tuple[int, int]) -> torch.Tensor:
        zh, zw = size[0] // 64, size[1] // 64
        z_hat = self.entropy_bottleneck.decompress([strings[0]], (zh, zw))
        y_hat, _ = self._code_y(self.h_s(z_hat), None, strings[1:])
        return self._out(y_hat)

    def _out(self, y_hat: torch.Tensor) -> torch.Tensor:
        x = self.g_s(y_hat)
        return x.clamp(0, 1) if self.clamp else x

    def _code_y(self, hyper, y, strings=None):
        """Code y (or decode it from ``strings``) given the prior ``hyper`` (B, 2M, h, w)."""
        mask = checkerboard(hyper.shape, hyper.device)
        g = self.log_gain.exp()
        ys = None if y is None else y * g
        s_a, m_a = self._params(hyper, None)
        a_hat, a_str = self._code_half(ys, s_a * g, m_a * g, mask, None if strings is None else strings[0])
        a_hat = a_hat / g
        s_b, m_b = self._params(hyper, a_hat * mask)
        b_hat, b_str = self._code_half(ys, s_b * g, m_b * g, 1 - mask, None if strings is None else strings[1])
        return a_hat * mask + b_hat / g * (1 - mask), [a_str, b_str]
