"""The codec contract as a reusable test: any codec plugin's own test suite runs it.

Subclass :class:`CodecContract` in a pytest module, name the codec class, and pytest runs the
contract on it; the options come from the codec's own :meth:`~bench.codec.Codec.contract_options`
unless ``make_codec`` is overridden (to point the codec at a fixture, a fake binary)::

    from bench.testing import CodecContract
    from mypkg.quantiser import Quantiser

    class TestQuantiser(CodecContract):
        codec_class = Quantiser

Or call :func:`check_codec_contract` with a factory, as the tree's own contract test does for
every installed plugin. What is checked:

- ``check()`` passes, or the codec declares (``requirements()``) what is missing: then the test
  is skipped naming it. A ``check()`` that raises anything else FAILS: a broken codec must not
  look like one that is merely not installed;
- ``identity()`` is declared, stable, JSON-able, and says more than the codec's name;
- a bad rate is refused with a RateError naming the valid range;
- for 8-bit (and 10-bit, where the codec codes it) sources: the stream is one file in the work
  folder; per-frame sizes cover every frame and add up to the file; decoding starts at an intra
  frame; the decoder returns the source's geometry at the asked depth; the encoder's
  reconstruction (where it keeps one) equals the decoder's output; a fresh process decodes the
  file alone to the same samples; the first default rate point is the larger stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from .codec import Codec, CodecUnavailable, EncodeResult, RateError
from .video import Video, read_yuv, rgb_to_yuv420

#: decodes a stream in a fresh process: codec class ("module:Class"), options (JSON),
#: bitstream, output folder, bit depth
_FRESH_DECODE = """
import importlib, json, sys
module, _, qualname = sys.argv[1].partition(":")
cls = importlib.import_module(module)
for part in qualname.split("."):
    cls = getattr(cls, part)
from bench.video import write_yuv
video = cls(**json.loads(sys.argv[2])).decode(sys.argv[3], sys.argv[4], bit_depth=int(sys.argv[5]))
write_yuv(video, sys.argv[4] + "/fresh.yuv")
"""


def contract_clip(bit_depth: int, frames: int = 3, height: int = 64, width: int = 64) -> Video:
    """A small moving gradient, 4:2:0 at ``bit_depth``: every codec can code it in a moment."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    rgb = torch.stack([torch.stack([(xx + 0.05 * t) % 1, yy, 0.5 + 0.4 * torch.sin(6 * xx * yy + t)]) for t in range(frames)])
    return rgb_to_yuv420(rgb, bit_depth, 25.0)


def require_runnable(codec: Codec) -> None:
    """``codec.check()``, with a skip where a declared requirement is missing and a failure for
    anything else (a check that crashes, or refuses without declaring why)."""
    try:
        codec.check()
    except CodecUnavailable as e:
        missing = [r for r in codec.requirements() if not r.present]
        if not missing:
            pytest.fail(f"{codec.name}: check() raised {e!r} but requirements() declares nothing missing: declare it as a Requirement", pytrace=False)
        r = missing[0]
        pytest.skip(f"{codec.name}: needs {r.what} (looked in {r.where or 'its default places'}): {r.fix or e}")
    except Exception as e:
        pytest.fail(f"{codec.name}: check() raised {type(e).__name__}: {e}", pytrace=False)


def check_identity(codec: Codec) -> dict[str, Any]:
    """``identity()`` is a JSON-able dict, the same twice, naming more than the codec."""
    identity = codec.identity()
    assert isinstance(identity, dict), f"{codec.name}: identity() must return a dict, got {type(identity).__name__}"
    json.dumps(identity, sort_keys=True, default=str)
    assert identity == codec.identity(), f"{codec.name}: identity() changed between two calls"
    extra = set(identity) - {"codec", "class"}
    assert extra, f"{codec.name}: identity() names only the codec; name what changes its numbers (versions, weights hashes, settings)"
    return identity


