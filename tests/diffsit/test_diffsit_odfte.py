from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffsit.gop import type_map
from diffsit.odfte import ODFTE, FrameTypeEmbedder, one_step, tiny_config


def test_one_step_equals_diffusers_flow_match_euler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    g = torch.Generator().manual_seed(0)
    z_t = torch.randn(1, 16, 3, 4, 4, generator=g)
    v = torch.randn(z_t.shape, generator=g)
    for t_star in (399, 250, 999):
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        sched.set_timesteps(sigmas=[t_star / 1000])
        assert float(sched.timesteps[0]) == pytest.approx(t_star)
        ref = sched.step(v, sched.timesteps[0], z_t, return_dict=False)[0]
        torch.testing.assert_close(one_step(z_t, v, t_star), ref)


def test_multi_step_sampler_equals_the_scheduler_loop(tiny):
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(1)
    z_t = torch.randn(1, 16, 3, 4, 4)
    text = tiny.text_embedding
    steps = 4
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=torch.linspace(0.399, 0.0, steps + 1)[:-1].tolist())
    ref = z_t
    with torch.no_grad():
        for t in sched.timesteps:
            v = tiny.transformer(ref, timestep=t.expand(1), encoder_hidden_states=text, return_dict=False)[0]
            ref = sched.step(v, t, ref, return_dict=False)[0]
        ours = tiny.sample(z_t, text, steps)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # one step is the closed form
        v = tiny.transformer(z_t, timestep=torch.tensor([399.0]), encoder_hidden_states=text, return_dict=False)[0]
        torch.testing.assert_close(tiny.sample(z_t, text, 1), one_step(z_t, v, 399))


def test_fte_starts_at_zero():
    fte = FrameTypeEmbedder(8)
    like = torch.zeros(2, 3, 9, 16, 16)
    tm = torch.from_numpy(type_map(9)).expand(2, 9)
    assert torch.count_nonzero(fte(tm, like)) == 0


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = ODFTE(tiny_config())
    m.add_lora()
    return m


def test_tiny_forward_shape_and_range(tiny):
    x = torch.rand(1, 3, 9, 32, 32)
    tm = torch.from_numpy(type_map(9))[None]
    with torch.no_grad():
        y = tiny(x, tm)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with torch.no_grad():  # the zero-initialised FTE changes nothing yet
        torch.testing.assert_close(tiny(x, tm, use_fte=False), y)


def test_untrained_residual_odfte_is_the_identity(tiny):
    """tiny's residual form starts with a zero DiT output layer: x^ = x~ until trained."""
    x = torch.rand(1, 3, 9, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tiny(x, torch.from_numpy(type_map(9))[None]), x, atol=1e-6, rtol=0)


def test_tiny_backward_trains_what_the_paper_trains():
    torch.manual_seed(0)
    tiny = ODFTE(tiny_config())
    tiny.add_lora()
    with torch.no_grad():  # as after some training: a non-zero DiT output layer
        tiny.transformer.proj_out.weight.normal_(0, 0.05)
    x = torch.rand(1, 3, 9, 32, 32)
    tm = torch.from_numpy(type_map(9))[None]
    tiny.zero_grad(set_to_none=True)
    tiny(x, tm).square().mean().backward()
    grads = {n: p.grad for n, p in tiny.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("vae.encoder"))
    assert any(g is not None for n, g in grads.items() if "lora" in n)
    assert any(g is not None for n, g in grads.items() if n.startswith("fte"))
    assert all(g is None for n, g in grads.items() if n.startswith("vae.decoder"))  # frozen
    lora = [n for n, p in tiny.transformer.named_parameters() if "lora" in n]
    assert any("to_q" in n for n in lora) and any("ffn" in n for n in lora)


