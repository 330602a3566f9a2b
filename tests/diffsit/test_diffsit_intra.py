from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("compressai")

from diffsit.stem.intra import IntraCoder, checkerboard, coded_size


@pytest.fixture(scope="module")
def coder():
    torch.manual_seed(0)
    c = IntraCoder().eval()
    c.update()
    return c


def test_checkerboard():
    m = checkerboard((1, 1, 2, 3))
    assert m.view(2, 3).tolist() == [[1, 0, 1], [0, 1, 0]]


def test_training_forward_gives_likelihoods_and_gradients():
    torch.manual_seed(0)
    c = IntraCoder()
    x = torch.rand(2, 3, 64, 128)
    out = c(x)
    assert out["x_hat"].shape == x.shape
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    loss = bits / x[0, 0].numel() + (out["x_hat"] - x).square().mean()
    loss.backward()
    assert c.g_a[0][0].weight.grad is not None and c.context.weight.grad is not None


def test_entropy_round_trip_is_exact(coder):
    x = torch.rand(1, 3, 128, 192)
    strings, enc_rec = coder.compress(x)
    assert len(strings) == 3 and all(isinstance(s, bytes) and len(s) > 0 for s in strings)
    dec = coder.decompress(strings, (128, 192))
    assert torch.equal(dec, enc_rec)


def test_pictures_are_coded_at_a_multiple_of_16_not_64(coder):
    """carphone (176x144) is coded as it is, where a multiple of 64 coded 192x192 (+45 %
    pixels); y is padded for the hyperprior instead, and the decoder sizes it the same way."""
    assert coded_size(144, 176) == (144, 176) and coded_size(272, 640) == (272, 640) and coded_size(1080, 1920) == (1088, 1920)
    x = torch.rand(1, 3, 144, 176)
    strings, enc_rec = coder.compress(x)
    assert enc_rec.shape[-2:] == (144, 176)
    assert torch.equal(coder.decompress(strings, (144, 176)), enc_rec)
    out = IntraCoder()(torch.rand(1, 3, 144, 176))  # the training twin takes the same sizes
    assert out["x_hat"].shape[-2:] == (144, 176)


def test_round_trip_in_a_separate_process(coder, tmp_path):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64)
    strings, enc_rec = coder.compress(x)
    torch.save({"state": coder.state_dict(), "strings": strings}, tmp_path / "s.pt")
    script = (
        "import torch, sys\n"
        "from diffsit.stem.intra import IntraCoder\n"
        f"d = torch.load({str(tmp_path / 's.pt')!r}, weights_only=False)\n"
        "c = IntraCoder().eval(); c.update(); c.load_state_dict(d['state']); c.update()\n"
        f"torch.save(c.decompress(d['strings'], (64, 64)), {str(tmp_path / 'rec.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**__import__("os").environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert torch.equal(torch.load(tmp_path / "rec.pt"), enc_rec)


def test_quantization_gain_is_the_rate_knob():
    """A larger per-channel gain (finer quantization step) costs more bits; coding stays exact."""
    torch.manual_seed(0)
    c = IntraCoder().eval()
    x = torch.rand(1, 3, 128, 128)
    sizes = []
    for log_gain in (-1.0, 0.0, 1.5):
        with torch.no_grad():
            c.log_gain.fill_(log_gain)
        c.update()
        strings, rec = c.compress(x)
        assert torch.equal(rec, c.decompress(strings, (128, 128)))
        sizes.append(sum(len(s) for s in strings[1:]))  # the y strings (z does not depend on the gain)
    assert sizes[0] < sizes[1] < sizes[2]
    assert "log_gain" in dict(c.named_parameters())
