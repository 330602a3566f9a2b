from __future__ import annotations

import pytest
import torch

pytest.importorskip("compressai")

from diffsit.stem.exact import DPB_MAX, float_to_samples
from diffsit.stem.mv import estimate_flow
from diffsit.stem.pframe import PCoder


def _pair(h=64, w=128):
    torch.manual_seed(0)
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 16, w + 16), 5, 1, 2)
    return big[..., 8 : 8 + h, 8 : 8 + w], big[..., 10 : 10 + h, 11 : 11 + w]


def test_p_frame_round_trip_is_exact():
    torch.manual_seed(0)
    coder = PCoder().eval()
    coder.update()
    ref, cur = _pair()
    ref = float_to_samples(ref)  # the reference as the DPB holds it
    strings, enc_rec = coder.compress(cur, ref)
    assert len(strings) == 6 and all(isinstance(s, bytes) for s in strings)  # motion z,a,b + frame z,a,b
    assert torch.equal(coder.decompress(strings, ref), enc_rec)
    assert enc_rec.shape == cur.shape
    assert torch.equal(enc_rec, enc_rec.round().clamp(0, DPB_MAX))  # DPB samples


def test_p_coder_trains_end_to_end():
    torch.manual_seed(0)
    coder = PCoder()
    ref, cur = _pair()
    out = coder(cur, ref, estimate_flow(cur, ref))
    liks = [out["likelihoods"]["y"], out["likelihoods"]["z"], *out["likelihoods"]["mv"].values()]
    bits = sum(-torch.log2(lik).sum() for lik in liks)
    (bits / ref[0, 0].numel() + (out["x_hat"] - cur).square().mean()).backward()
    for mod in (coder.motion.g_a, coder.feature, coder.codec.g_a, coder.temporal_prior, coder.out):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
