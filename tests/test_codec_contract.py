"""The codec contract, for every registered codec: real encoders where this machine has them,
fake HM/VTM binaries, DCVC's real code built by .ci/build-thirdparty (with random-weight
checkpoints), random-weight CompressAI and Diff-SIT models.

For each: the stream decodes in a fresh process to what this process decodes; per-frame sizes
cover the frames and add up to the file; the encoder's reconstruction (where it keeps one)
equals the decoder's output; 8- and 10-bit sources come back at their depth; the default
ladder's first rate point is the larger file; a bad rate is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.codec import EncodeResult, RateError, accepted_options, codec_class, codec_names, create_codec
from bench.video import Video, read_yuv, write_yuv

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fakes"))
sys.path.insert(0, str(HERE))


def _options(name: str, tmp: Path) -> dict:
    if name in ("hm", "vtm"):
        from test_reference_codecs import make_tree

        return {f"{name}_dir": str(make_tree(tmp / name.upper(), name))}
    if name.startswith("dcvc-"):  # DCVC's real code, as .ci/build-thirdparty built it (tests/test_dcvc_real.py)
        build = Path(os.environ.get("BENCH_THIRDPARTY_BUILD") or tmp / "none") / "dcvc"
        if not (build / ".stamp").is_file():
            pytest.skip(f"{name}: no DCVC build in {build} ($BENCH_THIRDPARTY_BUILD; .ci/build-thirdparty makes it from ../shared/thirdparty)")
        return {"dcvc_root": str(build)}
    if name in ("ssf2020", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"):
        return {"random_weights_for_tests": True}
    if name == "diffsit":
        return {"model": "random", "allow_untrained": True, "verify": True}
    # the anchors' fastest presets; a codec registered by another test module (a fake) takes
    # only the options it declares
    fast = {"preset": {"svtav1": 12, "vvenc": "faster"}.get(name, "ultrafast")}
    return {k: v for k, v in fast.items() if k in accepted_options(codec_class(name))}


def _video(bit_depth: int, frames: int = 3, h: int = 64, w: int = 64) -> Video:
    import torch

    from bench.video import rgb_to_yuv420

    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    rgb = torch.stack([torch.stack([(xx + 0.05 * t) % 1, yy, 0.5 + 0.4 * torch.sin(6 * xx * yy + t)]) for t in range(frames)])
    return rgb_to_yuv420(rgb, bit_depth, 25.0)


DECODE = """
import json, sys
sys.path[:0] = json.loads(sys.argv[4])
from bench.codec import create_codec
from bench.video import write_yuv
v = create_codec(sys.argv[1], **json.loads(sys.argv[2])).decode(sys.argv[3], sys.argv[5], bit_depth=int(sys.argv[6]))
write_yuv(v, sys.argv[5] + "/fresh.yuv")
"""


def _plugins() -> list[str]:
    """The installed plugins (entry points), not the fakes other test modules register at
    import: those stand in for one behaviour each and do not claim the whole contract."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="bench.codecs")}
    return [n for n in codec_names() if n in installed]


@pytest.mark.parametrize("name", _plugins())
def test_codec_contract(name, tmp_path):
    opts = _options(name, tmp_path)
    codec = create_codec(name, **opts)
    try:
        codec.check()
    except Exception as e:
        pytest.skip(f"{name} cannot run here: {e}")
    with pytest.raises(RateError, match="it must be"):
        codec.parse_rate("not-a-rate")
    sizes = []
    for depth in (8, 10):
        if codec.coded_bit_depth(depth) != depth:
            continue
        video = _video(depth)
        rates = codec.default_rates[:1] if depth == 10 else (codec.default_rates[0], codec.default_rates[-1])
        for rate in rates:
            work = tmp_path / f"w{depth}-{rate}"
            work.mkdir()
            result = codec.encode(video, codec.parse_rate(rate), work)
            assert isinstance(result, EncodeResult)
            path = result.bitstream
            assert path.is_file() and path.parent == work
            per = result.per_frame(video.frames)  # sizes cover every frame
            assert sum(per["bits"]) == 8 * path.stat().st_size and all(np.isfinite(per["bits"]))
            assert all(per["frame_type"]) and result.frame_types[0] == "I"  # decoding starts at an intra frame
            dec = codec.decode(path, work, bit_depth=depth)
            assert (dec.frames, dec.height, dec.width, dec.bit_depth) == (video.frames, video.height, video.width, depth)
            if result.reconstruction is not None:
                rec = result.reconstruction
                assert rec.bit_depth == depth and all(np.array_equal(getattr(rec, p), getattr(dec, p)) for p in "yuv")
            if depth == 8 and rate == rates[0]:
                # a fresh process decodes the file alone to the same samples
                fresh = work / "fresh"
                fresh.mkdir()
                paths = json.dumps([str(HERE / "fakes"), str(HERE), str(Path(__file__).resolve().parents[1])])
                subprocess.run([sys.executable, "-c", DECODE, name, json.dumps(opts), str(path), paths, str(fresh), str(depth)], check=True)
                other = read_yuv(fresh / "fresh.yuv", video.width, video.height, bit_depth=depth)
                assert all(np.array_equal(getattr(other, p), getattr(dec, p)) for p in "yuv")
            if depth == 8:
                sizes.append(path.stat().st_size)
    assert len(sizes) == 2 and sizes[0] >= sizes[1], f"{name}: the first default rate point should be the larger stream, got {sizes}"


def test_an_eight_bit_only_codec_is_refused_at_plan_time_for_10_bit_sources(tmp_path):
    from baselines.x265 import X265
    from bench.codec import register_codec
    from bench.config import SweepConfig
    from bench.plan import PlanError
    from bench.sweep import run_sweep

    class EightOnly(X265):
        name = "x265-8bit-only"
        bit_depths = (8,)

    class Converting(EightOnly):
        name = "x265-converting"
        convert_bit_depth = True

    register_codec(EightOnly.name, EightOnly)
    register_codec(Converting.name, Converting)
    src = tmp_path / "clip_64x64_25_10bit.yuv"
    write_yuv(_video(10, frames=2), src)
    cfg = dict(dataset=str(src), rates=["40"], metrics=["psnr"], progress=False)
    out = tmp_path / "refused"
    with pytest.raises(PlanError, match=r"x265-8bit-only codes 8-bit 4:2:0 sources, not 10-bit"):
        run_sweep(SweepConfig.from_dict({**cfg, "codecs": [EightOnly.name], "out": str(out)}))
    assert not out.exists() or not list(out.rglob("*.hevc"))
    result = run_sweep(SweepConfig.from_dict({**cfg, "codecs": [Converting.name], "out": str(tmp_path / "conv")}))
    assert result.ok
    rec = result.parts[0].records[0]
    assert rec["config"]["coded_bit_depth"] == 8 and "converted" in " ".join(rec["notes"])
    assert result.summary().bit_depth.tolist() == [10]
