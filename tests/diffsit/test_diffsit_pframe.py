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


def test_skip_decision_takes_the_cheaper_of_residual_and_prediction_in_the_rd_cost():
    """The encoder keeps the coded residual or sends the motion alone, whichever costs less in
    lambda * bits + w_d * SSE; the decoder rebuilds either from the strings alone. (The shipped
    P coder on a photo panned 2 pixels: a random one's residual never beats its prediction.)"""
    from skimage import data

    from diffsit.stem.pframe import MOTION_STRINGS, rd_cost
    from diffsit.zoo import load_model

    coder = load_model("tiny-lambda1").pframe
    photo = torch.from_numpy(data.astronaut()[100:180, 150:280]).permute(2, 0, 1)[None].float() / 255
    ref, cur = float_to_samples(photo[..., :64, :128]), photo[..., 2:66, 2:130]
    full, full_rec = coder.compress(cur, ref)  # no rd: the residual always
    skip_rec = coder.decompress(full[:MOTION_STRINGS], ref)
    assert not torch.equal(skip_rec, full_rec)
    seen = set()
    for lam in (0.0, 1e-3, 1e-1, 10.0, 1e6):
        rd = (lam, 100.0)
        strings, rec = coder.compress(cur, ref, rd)
        skip = rd_cost(skip_rec, cur, full[:MOTION_STRINGS], rd) <= rd_cost(full_rec, cur, full, rd)
        assert strings == (full[:MOTION_STRINGS] if skip else full)
        assert torch.equal(rec, skip_rec if skip else full_rec)
        assert torch.equal(coder.decompress(strings, ref), rec)
        seen.add(skip)
    assert seen == {True, False}  # both decisions were taken over this range of lambda
