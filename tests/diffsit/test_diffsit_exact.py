"""STEM decodes to the same bits everywhere: integer-exact layers, warps and entropy parameters,
checked against integer references, across PyTorch's CPU kernels and thread counts, with the
decoded-picture hash catching a decoder that drifts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("compressai")

from bench.flow import backward_warp
from bench.video import read_yuv
from diffsit.bitstream import PictureHashMismatch
from diffsit.stem import exact
from diffsit.stem.intra import IntraCoder


def _int_conv(x: torch.Tensor, conv: exact.ExactConv) -> torch.Tensor:
    """The convolution in int64 arithmetic (unfold + integer matmul): the exact reference."""
    k = conv.weight.shape[-1]
    cols = F.unfold(x, k, padding=conv.padding, stride=conv.stride).to(torch.int64)  # (1, C*k*k, L)
    w = conv.weight.flatten(1).to(torch.int64)
    acc = w @ cols[0] + conv.bias.to(torch.int64)[:, None]
    h = (x.shape[-2] + 2 * conv.padding[0] - k) // conv.stride[0] + 1
    return acc.view(1, -1, h, acc.shape[-1] // h)


@pytest.mark.parametrize("k,stride", [(5, 2), (3, 1), (1, 1)])
def test_a_layer_is_an_exact_integer_computation(k, stride):
    torch.manual_seed(k)
    layer = nn.Conv2d(48, 96, k, stride=stride, padding=k // 2)
    q = exact.ExactConv(layer)
    # weights are integers of at most WEIGHT_BITS bits, each channel's peak using them all
    assert torch.equal(q.weight, q.weight.round()) and q.weight.abs().max() <= 2**exact.WEIGHT_BITS
    assert (q.weight.abs().flatten(1).amax(1) >= 2 ** (exact.WEIGHT_BITS - 1)).all()
    # activations at the clip limit: the largest partial sums the bound allows
    x = torch.randint(-int(exact.ACT_LIMIT), int(exact.ACT_LIMIT) + 1, (1, 48, 20, 24), dtype=torch.int64).to(torch.float64)
    with torch.no_grad():
        acc = F.conv2d(x, q.weight, q.bias, q.stride, q.padding)
    assert torch.equal(acc.to(torch.int64), _int_conv(x, q))
    assert torch.equal(q._gemm_conv(x).to(torch.int64), _int_conv(x, q))  # the CPU path: one GEMM per tap
    # and the integer twin follows the float layer to within the grids' resolution
    xf = torch.randn(1, 48, 20, 24)
    with torch.no_grad():
        ref = layer(xf)
    got = exact.from_act(q(exact.to_act(xf)))
    assert (got - ref).abs().max() < 0.01 * ref.abs().max()


@pytest.mark.parametrize("k,stride,padding", [(5, 2, 2), (3, 1, 1), (3, 2, 0), (1, 1, 0)])
def test_the_cpu_gemm_convolution_is_pytorchs_on_odd_sizes_and_batches(k, stride, padding):
    torch.manual_seed(stride * 10 + k)
    q = exact.ExactConv(nn.Conv2d(7, 5, k, stride=stride, padding=padding))
    x = torch.randint(-int(exact.ACT_LIMIT), int(exact.ACT_LIMIT) + 1, (2, 7, 13, 19), dtype=torch.int64).to(torch.float64)
    assert torch.equal(q._gemm_conv(x), F.conv2d(x, q.weight, q.bias, q.stride, q.padding))


def test_a_layer_that_could_overflow_is_refused():
    layer = nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        layer.bias.fill_(1e30)  # its integer bias alone is past 2^53
    with pytest.raises(exact.ExactnessError, match="2\\^53"):
        exact.ExactConv(layer)


def test_warp_is_integer_bilinear_at_sixteenth_pel():
    torch.manual_seed(0)
    img = torch.randint(0, exact.DPB_MAX + 1, (1, 3, 24, 32)).to(torch.float64)
    mv = torch.zeros(1, 2, 24, 32)
    mv[:, 0], mv[:, 1] = 3 * exact.MV_FRAC, -2 * exact.MV_FRAC  # whole pixels: a plain shift
    out = exact.warp(img, mv)
    assert torch.equal(out[..., 2:, :-3], img[..., :-2, 3:])
    # half a pixel: the rounded mean of two neighbours; integer samples in, integer samples out
    mv = torch.zeros(1, 2, 24, 32)
    mv[:, 0] = exact.MV_FRAC // 2
    out = exact.warp(img, mv)
    assert torch.equal(out[..., :-1], torch.round((img[..., :-1] + img[..., 1:]) / 2))
    # a random field: bench.flow's float warp (same border rule) to within the rounding
    flow = torch.randn(1, 2, 24, 32) * 4
    mv = torch.round(flow * exact.MV_FRAC)
    ref = backward_warp(img.float(), mv.float() / exact.MV_FRAC)
    assert (exact.warp(img, mv) - ref).abs().max() <= 0.5 + 0.01  # grid_sample works in float32


def test_scale_indexes_from_thresholds_are_compressais():
    """The thresholds give, from integer activations alone, the index CompressAI's
    build_indexes gives for softplus(a) + 0.11 times the gain."""
    torch.manual_seed(0)
    c = IntraCoder(16, 24).eval()
    with torch.no_grad():
        c.log_gain.uniform_(-1.5, 2.0)
    c.update()
    act = torch.randint(-8 * 4096, 8 * 4096, (1, 24, 9, 11)).to(torch.float64)
    t = c.exact_thresholds
    idx = (act.unsqueeze(-1) > t.view(1, 24, 1, 1, -1)).sum(-1)
    scales = (F.softplus(act * 2.0**-exact.ACT_BITS) + 0.11) * c.exact_gain.view(1, -1, 1, 1)
    ref = c.gaussian.build_indexes(scales)
    assert (idx != ref).float().mean() < 1e-3  # the float reference itself rounds at the edges
    assert (idx - ref).abs().max() <= 1


# --- whole streams, across kernels and threads -------------------------------------------------

DECODE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from diffsit.pipeline import decode_samples, reconstruct
from diffsit.zoo import load_model
from diffsit.stem.exact import samples_to_float
model = load_model("tiny-lambda4")
stream, samples = decode_samples(model, open(sys.argv[1], "rb").read())
x_hat = reconstruct(model, stream, samples_to_float(samples))
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())
for i in range(samples.shape[0]):
    print(hashlib.md5(samples[i].to(torch.int32).numpy().astype("<u2").tobytes()).hexdigest())
torch.save(x_hat, sys.argv[3])
"""