def test_tiny_handles_frames_wider_than_512_pixels(tiny):
    """rope_max_seq_len bounds the latent token grid per side (diffusers' test value, 32,
    failed at 640 px: the bikes clip)."""
    x = torch.rand(1, 3, 5, 32, 704)
    tm = torch.from_numpy(type_map(5))[None]
    with torch.no_grad():
        assert tiny(x, tm).shape == x.shape


def test_pretrained_folder_loads_the_wan_classes(tmp_path):
    """The wan2.1-1.3b path, on a Diffusers-format folder (vae/, transformer/) of tiny weights."""
    from diffsit.odfte import ODFTEConfig

    torch.manual_seed(2)
    src = ODFTE(tiny_config())
    src.vae.save_pretrained(tmp_path / "vae")
    src.transformer.save_pretrained(tmp_path / "transformer")
    loaded = ODFTE(ODFTEConfig(pretrained_dir=str(tmp_path), text_tokens=8, fte_channels=8, vae_tiling=True))
    for a, b in ((src.vae, loaded.vae), (src.transformer, loaded.transformer)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.vae.use_tiling
    x = torch.rand(1, 3, 5, 32, 32)
    with torch.no_grad():
        assert loaded(x, torch.from_numpy(type_map(5))[None]).shape == x.shape


def test_bf16_diffusion_path(tiny):
    x = torch.rand(1, 3, 5, 32, 32)
    tm = torch.from_numpy(type_map(5))[None]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = tiny(x, tm)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()


def test_fast_rms_norm_equals_diffusers_wan_rms_norm():
    """The VAE's norms run _rms_norm_forward (speed); they must compute what diffusers' does,
    on the same parameters, for channel-first video and channel-last tokens."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    from diffsit.odfte import _fast_rms_norms

    torch.manual_seed(0)
    for norm, x in (
        (WanRMS_norm(8, images=False), torch.randn(2, 8, 3, 10, 12)),
        (WanRMS_norm(8, channel_first=False, bias=True), torch.randn(2, 5, 8)),
    ):
        with torch.no_grad():
            norm.gamma.uniform_(0.5, 1.5)
        reference = norm(x)
        holder = torch.nn.Sequential(norm)
        _fast_rms_norms(holder)
        torch.testing.assert_close(norm(x), reference, rtol=1e-6, atol=1e-6)
        assert norm(torch.zeros_like(x)).abs().max() == 0  # all-zero channels: no NaN
    odfte = ODFTE(tiny_config())
    patched = [m for m in odfte.vae.modules() if isinstance(m, WanRMS_norm)]
    assert patched and all(m.forward.func.__name__ == "_rms_norm_forward" for m in patched)


def test_fte_on_a_small_frame_spread_equals_the_full_size_convolutions():
    """The FTE's input is constant over a frame: computing it on 7x7 and spreading the edge
    rows and columns gives the full-size result, values and gradients."""
    torch.manual_seed(0)
    fte = FrameTypeEmbedder(8)
    for p in fte.parameters():
        torch.nn.init.normal_(p, std=0.3)
    tmap = torch.tensor([[1.0, 0, 0, 1, 0]])
    for h, w in ((20, 33), (8, 9), (7, 40), (5, 6)):
        like = torch.zeros(1, 3, 5, h, w)
        full = fte.net(tmap.view(1, 1, 5, 1, 1).expand(1, 1, 5, h, w))
        fast = fte(tmap, like)
        torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    fte.double()  # gradients sum over every pixel: compare them without float32's rounding
    tmap, weight = tmap.double(), fte.net[-1].weight
    g_fast = torch.autograd.grad(fte(tmap, torch.zeros(1, 3, 5, 20, 33, dtype=torch.float64)).square().sum(), weight)[0]
    g_full = torch.autograd.grad(fte.net(tmap.view(1, 1, 5, 1, 1).expand(1, 1, 5, 20, 33)).square().sum(), weight)[0]
    torch.testing.assert_close(g_fast, g_full, rtol=1e-9, atol=1e-10)
