"""The DCVC-DC / DCVC-FM adapter against a FAKE DCVC checkout (tests/fakes/dcvc_checkout.py).

The fake follows the interfaces of microsoft/DCVC's ``src`` packages that the adapter calls;
its "networks" are a tiny quantiser. What is tested: finding the checkout and checkpoints,
the import isolation of the two ``src`` packages, the call contract (q indices, q scales,
SPS/NAL stream, per-frame DC files), decoding from the file alone, and the error paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bench.codec import CodecUnavailable, RateError, create_codec

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from dcvc_checkout import make_checkout

torch = pytest.importorskip("torch")


def _video(frames=4, h=40, w=56):
    from bench.video import rgb_to_yuv420

    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return rgb_to_yuv420(torch.stack([torch.stack([(xx + 0.03 * t) % 1, yy, (xx * yy)]) for t in range(frames)]), 8, 30.0)


@pytest.mark.parametrize("name,family,rates", [("dcvc-fm", "DCVC-FM", (63, 0)), ("dcvc-dc", "DCVC-DC", (3, 0))])
def test_round_trip_and_rate_order(name, family, rates, tmp_path):
    make_checkout(tmp_path / "DCVC", family)
    codec = create_codec(name, dcvc_root=str(tmp_path / "DCVC"))
    assert all(r.present for r in codec.requirements())
    video = _video()
    sizes = []
    for q in rates:
        result = codec.encode(video, q, tmp_path)
        path = result.bitstream
        dec = create_codec(name, dcvc_root=str(tmp_path / "DCVC")).decode(path, tmp_path)  # a fresh process's view
        assert (dec.width, dec.height, dec.frames) == (56, 40, 4)
        enc = result.reconstruction
        assert len(result.frame_bytes) == 4 and sum(result.frame_bytes) <= path.stat().st_size
        assert np.array_equal(enc.y, dec.y) and np.array_equal(enc.u, dec.u) and np.array_equal(enc.v, dec.v)
        sizes.append(path.stat().st_size)
    assert sizes[0] > sizes[1]  # the first rate point of each ladder is the higher rate
    assert list(codec.default_rates) == sorted(codec.default_rates, reverse=True)


def test_fm_stream_follows_the_sps_contract(tmp_path):
    make_checkout(tmp_path / "DCVC", "DCVC-FM")
    codec = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC"), intra_period=2)
    path = codec.encode(_video(frames=4), 21, tmp_path).bitstream
    sh = codec.modules()["utils.stream_helper"]
    kinds = []
    with open(path, "rb") as f:
        while f.tell() < path.stat().st_size:
            head = sh.read_header(f)
            kinds.append(head["nal_type"].name)
            (sh.read_sps_remaining(f, head["sps_id"]) if head["nal_type"] == sh.NalType.NAL_SPS else sh.read_ip_remaining(f))
    # I, P (fa_idx 3: feature reset at frame 1), I, P (fa_idx 2 at frame 3): each new SPS before its frame
    assert kinds == ["NAL_SPS", "NAL_I", "NAL_SPS", "NAL_P", "NAL_I", "NAL_SPS", "NAL_P"]
    assert not any(k == "src" or k.startswith("src.") for k in sys.modules)  # the checkout's src was not left behind


def test_dc_q_scales_are_interpolated_as_its_test_script(tmp_path):
    make_checkout(tmp_path / "DCVC", "DCVC-DC")
    codec = create_codec("dcvc-dc", dcvc_root=str(tmp_path / "DCVC"))
    i0, mv0, y0 = codec.q_scales(0)
    i3, mv3, y3 = codec.q_scales(3)
    # index 0 is the checkpoint's largest q scale (coarsest, lowest rate), as in DCVC-DC's test_video.py
    assert (i0, mv0, y0) == pytest.approx((0.60, 0.40, 0.50)) and (i3, mv3, y3) == pytest.approx((0.15, 0.10, 0.10))
    wide = create_codec("dcvc-dc", dcvc_root=str(tmp_path / "DCVC"), rate_num=7)
    assert wide.q_scales(3)[0] == pytest.approx(np.sqrt(0.60 * 0.15))  # log-linear midpoint
    with pytest.raises(RateError, match="outside 0..3"):
        codec.parse_rate(4)
    with pytest.raises(ValueError, match="rate_num"):
        create_codec("dcvc-dc", rate_num=1)


def test_both_families_in_one_process(tmp_path):
    make_checkout(tmp_path / "DCVC", "DCVC-FM")
    make_checkout(tmp_path / "DCVC", "DCVC-DC")
    fm = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC"))
    dc = create_codec("dcvc-dc", dcvc_root=str(tmp_path / "DCVC"))
    assert hasattr(fm.modules()["models.image_model"], "DMCI") and hasattr(dc.modules()["models.image_model"], "IntraNoAR")
    # the model folder itself is accepted as the root too
    assert create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC" / "DCVC-family" / "DCVC-FM")).model_dir() is not None


def test_missing_checkout_weights_and_extension(tmp_path, monkeypatch):
    with pytest.raises(CodecUnavailable, match=r"checkout of microsoft/DCVC with DCVC-FM not found \(looked in \(no --dcvc-root given\)\)"):
        create_codec("dcvc-fm").check()
    with pytest.raises(CodecUnavailable, match="git clone https://github.com/microsoft/DCVC"):
        create_codec("dcvc-dc", dcvc_root=str(tmp_path / "nothing")).encode(_video(1), 0, tmp_path)
    make_checkout(tmp_path / "DCVC", "DCVC-FM", checkpoints=False)
    codec = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC"))
    with pytest.raises(CodecUnavailable, match=r"checkpoint cvpr2024_image.pth.tar not found .*and 1 more missing"):
        codec.check()
    weights = tmp_path / "w"
    weights.mkdir()
    for n in ("cvpr2024_image.pth.tar", "cvpr2024_video.pth.tar"):
        torch.save({"state_dict": {"gain": torch.ones(1)}}, weights / n)
    codec = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC"), dcvc_weights=str(weights))
    codec.check()
    monkeypatch.setenv("FAKE_DCVC_NO_EXTENSION", "1")
    with pytest.raises(CodecUnavailable, match=r"(?s)cannot be imported.*MLCodec_extensions_cpp.*cmake ../cpp -DCMAKE_BUILD_TYPE=Release"):
        codec.encode(_video(1), 0, tmp_path)
    with pytest.raises(RateError, match="q_index 64 is out of range: it must be an integer in 0..63"):
        codec.parse_rate(64)


def test_bench_run_passes_dcvc_root(tmp_path):
    import pandas as pd

    from bench.cli import main

    make_checkout(tmp_path / "DCVC", "DCVC-FM")
    rc = main(
        [
            "run",
            "--codec",
            "dcvc-fm",
            "--dcvc-root",
            str(tmp_path / "DCVC"),
            "--dataset",
            "synthetic",
            "--sequences",
            "testsrc2",
            "--frames",
            "3",
            "--rates",
            "42",
            "--metrics",
            "psnr",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert rc == 0
    s = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert s.loc[0, "codec"] == "dcvc-fm" and s.loc[0, "bytes"] > 0 and s.loc[0, "psnr_yuv"] > 20


def test_adapter_leaves_autograd_alone(tmp_path):
    make_checkout(tmp_path / "DCVC", "DCVC-FM")
    create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC")).encode(_video(2), 10, tmp_path)
    assert torch.is_grad_enabled()
