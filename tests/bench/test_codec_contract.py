"""The codec contract (bench.testing), applied to every installed plugin: real encoders where
this machine has them, fake HM/VTM binaries, DCVC's real code built by .ci/build-thirdparty
(with random-weight checkpoints), random-weight CompressAI and Diff-SIT models.

Each plugin runs under its own ``contract_options()``; only what needs a fixture of this tree
(a fake binary, a build folder) is supplied here, so a new codec needs no edit of this file.
tests/bench/test_thirdparty_codec.py runs the same contract from a plugin package outside the tree.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from reference_tree import make_tree

from bench.codec import Codec, CodecUnavailable, EncodeResult, Requirement, codec_class, codec_names
from bench.testing import check_codec_contract, check_identity, contract_clip, require_runnable
from bench.video import Video, write_yuv


def _dcvc_build(name: str, tmp: Path) -> dict:
    """DCVC's real code, as .ci/build-thirdparty built it (tests/baselines/test_dcvc_real.py)."""
    build = Path(os.environ.get("BENCH_THIRDPARTY_BUILD") or tmp / "none") / "dcvc"
    if not (build / ".stamp").is_file():
        pytest.skip(f"{name}: no DCVC build in {build} ($BENCH_THIRDPARTY_BUILD; .ci/build-thirdparty makes it from ../shared/thirdparty)")
    return {"dcvc_root": str(build)}


#: options that only this tree's fixtures can give (the plugins' own contract_options() do the rest)
FIXTURES = {
    "hm": lambda tmp: {"hm_dir": str(make_tree(tmp / "HM", "hm"))},
    "vtm": lambda tmp: {"vtm_dir": str(make_tree(tmp / "VTM", "vtm"))},
    "dcvc-dc": lambda tmp: _dcvc_build("dcvc-dc", tmp),
    "dcvc-fm": lambda tmp: _dcvc_build("dcvc-fm", tmp),
    "dcvc-rt": lambda tmp: _dcvc_build("dcvc-rt", tmp),
}


def _plugins() -> list[str]:
    """The installed plugins (entry points), not the fakes other test modules register at
    import: those stand in for one behaviour each and do not claim the whole contract."""
    installed = {ep.name for ep in entry_points(group="bench.codecs")}
    return [n for n in codec_names() if n in installed]


def _factory(name: str, tmp: Path):
    def make():
        cls = codec_class(name)
        options = FIXTURES[name](tmp) if name in FIXTURES else cls.contract_options()
        return cls(**options), options

    return make


@pytest.mark.parametrize("name", _plugins())
def test_codec_contract(name, tmp_path):
    check_codec_contract(_factory(name, tmp_path), tmp_path)


# --- what the contract itself decides ------------------------------------------------------------


class _Stub(Codec):
    name = "stub"
    default_rates = (1, 2)

    def identity(self) -> dict:
        return {"codec": self.name, "format": 1}

    def encode(self, video: Video, rate, workdir: Path) -> EncodeResult:
        raise NotImplementedError

    def decode(self, path: Path, workdir: Path, *, bit_depth=None) -> Video:
        raise NotImplementedError


class _Crashes(_Stub):
    def check(self) -> None:
        raise RuntimeError("segfault in the bindings")


class _RefusesUndeclared(_Stub):
    def check(self) -> None:
        raise CodecUnavailable("something is missing")


class _MissingDeclared(_Stub):
    def requirements(self) -> list[Requirement]:
        return [Requirement("the stub encoder", False, "/opt/stub/bin", "build it")]


def test_a_check_that_raises_fails_the_contract():
    with pytest.raises(pytest.fail.Exception, match="check\\(\\) raised RuntimeError: segfault"):
        require_runnable(_Crashes())


def test_a_check_that_refuses_without_declaring_what_is_missing_fails():
    with pytest.raises(pytest.fail.Exception, match="declares nothing missing"):
        require_runnable(_RefusesUndeclared())


def test_a_declared_missing_requirement_skips_naming_it():
    with pytest.raises(pytest.skip.Exception, match="needs the stub encoder \\(looked in /opt/stub/bin\\): build it"):
        require_runnable(_MissingDeclared())
    require_runnable(_Stub())  # nothing missing: runs


def test_identity_has_no_default():
    class Forgets(Codec):
        name = "forgets"

        def encode(self, video, rate, workdir):
            raise NotImplementedError

        def decode(self, path, workdir, *, bit_depth=None):
            raise NotImplementedError

    with pytest.raises(TypeError, match="identity"):
        Forgets()


def test_an_identity_naming_only_the_codec_fails_the_contract():
    class Bare(_Stub):
        def identity(self) -> dict:
            return {"codec": self.name, "class": "x.Bare"}

    with pytest.raises(AssertionError, match="names only the codec"):
        check_identity(Bare())
    assert check_identity(_Stub()) == {"codec": "stub", "format": 1}


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
    write_yuv(contract_clip(10, frames=2), src)
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
