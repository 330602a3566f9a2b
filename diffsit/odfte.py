"""ODFTE: one-step diffusion with a frame-type embedder, on diffusers' Wan2.1 classes.

    x~ (intermediate video from STEM, RGB in [0, 1])
      -> tokenize: z^n = 2 x~ - 1 (the Wan VAE's input range)                      [our reading]
      -> z~^n = z^n + c, c = FTE(type map)  (zero-initialised, so training starts at z^n)
      -> Wan VAE encoder (trainable) -> normalised latent z_t
      -> WanTransformer3DModel at t* (trainable, LoRA through peft), velocity v
      -> one flow-matching Euler step to t = 0:  z_0 = z_t - (t*/1000) v
      -> Wan VAE decoder (frozen) -> x^ in [0, 1]

The text condition is a cached embedding of the empty prompt (a buffer saved with the
weights), so no text encoder is needed at decode time. For Wan2.1 it is computed once from
the Wan folder's umT5 (:func:`encode_empty_prompt`, as WanPipeline encodes a prompt); the
tiny config has no text encoder, and its condition is zeros. t* defaults to 399, as the same lab's
one-step restorer DOVE uses; the paper does not give it.

Configs: ``tiny`` builds the same classes at CPU size (random until trained); ``wan2.1-1.3b``
loads ``AutoencoderKLWan`` and ``WanTransformer3DModel`` from a local
Wan2.1-T2V-1.3B-Diffusers folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

DEFAULT_T_STAR = 399
NUM_TRAIN_TIMESTEPS = 1000
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")


@dataclass
class ODFTEConfig:
    vae: dict[str, Any] = field(default_factory=dict)
    transformer: dict[str, Any] = field(default_factory=dict)
    t_star: int = DEFAULT_T_STAR
    text_tokens: int = 8
    fte_channels: int = 16
    lora_rank: int = 4
    pretrained_dir: str | None = None  # Wan2.1-T2V-1.3B-Diffusers folder for the real model
    # spatial tiling of the Wan VAE (diffusers' enable_tiling), so 1080p fits in memory; the
    # temporal extent is already bounded by the 9+12m windows
    vae_tiling: bool = False
    # Residual form (our choice for the tiny config, off for Wan2.1-1.3B): x^ = x~ + D(z_0) - D(z_t),
    # the DiT's change of the latent, decoded, added to x~; the DiT's output layer starts at
    # zero, so an untrained ODFTE is the identity. A tiny VAE trained for minutes on a CPU
    # reconstructs far below the STEM output's quality (~19 dB against Wan's ~33 dB), and with
    # the paper's direct form D(z_0) its frozen decoder would bound x^ below x~.
    residual: bool = False
    # what text_embedding holds: "zeros" (no text encoder: the tiny config) or
    # "umt5-empty-prompt" (Wan's, set by encode_empty_prompt); a pretrained model needs the latter
    text_embedding: str = "zeros"
    # the base DiT weights were trained (dit=full), so a pretrained-based model saves them too
    full_dit: bool = False


def tiny_config() -> ODFTEConfig:
    """Same classes as Wan2.1, sized for a CPU.

    The VAE downsamples 8x in space, as Wan's does, and 2x in time (Wan: 4x), so its latent
    holds 1/24 of the input's values instead of 1/48: a VAE this small, trained for minutes on
    a CPU, cannot reconstruct through Wan's bottleneck (the residual form below is why its
    quality does not bound x^'s). At 4x its middle block's attention, over every latent pixel
    of a frame, took 41 % of a 720p window's time (docs/measurements/diffsit.md); at 8x it has
    a sixteenth of the pairs. The DiT patchifies 2x2, as Wan does, which keeps a 720p window at
    Wan's token count. rope_max_seq_len bounds the latent token grid per side (1024 as in Wan)."""
    return ODFTEConfig(
        vae=dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, False, True]),
        transformer=dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=64,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=1024,
        ),
        text_tokens=8,
        fte_channels=8,
        residual=True,
    )


def wan_13b_config(folder: str | Path) -> ODFTEConfig:
    return ODFTEConfig(pretrained_dir=str(folder), text_tokens=512, fte_channels=32, lora_rank=64, vae_tiling=True)


TEXT_ENCODER_MISSING = (
    "the empty-prompt embedding is computed from the Wan folder's text encoder: {folder} needs text_encoder/ (umT5-XXL) "
    "and tokenizer/, as in Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
)


