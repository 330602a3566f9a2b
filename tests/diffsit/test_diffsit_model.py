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
    from support import random_video

    from diffsit.pipeline import decode_intermediate, encode_video

    enc = encode_video(m, random_video(frames=4, height=64, width=64, seed=1))
    _, again = decode_intermediate(back, enc.data)
    assert torch.equal(again, enc.x_tilde)


def test_wan_based_model_saves_only_our_weights(tmp_path):
    from support import make_fake_wan

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


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_a_deferred_model_is_the_eager_one_bit_for_bit():
    """deferred=True records ODFTE's initialisation instead of holding it: materialized, the
    model holds the same tensors, hashes the same, and the generator ends where it would have."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        eager = DiffSIT(DiffSITConfig())
        after = torch.get_rng_state()
        torch.manual_seed(7)
        lazy = DiffSIT(DiffSITConfig(), deferred=True)
        assert torch.equal(torch.get_rng_state(), after)
    names = lazy.deferred_names()
    assert names and all(k.startswith("odfte.") for k in names)
    assert lazy.materialize().weights_sha256() == eager.weights_sha256()
    assert not lazy.deferred_names() and _same(eager.state_dict(), lazy.state_dict())
    assert _same(dict(eager.named_buffers()), dict(lazy.named_buffers()))
    assert [p.requires_grad for p in eager.parameters()] == [p.requires_grad for p in lazy.parameters()]


def test_a_model_loads_straight_into_bf16_with_the_float32_weights_hash(tmp_path):
    """What set_dtype gives after an fp32 load, without the fp32 copy: a stream names the
    weights as drawn or stored, whatever precision ODFTE runs in."""
    fp32 = random_model(3)
    fp32.save(tmp_path / "m")
    want = random_model(3).set_dtype(torch.bfloat16)
    for got in (random_model(3, dtype=torch.bfloat16), DiffSIT.load(tmp_path / "m", dtype=torch.bfloat16)):
        assert got.weights_sha256() == fp32.weights_sha256() and got.odfte.dtype == torch.bfloat16
        assert _same(want.state_dict(), got.state_dict()) and _same(dict(want.named_buffers()), dict(got.named_buffers()))
    for got in (random_model(3, dtype=torch.float32), DiffSIT.load(tmp_path / "m", dtype=torch.float32)):
        assert _same(fp32.state_dict(), got.state_dict())  # the codec's default names float32


def test_a_construction_that_reads_a_deferred_weight_is_refused():
    from diffsit.deferred import Deferred, DeferredInitError

    with pytest.raises(DeferredInitError, match="deferred weight"), Deferred():
        torch.nn.Linear(4, 4).weight.sum()
    with pytest.raises(DeferredInitError), Deferred(), torch.no_grad():
        torch.nn.Linear(4, 4).weight[0].uniform_()
