"""The full-scale (Wan2.1-1.3B) path on a Wan-shaped folder of tiny random weights: dit=full
saves everything, the empty-prompt embedding, presets, dtypes, gradient checkpointing and
relative pretrained paths."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("compressai")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from support import make_fake_wan, random_video

from diffsit.model import DiffSIT, MissingTextEmbedding
from diffsit.odfte import encode_empty_prompt
from diffsit.presets import WAN_13B_TRANSFORMER, preset_config
from diffsit.pretrained import MissingPretrained


@pytest.fixture
def wan(tmp_path):
    make_fake_wan(tmp_path / "wan")
    return tmp_path / "wan"


def _wan_model(wan, **odfte) -> DiffSIT:
    config = preset_config("wan2.1-1.3b", wan)
    for k, v in {"text_tokens": 8, "fte_channels": 8, "lora_rank": 4, **odfte}.items():
        setattr(config.odfte, k, v)
    torch.manual_seed(5)
    model = DiffSIT(config)
    model.odfte.set_text_embedding(encode_empty_prompt(wan, 8))
    model.update()
    return model


@pytest.mark.parametrize("full", [True, False])
def test_dit_full_saves_and_reloads_the_base_dit(wan, tmp_path, full):
    model = _wan_model(wan, full_dit=full)
    base = model.odfte.transformer.proj_out.weight
    with torch.no_grad():
        base.add_(0.25)  # a base DiT weight (proj_out carries no LoRA)
    changed = base.detach().clone()
    model.save(tmp_path / "m")
    back = DiffSIT.load(tmp_path / "m").odfte.transformer.proj_out.weight
    # dit=full: the change is ours and is there; LoRA only: the base comes from the Wan folder
    assert torch.equal(back, changed) is full


def test_dit_full_training_marks_the_model_and_resumes_with_the_change(wan, tmp_path):
    from diffsit.train.config import TrainConfig
    from diffsit.train.trainer import train

    cfg = TrainConfig(
        stage=2,
        steps=2,
        batch_size=1,
        frames=5,
        crop=(128, 128),
        data=["lavfi:testsrc2=size=128x128:rate=25"],
        model={"name": "wanfull", "odfte": {"pretrained_dir": str(wan), "text_tokens": 8, "fte_channels": 8}},
        perceptual="ms_ssim",
        dit="full",
        gradient_checkpointing=True,
        checkpoint_every=1,
        log_every=1,
    )
    assert train(cfg, tmp_path / "run", progress=False, until=1) is None  # killed after step 1
    ckpt = DiffSIT.load(tmp_path / "run" / "checkpoint")
    assert ckpt.config.odfte.full_dit
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "checkpoint" / "model.safetensors"), "pt") as f:
        assert any(k.startswith("odfte.transformer.") and "lora_" not in k for k in f.keys())
    result = DiffSIT.load(train(cfg, tmp_path / "run", progress=False))  # resumed, finished
    # the base DiT learned, and what it learned was saved and reloaded (LoRA leaves it alone)
    base = make_fake_wan(tmp_path / "again").transformer.state_dict()
    trained = {k.replace("base_layer.", ""): v for k, v in result.odfte.transformer.state_dict().items() if "lora_" not in k}
    assert any(not torch.equal(trained[k], base[k]) for k in base)


def test_empty_prompt_embedding_is_umt5s_and_a_model_without_it_says_so(wan, tmp_path, capsys):
    emb = encode_empty_prompt(wan, 8)
    assert emb.shape == (1, 8, 32) and emb[0, 0].abs().sum() > 0 and emb[0, 1:].abs().sum() == 0  # </s>, then padding zeros
    model = _wan_model(wan)
    assert torch.equal(model.odfte.text_embedding, emb) and model.config.odfte.text_embedding == "umt5-empty-prompt"
    model.odfte.text_embedding.zero_()
    model.config.odfte.text_embedding = "zeros"
    model.save(tmp_path / "m")
    with pytest.raises(MissingTextEmbedding, match="embed-prompt"):
        DiffSIT.load(tmp_path / "m")
    from diffsit.__main__ import main

    assert main(["embed-prompt", str(tmp_path / "m")]) == 0
    assert torch.equal(DiffSIT.load(tmp_path / "m").odfte.text_embedding, emb)
    shutil.rmtree(wan / "text_encoder")
    assert main(["embed-prompt", str(tmp_path / "m")]) == 2
    assert "text_encoder/" in capsys.readouterr().err


def test_pretrained_path_is_stored_relative_and_resolved_at_load(wan, tmp_path, monkeypatch):
    model = _wan_model(wan)
    model.save(tmp_path / "models" / "m")
    stored = json.loads((tmp_path / "models" / "m" / "config.json").read_text())["odfte"]["pretrained_dir"]
    assert stored == "../../wan"  # no absolute path of this machine
    # moved together, it still finds its Wan folder
    shutil.move(str(tmp_path / "models"), str(tmp_path / "moved" / "models"))
    shutil.move(str(wan), str(tmp_path / "moved" / "wan"))
    back = DiffSIT.load(tmp_path / "moved" / "models" / "m")
    assert back.weights_sha256() == model.weights_sha256()
    # moved apart: a clear error naming where it looked and how to say where it is
    shutil.move(str(tmp_path / "moved" / "wan"), str(tmp_path / "elsewhere"))
    with pytest.raises(MissingPretrained, match=r"model's config.json: .*wan.*DIFFSIT_WAN_DIR") as e:
        DiffSIT.load(tmp_path / "moved" / "models" / "m")
    assert "huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in str(e.value)
    assert DiffSIT.load(tmp_path / "moved" / "models" / "m", pretrained_dir=tmp_path / "elsewhere").weights_sha256() == model.weights_sha256()
    monkeypatch.setenv("DIFFSIT_WAN_DIR", str(tmp_path / "elsewhere"))
    assert DiffSIT.load(tmp_path / "moved" / "models" / "m").weights_sha256() == model.weights_sha256()


def test_presets_reach_training_and_the_codec(wan):
    from bench.codec import create_codec
    from diffsit.train.config import TrainConfig
    from diffsit.train.trainer import build_model
    from diffsit.zoo import load_model, spec_for_model_id

    model = build_model(TrainConfig(stage=2, name="fromwan", model={"preset": "wan2.1-1.3b", "pretrained_dir": str(wan)}))
    assert model.config.odfte.pretrained_dir == str(wan.resolve()) and model.config.odfte.lora_rank == 64 and model.config.window == 33
    assert model.config.odfte.text_embedding == "umt5-empty-prompt"  # computed once, from the folder
    codec = create_codec("diffsit", model="preset:tiny:3", allow_untrained=True)
    m = codec.model_for(1)
    assert m.model_id == "tiny-random-seed3" and spec_for_model_id(m.model_id) == "preset:tiny:3"
    with pytest.raises(ValueError, match="unknown Diff-SIT preset 'wan3'"):
        load_model("preset:wan3", allow_untrained=True)
    with pytest.raises(ValueError, match="SEED an integer"):
        load_model("preset:tiny:x", allow_untrained=True)
    with pytest.raises(MissingPretrained):
        load_model("preset:wan2.1-1.3b", allow_untrained=True, pretrained_dir=str(wan / "nope"))


def test_wan_shaped_preset_has_the_real_shapes():
    """Wan2.1-1.3B's DiT (1.42 B parameters with the FTE and LoRA 64) and VAE, built on the
    meta device: shapes without memory."""
    from diffsit.odfte import ODFTE

    config = preset_config("wan2.1-1.3b-shaped")
    assert config.odfte.transformer == WAN_13B_TRANSFORMER and config.odfte.pretrained_dir is None
    with torch.device("meta"):
        odfte = ODFTE(config.odfte)
    dit = sum(p.numel() for p in odfte.transformer.parameters())
    vae = sum(p.numel() for p in odfte.vae.parameters())
    assert 1.3e9 < dit < 1.5e9 and 100e6 < vae < 150e6
    assert odfte.transformer.config.num_layers == 30 and odfte.vae.config.base_dim == 96


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_dtype_runs_odfte_in_it_and_keeps_stem_exact(dtype):
    from diffsit.pipeline import DTYPES, decode_samples, encode_video, reconstruct
    from diffsit.stem.exact import samples_to_float
    from diffsit.zoo import load_model

    video = random_video(frames=3, height=64, width=64, seed=2)
    ref = load_model("random", allow_untrained=True)
    enc = encode_video(ref, video, output=False)
    model = load_model("random", allow_untrained=True).set_dtype(DTYPES[dtype])
    assert model.odfte.dtype == DTYPES[dtype] and model.weights_sha256() == ref.weights_sha256()  # same weights, another precision
    stream, samples = decode_samples(model, enc.data)
    assert torch.equal(samples_to_float(samples), enc.x_tilde)  # STEM does not care
    x_hat = reconstruct(model, stream, samples_to_float(samples))
    assert x_hat.dtype == torch.float32 and torch.isfinite(x_hat).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    from diffsit.gop import type_map
    from diffsit.model import random_model

    torch.manual_seed(0)
    x = torch.rand(1, 3, 5, 32, 32)
    tmap = torch.from_numpy(type_map(5))[None]
    grads = []
    for enabled in (False, True):
        model = random_model(1)
        with torch.no_grad():  # a DiT that does something (its output layer starts at zero)
            model.odfte.transformer.proj_out.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(7))
        model.odfte.set_gradient_checkpointing(enabled)
        model.odfte.train()
        model.odfte(x, tmap).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.odfte.named_parameters() if p.grad is not None})
        assert model.odfte.transformer.is_gradient_checkpointing is enabled
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("vae.encoder") for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6)


def test_fullscale_counts_odfte_on_the_meta_device():
    """The CPU estimate's count: exact FLOPs and live activation bytes of a 1080p window,
    without computing anything (the tiny config here, so it is quick)."""
    from diffsit.experiments.fullscale import LiveBytes, _odfte_count
    from diffsit.odfte import ODFTE, tiny_config

    with torch.device("meta"):
        odfte = ODFTE(tiny_config())
    one, by_op, peak = _odfte_count(odfte, 1, 9)
    two, _, _ = _odfte_count(odfte, 2, 9)
    assert one > 0 and two == 2 * one and "aten.convolution" in by_op
    assert 1088 * 1920 * 3 * 9 * 4 < peak < 200 * 2**30  # at least the input window, in float32
    with LiveBytes() as live:
        a = torch.empty(1000, device="meta")
        b = a + 1
        del b
    assert live.peak == 8000 and live.live == 4000  # a and b together, then a alone
