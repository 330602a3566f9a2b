from __future__ import annotations

import pytest
import torch

pytest.importorskip("compressai")

from diffsit.stem import exact
from diffsit.stem.mv import MVCoder, backward_warp, estimate_flow


def _shifted(dx=3, dy=2, h=64, w=128):
    torch.manual_seed(0)
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 16, w + 16), 5, 1, 2)  # smooth texture
    ref = big[..., 8 : 8 + h, 8 : 8 + w]
    cur = big[..., 8 + dy : 8 + dy + h, 8 + dx : 8 + dx + w]
    return ref, cur


def test_backward_warp_with_exact_flow():
    ref, cur = _shifted()
    flow = torch.zeros(1, 2, *cur.shape[-2:])
    flow[:, 0], flow[:, 1] = 3.0, 2.0  # cur(x) = ref(x + d)
    pred = backward_warp(ref, flow)
    torch.testing.assert_close(pred[..., :-2, :-3], cur[..., :-2, :-3])


def test_dis_flow_points_into_the_reference():
    ref, cur = _shifted()
    flow = estimate_flow(cur, ref)
    inner = flow[..., 8:-8, 8:-8]
    assert abs(float(inner[:, 0].median()) - 3.0) < 0.5 and abs(float(inner[:, 1].median()) - 2.0) < 0.5


def test_mv_frame_round_trip_is_exact_and_has_no_residual():
    torch.manual_seed(0)
    coder = MVCoder().eval()
    coder.update()
    ref, cur = _shifted()
    ref = exact.float_to_samples(ref)
    strings, enc_rec = coder.compress(cur, ref)
    assert len(strings) == 3
    dec = coder.decompress(strings, ref)
    assert torch.equal(dec, enc_rec)
    # the reconstruction is a warp of the backbone: with a zero flow it is the backbone itself
    zero = torch.zeros(1, 2, *ref.shape[-2:])
    assert torch.equal(exact.warp(ref, zero), ref)


def test_mv_coder_trains():
    torch.manual_seed(0)
    coder = MVCoder()
    ref, cur = _shifted()
    flow = estimate_flow(cur, ref)
    out = coder(flow, ref)
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    (bits / ref[0, 0].numel() + 10 * (out["x_hat"] - cur).square().mean()).backward()
    assert coder.flow_coder.g_a[0][0].weight.grad is not None
