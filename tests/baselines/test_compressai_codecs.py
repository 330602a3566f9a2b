"""CompressAI baselines: real bitstreams through compress/decompress.

Pretrained weights cannot be downloaded here, so these tests build the networks with seeded
random weights through the codecs' explicit test-only switch (``random_weights_for_tests``).
What they check is the plumbing: padding, the container, the range coder, decoding from the
file alone, and the reconstruction the runner compares with the encoder's.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("compressai")

from support import random_video

from baselines.container import ContainerError, read_container
from bench import weights
from bench.codec import CodecUnavailable, RateError, create_codec


def _smooth_video(frames=3, height=72, width=88):
    """A moving gradient (not noise): width/height not multiples of 64, so padding is exercised."""
    import torch

    from bench.video import rgb_to_yuv420

    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    rgb = torch.stack([torch.stack([(xx + 0.05 * t) % 1, yy, (xx + yy) / 2]) for t in range(frames)])
    return rgb_to_yuv420(rgb, 8, 25.0)


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor", "ssf2020"])
def test_round_trip_real_bitstream_random_weights(name, tmp_path):
    codec = create_codec(name, random_weights_for_tests=True)
    video = _smooth_video()
    result = codec.encode(video, 1, tmp_path)
    path = result.bitstream
    header, frames = read_container(path)
    assert result.frame_types == ["I", "P", "P"] if name == "ssf2020" else result.frame_types == ["I", "I", "I"]
    assert sum(result.frame_bytes) < path.stat().st_size  # the header is the rest
    assert header["model"] == name and header["quality"] == 1 and (header["width"], header["height"]) == (88, 72)
    assert len(frames) == 3 and all(len(b) > 0 for f in frames for b in f)
    # decode from the file alone, in a fresh codec object (as a separate process would)
    decoded = create_codec(name, random_weights_for_tests=True).decode(path, tmp_path)
    assert (decoded.width, decoded.height, decoded.frames) == (88, 72, 3)
    enc = result.reconstruction
    assert np.array_equal(enc.y, decoded.y) and np.array_equal(enc.u, decoded.u)
    assert "RANDOM" in codec.describe()["weights"]


def test_ssf2020_low_delay_and_intra_period(tmp_path):
    video = _smooth_video(frames=4)
    ld = create_codec("ssf2020", random_weights_for_tests=True)
    _, frames = read_container(ld.encode(video, 2, tmp_path).bitstream)
    assert [len(f) for f in frames] == [2, 4, 4, 4]  # key frame (y, z), then inter (motion y, z, residual y, z)
    ip = create_codec("ssf2020", random_weights_for_tests=True, intra_period=2)
    ip_result = ip.encode(video, 2, tmp_path)
    path = ip_result.bitstream
    _, frames = read_container(path)
    assert [len(f) for f in frames] == [2, 4, 2, 4]
    dec = create_codec("ssf2020", random_weights_for_tests=True).decode(path, tmp_path)  # intra period comes from the file
    assert np.array_equal(dec.y, ip_result.reconstruction.y)
    with pytest.raises(ValueError, match="intra_period"):
        create_codec("ssf2020", intra_period=0)


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.ENV, raising=False)
    codec = create_codec("mbt2018-mean")
    reqs = codec.requirements()
    assert [r.present for r in reqs] == [False] * 5 and "mbt2018-mean-1-e522738d.pth.tar" in reqs[-1].what
    with pytest.raises(CodecUnavailable, match=r"mbt2018-mean-5-.*\.pth\.tar.*compressai\.s3.*and 4 more"):
        codec.check()
    with pytest.raises(CodecUnavailable, match="mbt2018-mean-1-e522738d.pth.tar"):
        codec.encode(random_video(1), 1, tmp_path)


def test_pretrained_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    """A zoo-format file (DataParallel prefix, old EntropyBottleneck keys) in the hub cache is found and loaded."""
    import torch
    from compressai.zoo import image

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.ENV, raising=False)
    torch.manual_seed(3)
    net = image.model_architectures["bmshj2018-hyperprior"](*image.cfgs["bmshj2018-hyperprior"][1])
    codec = create_codec("bmshj2018-hyperprior")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, hub / codec.weights_file(1))
    assert codec.requirements()[-1].present
    loaded = codec.model(1)
    assert torch.equal(loaded.g_a[0].weight, net.g_a[0].weight)
    path = codec.encode(_smooth_video(1), 1, tmp_path).bitstream
    assert codec.decode(path, tmp_path).frames == 1


def test_bad_rates_options_and_files(tmp_path):
    c = create_codec("cheng2020-anchor", random_weights_for_tests=True)
    with pytest.raises(RateError, match="quality 7 is not valid: it must be one of 1, 2, 3, 4, 5, 6"):
        c.parse_rate(7)
    with pytest.raises(ValueError, match="mse or ms-ssim"):
        create_codec("mbt2018-mean", metric="psnr")
    bad = tmp_path / "bad.lbs"
    bad.write_bytes(b"RIFF0000")
    with pytest.raises(ContainerError, match="not a learned-baseline bitstream"):
        c.decode(bad, tmp_path)
    good = c.encode(_smooth_video(1), 1, tmp_path).bitstream
    cut = tmp_path / "cut.lbs"
    cut.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(ContainerError, match="truncated"):
        c.decode(cut, tmp_path)
    with pytest.raises(Exception, match="written by cheng2020-anchor"):
        create_codec("mbt2018-mean", random_weights_for_tests=True).decode(good, tmp_path)


def test_sweep_runs_a_compressai_codec(tmp_path):
    """Through the harness: plan, encode, decode, bpp from the file size, metrics."""
    import pandas as pd

    from bench.cli import main

    rc = main(
        [
            "run",
            "--codec",
            "bmshj2018-hyperprior:random_weights_for_tests=true",
            "--dataset",
            "synthetic",
            "--sequences",
            "testsrc2",
            "--frames",
            "2",
            "--rates",
            "2,1",
            "--metrics",
            "psnr",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert rc == 0
    s = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert len(s) == 2 and (s["bytes"] > 0).all()
    assert np.allclose(s["bpp"], 8 * s["bytes"] / (s["frames"] * s["width"] * s["height"]))