def class_path(cls: type) -> str:
    """``module:Qualname`` of a class, for a fresh process to import it."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _fresh_decode(codec: Codec, options: dict[str, Any], path: Path, work: Path, like: Video) -> Video:
    """The stream decoded by a new interpreter that builds the codec from its options alone."""
    fresh = work / "fresh"
    fresh.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, "-c", _FRESH_DECODE, class_path(type(codec)), json.dumps(options), str(path), str(fresh), str(like.bit_depth)]
    subprocess.run(cmd, check=True, env=env)
    return read_yuv(fresh / "fresh.yuv", like.width, like.height, bit_depth=like.bit_depth)


def _same(a: Video, b: Video) -> bool:
    return all(np.array_equal(getattr(a, p), getattr(b, p)) for p in "yuv")


def _code_one(codec: Codec, options: dict[str, Any], video: Video, rate, work: Path, *, fresh: bool) -> int:
    """Encode and decode ``video`` at ``rate`` in ``work``, checking what the contract says;
    returns the stream's size in bytes."""
    depth = video.bit_depth
    result = codec.encode(video, codec.parse_rate(rate), work)
    assert isinstance(result, EncodeResult), f"{codec.name}: encode() must return an EncodeResult"
    path = result.bitstream
    assert path.is_file() and path.parent == work, f"{codec.name}: the stream must be one file in the work folder, got {path}"
    per = result.per_frame(video.frames)  # sizes cover every frame
    assert sum(per["bits"]) == 8 * path.stat().st_size and all(np.isfinite(per["bits"]))
    assert all(per["frame_type"]) and result.frame_types[0] == "I", f"{codec.name}: decoding must start at an intra frame"
    dec = codec.decode(path, work, bit_depth=depth)
    assert (dec.frames, dec.height, dec.width, dec.bit_depth) == (video.frames, video.height, video.width, depth)
    if result.reconstruction is not None:
        rec = result.reconstruction
        assert rec.bit_depth == depth and _same(rec, dec), f"{codec.name}: the encoder's reconstruction differs from the decoder's output"
    if fresh:
        assert _same(_fresh_decode(codec, options, path, work, video), dec), f"{codec.name}: a fresh process decodes the file to other samples"
    return path.stat().st_size


def check_codec_contract(make: Callable[[], tuple[Codec, dict[str, Any]]], workdir: Path, clip: Callable[[int], Video] = contract_clip) -> None:
    """The whole contract on the codec ``make()`` returns with the options it was built with
    (a fresh process builds it again from them: they must be JSON-able), working in
    ``workdir``. ``clip(bit_depth)`` gives the source video."""
    codec, options = make()
    require_runnable(codec)
    check_identity(codec)
    with pytest.raises(RateError, match="it must be"):
        codec.parse_rate("not-a-rate")
    assert len(set(codec.default_rates)) >= 2, (
        f"{codec.name}: declare two or more default_rates, in order of decreasing rate (the contract codes the first and the last)"
    )
    sizes = []
    for depth in (8, 10):
        if codec.coded_bit_depth(depth) != depth:
            continue
        video = clip(depth)
        rates = codec.default_rates[:1] if depth == 10 else (codec.default_rates[0], codec.default_rates[-1])
        for rate in rates:
            work = Path(workdir) / f"w{depth}-{rate}"
            work.mkdir()
            size = _code_one(codec, options, video, rate, work, fresh=depth == 8 and rate == rates[0])
            if depth == 8:
                sizes.append(size)
    assert len(sizes) == 2, f"{codec.name}: the contract codes 8-bit sources; it codes {codec.bit_depths}"
    assert sizes[0] >= sizes[1], f"{codec.name}: the first default rate point should be the larger stream, got {sizes}"


class CodecContract:
    """Mix into a pytest ``Test...`` class with ``codec_class`` set; override ``make_codec`` to
    build the codec another way (fixtures, fake binaries) and ``clip`` for another source."""

    codec_class: ClassVar[type[Codec]]

    def codec_options(self, tmp_path: Path) -> dict[str, Any]:
        """Constructor options: the codec's own contract options by default."""
        return self.codec_class.contract_options()

    def make_codec(self, tmp_path: Path) -> tuple[Codec, dict[str, Any]]:
        options = self.codec_options(tmp_path)
        return self.codec_class(**options), options

    def clip(self, bit_depth: int) -> Video:
        return contract_clip(bit_depth)

    def test_codec_contract(self, tmp_path: Path) -> None:
        check_codec_contract(lambda: self.make_codec(tmp_path), tmp_path, self.clip)

    def test_identity_is_declared(self, tmp_path: Path) -> None:
        codec, _ = self.make_codec(tmp_path)
        check_identity(codec)


__all__ = ["CodecContract", "check_codec_contract", "check_identity", "class_path", "contract_clip", "require_runnable"]