def _md5s(samples: torch.Tensor) -> list[str]:
    return [hashlib.md5(s.to(torch.int32).numpy().astype("<u2").tobytes()).hexdigest() for s in samples]


@pytest.fixture(scope="module")
def carphone_stream(tmp_path_factory):
    from bench.datasets import get_dataset
    from diffsit.pipeline import encode_video
    from diffsit.zoo import load_model

    (seq,) = get_dataset("sample").resolve(None, ["carphone"])
    video = seq.open(frames=9)
    model = load_model("tiny-lambda4")
    # every P frame codes its residual: at lambda 4 the encoder would skip carphone's, and
    # these tests are about the residual decoder's exactness (the golden covers skipped ones)
    model.config.p_skip = False
    enc = encode_video(model, video, output=True)
    path = tmp_path_factory.mktemp("exact") / "carphone.dsit"
    path.write_bytes(enc.data)
    return path, enc, video


@pytest.mark.slow
@pytest.mark.parametrize("capability,threads", [("default", 1), (None, 1), (None, 2)])
def test_stream_decodes_to_the_same_x_tilde_on_other_kernels_and_thread_counts(carphone_stream, tmp_path, capability, threads):
    """ATEN_CPU_CAPABILITY=default makes PyTorch run its other (non-SIMD) kernels, as another
    CPU would; the encoder ran here with its own kernels and every thread."""
    path, enc, _ = carphone_stream
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = tmp_path / "x_hat.pt"
    run = subprocess.run([sys.executable, "-c", DECODE, str(path), str(threads), str(out)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.split()
    if capability:
        assert lines[0] == capability.upper()
    assert int(lines[1]) == threads
    assert lines[2:] == _md5s(exact.float_to_samples(enc.x_tilde))  # x~: bit-identical
    # x^ (ODFTE, float, not a reference) within one code value of the encoder's
    diff = (exact.float_to_samples(torch.load(out)) - exact.float_to_samples(enc.x_hat)).abs()
    assert diff.max() <= 1


@pytest.mark.slow
def test_a_decoder_that_drifts_stops_at_the_first_bad_frame_and_writes_nothing(carphone_stream, tmp_path, capsys, monkeypatch):
    """Weights perturbed under the hash they were loaded with (so the stream's weights check
    passes): the first P frame's reconstruction differs, the picture hash names it, and the
    CLI leaves no output."""
    import diffsit.zoo
    from diffsit.__main__ import main
    from diffsit.pipeline import decode_samples
    from diffsit.zoo import load_model

    path, _, _ = carphone_stream
    model = load_model("tiny-lambda4")
    model.weights_sha256()  # cached: what the stream check sees
    with torch.no_grad():
        model.pframe.out[-1].bias.add_(0.05)
    with pytest.raises(PictureHashMismatch, match=r"frame 4 \(P frame, 4\. in decoding order\)"):
        decode_samples(model, path.read_bytes())
    monkeypatch.setattr(diffsit.zoo, "load_model", lambda *a, **k: model)
    out = tmp_path / "out.yuv"
    assert main(["decode", str(path), "-o", str(out)]) == 2
    assert "frame 4 (P frame" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.yuv*"))


@pytest.mark.slow
def test_cli_verbose_prints_each_frames_check_and_md5(carphone_stream, tmp_path, capsys):
    from diffsit.__main__ import main

    path, enc, video = carphone_stream
    out = tmp_path / "out.yuv"
    assert main(["decode", str(path), "-o", str(out), "-v", "--bit-depth", "10"]) == 0
    text = capsys.readouterr().out
    md5 = _md5s(exact.float_to_samples(enc.x_tilde))
    assert text.count("[CRC32 OK]") == 9 and all(m in text for m in md5)
    assert read_yuv(out, video.width, video.height, bit_depth=10).frames == 9


def test_picture_hash_overhead_is_four_bytes_a_frame():
    from support import random_video

    from diffsit.pipeline import encode_video
    from diffsit.zoo import load_model

    model = load_model("random", allow_untrained=True)
    video = random_video(frames=4, height=64, width=64, seed=1)
    sizes = {k: len(encode_video(model, video, output=False, picture_hash_kind=k).data) for k in ("none", "crc32", "md5")}
    assert sizes["crc32"] - sizes["none"] == 4 * 4 and sizes["md5"] - sizes["none"] == 4 * 16
    with pytest.raises(ValueError, match="picture_hash must be one of"):
        encode_video(model, video, picture_hash_kind="sha1")
