from __future__ import annotations

import pytest
import torch

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

from diffsit.model import DiffSIT, DiffSITConfig, random_model
from diffsit.odfte import ODFTEConfig


def test_random_models_are_reproducible_and_labelled():
    a, b, c = random_model(0), random_model(0), random_model(1)
    assert a.weights_sha256() == b.weights_sha256() != c.weights_sha256()
    assert a.config.trained is False and "untrained" in a.config.description


def test_save_load_round_trip(tmp_path):
    m = random_model(3)
    m.save(tmp_path / "m")
    back = DiffSIT.load(tmp_path / "m")
    assert back.weights_sha256() == m.weights_sha256() and back.model_id == m.model_id
    # a stream made before saving decodes bit-identically after loading (tables rebuilt)
    from conftest import random_video

    from diffsit.codec import decode_intermediate, encode_video

    enc = encode_video(m, random_video(frames=4, height=64, width=64, seed=1))
    _, again = decode_intermediate(back, enc.data)
    assert torch.equal(again, enc.x_tilde)


def test_wan_based_model_saves_only_our_weights(tmp_path):
    from conftest import make_fake_wan

    from diffsit.odfte import encode_empty_prompt

    make_fake_wan(tmp_path / "wan")
    cfg = DiffSITConfig(name="wanlike", odfte=ODFTEConfig(pretrained_dir=str(tmp_path / "wan"), text_tokens=8, fte_channels=8))
    torch.manual_seed(5)
    m = DiffSIT(cfg)
    m.odfte.set_text_embedding(encode_empty_prompt(tmp_path / "wan", 8))
    m.update()
    m.save(tmp_path / "ours")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert not any(k.startswith("odfte.vae.decoder.") for k in saved)
    assert not any(k.startswith("odfte.transformer.") and "lora_" not in k for k in saved)
    assert any("lora_" in k for k in saved) and any(k.startswith("odfte.vae.encoder.") for k in saved)
    assert any(k.startswith("intra.") for k in saved) and any(k.startswith("odfte.fte.") for k in saved)
    back = DiffSIT.load(tmp_path / "ours")  # the Wan folder supplies the rest
    assert back.weights_sha256() == m.weights_sha256()