@torch.no_grad()
def encode_empty_prompt(folder: str | Path, tokens: int = 512, device: str = "cpu") -> torch.Tensor:
    """umT5's embedding of the empty prompt, (1, tokens, 4096), as WanPipeline computes a
    prompt's: tokenized to ``tokens`` with padding, encoded with its attention mask, then
    every position past the prompt's own tokens (here only </s>) set to zero."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = Path(folder)
    if not (root / "text_encoder").is_dir() or not (root / "tokenizer").is_dir():
        raise FileNotFoundError(TEXT_ENCODER_MISSING.format(folder=root))
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    encoder = UMT5EncoderModel.from_pretrained(root / "text_encoder", local_files_only=True).to(device).eval()
    batch = tokenizer([""], padding="max_length", max_length=tokens, truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    hidden = encoder(ids, mask).last_hidden_state.float()
    length = int(mask.sum())
    hidden[:, length:] = 0
    return hidden.cpu()


def one_step(z_t: torch.Tensor, velocity: torch.Tensor, t_star: int) -> torch.Tensor:
    """The flow-matching Euler step from sigma = t*/1000 to 0 (diffusers' FlowMatchEuler, shift 1)."""
    return z_t - (t_star / NUM_TRAIN_TIMESTEPS) * velocity


def _rms_norm_forward(norm, x: torch.Tensor) -> torch.Tensor:
    """WanRMS_norm's forward, x / ||x|| * sqrt(C) * gamma + bias over the channels, as one
    reduction and two multiplies. diffusers' F.normalize reduces over the strided channel
    dimension of a (B, C, T, H, W) tensor through linalg_vector_norm, which took 17 % of a
    720p window on 2 cores and is 6x slower than this sum of squares; the values agree to
    rounding (F.normalize divides by max(||x||, 1e-12), this multiplies by the rsqrt)."""
    dim = 1 if norm.channel_first else -1
    xf = x.float() if x.dtype != torch.float32 and x.dtype != torch.float64 else x
    inv = torch.rsqrt((xf * xf).sum(dim=dim, keepdim=True).clamp_min(1e-24))
    return (xf * inv).to(x.dtype) * (norm.scale * norm.gamma) + norm.bias


def _fast_rms_norms(module: nn.Module) -> None:
    """Give every WanRMS_norm in ``module`` :func:`_rms_norm_forward` (same parameters, same
    state dict: only how the norm is computed changes)."""
    import functools

    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    for m in module.modules():
        if isinstance(m, WanRMS_norm):
            m.forward = functools.partial(_rms_norm_forward, m)


class FrameTypeEmbedder(nn.Module):
    """f_type: the per-frame type map (1 backbone, 0 MV) -> an offset c in the tokenized space.

    A small 3-D conv net whose last layer starts at zero, so an untrained FTE changes nothing.
    """

    def __init__(self, channels: int = 16, out_channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv3d(channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    #: how far a pixel of the output sees (three 3x3x3 convolutions)
    RADIUS = 3

    def forward(self, type_map: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """type_map (B, T) -> c shaped like ``like`` (B, 3, T, H, W).

        The map is constant over each frame, so c is too, except within RADIUS pixels of the
        frame's edge, where the convolutions' zero padding shows. The net runs on a frame of
        2 RADIUS + 1 pixels a side, whose rows and columns are those of the edges and one of
        the inside, and those are spread over H x W: at 720p, full-size 3-D convolutions of
        the FTE took 7 % of a window."""
        b, _, t, h, w = like.shape
        r = self.RADIUS
        m = type_map.to(like.dtype).view(b, 1, t, 1, 1)
        if h <= 2 * r + 1 or w <= 2 * r + 1:
            return self.net(m.expand(b, 1, t, h, w))
        small = self.net(m.expand(b, 1, t, 2 * r + 1, 2 * r + 1))
        return small.index_select(3, self._spread(h, like.device)).index_select(4, self._spread(w, like.device))

    def _spread(self, n: int, device) -> torch.Tensor:
        """For each of n positions, its row (column) of the small frame: the first and last
        RADIUS positions their own, every other one the middle."""
        r = self.RADIUS
        i = torch.arange(n, device=device)
        return torch.where(i < r, i, torch.where(i >= n - r, i - (n - 2 * r - 1), torch.full_like(i, r)))


class ODFTE(nn.Module):
    def __init__(self, config: ODFTEConfig):
        super().__init__()
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        self.config = config
        if config.pretrained_dir:
            root = Path(config.pretrained_dir)
            self.vae = AutoencoderKLWan.from_pretrained(root / "vae", local_files_only=True)
            self.transformer = WanTransformer3DModel.from_pretrained(root / "transformer", local_files_only=True)
        else:
            self.vae = AutoencoderKLWan(**config.vae)
            self.transformer = WanTransformer3DModel(**config.transformer)
        if config.vae_tiling:
            self.vae.enable_tiling()
        _fast_rms_norms(self.vae)
        if config.residual and not config.pretrained_dir:
            nn.init.zeros_(self.transformer.proj_out.weight)
            nn.init.zeros_(self.transformer.proj_out.bias)
        text_dim = self.transformer.config.text_dim
        self.register_buffer("text_embedding", torch.zeros(1, config.text_tokens, text_dim))
        self.fte = FrameTypeEmbedder(config.fte_channels)
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32)
        self.register_buffer("latents_mean", mean.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("latents_inv_std", (1.0 / std).view(1, -1, 1, 1, 1), persistent=False)
        # training: recompute the VAE's and the DiT blocks' activations in the backward pass
        # instead of keeping them (set_gradient_checkpointing)
        self.gradient_checkpointing = False
        # The VAE decoder stays frozen, as the paper's Wan decoder does.
        for p in [*self.vae.decoder.parameters(), *self.vae.post_quant_conv.parameters()]:
            p.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.fte.net[0].weight.dtype

    def add_lora(self) -> None:
        from peft import LoraConfig

        self.transformer.add_adapter(
            LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_rank, target_modules=list(LORA_TARGETS), init_lora_weights=True)
        )

    def set_text_embedding(self, embedding: torch.Tensor, kind: str = "umt5-empty-prompt") -> None:
        """Cache the (umT5) embedding of the empty prompt, computed once outside the codec."""
        self.text_embedding.copy_(embedding.reshape(self.text_embedding.shape))
        self.config.text_embedding = kind

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """The DiT through diffusers' per-block checkpointing; the VAE as whole encode and
        decode calls, which are pure functions of their input (each starts by clearing the
        causal convolutions' cache), so recomputing them in the backward pass is exact."""
        self.gradient_checkpointing = enabled
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    def _vae(self, fn, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(fn, x, use_reentrant=False)
        return fn(x)

    def _encode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(z).latent_dist.mode()

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent, return_dict=False)[0]

    def sample(self, z_t: torch.Tensor, text: torch.Tensor, steps: int = 1) -> torch.Tensor:
        """Euler flow-matching from sigma = t*/1000 to 0 in ``steps`` equal steps (1 = Diff-SIT).

        More steps exist for comparison (the paper's speed claim against multi-step diffusion)."""
        sigmas = torch.linspace(self.config.t_star / NUM_TRAIN_TIMESTEPS, 0.0, steps + 1).tolist()
        b = z_t.shape[0]
        z = z_t
        for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            t = torch.full((b,), s * NUM_TRAIN_TIMESTEPS, device=z.device)
            v = self.transformer(z, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
            z = z + (s_next - s) * v
        return z

    def forward(self, x_tilde: torch.Tensor, type_map: torch.Tensor, *, use_fte: bool = True, steps: int = 1) -> torch.Tensor:
        """x_tilde (B, 3, T, H, W) in [0, 1], T = 1 + 4k and H, W multiples of 16 -> x_hat in [0, 1]."""
        z = x_tilde * 2 - 1
        if use_fte:
            z = z + self.fte(type_map, z)
        latent = self._vae(self._encode, z)
        z_t = (latent - self.latents_mean) * self.latents_inv_std
        text = self.text_embedding.to(z_t.dtype).expand(z_t.shape[0], -1, -1)
        z_0 = self.sample(z_t, text, steps)
        if self.config.residual:  # one decoder pass for both latents
            both = self._vae(self._decode, torch.cat([z_0, z_t]) / self.latents_inv_std + self.latents_mean)
            refined, unrefined = both.chunk(2)
            out = x_tilde * 2 - 1 + refined - unrefined
        else:
            out = self._vae(self._decode, z_0 / self.latents_inv_std + self.latents_mean)
        return ((out.clamp(-1, 1) + 1) / 2).to(x_tilde.dtype)
