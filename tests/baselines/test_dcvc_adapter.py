"""The DCVC adapters' checks and options, without running DCVC (tests/baselines/test_dcvc_real.py runs
the real code): where the checkout, the checkpoints and the C++ coder are looked for, what
`bench doctor` is told when one is missing, checkpoint trust by SHA-256, rate points, and
DCVC-RT's refusal on a machine without CUDA. A "checkout" here is only the folder layout the
adapters look for; nothing of it is imported in this process.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pytest

from bench.codec import CodecUnavailable, RateError, codec_names, create_codec, register_codec

torch = pytest.importorskip("torch")

if "dcvc-rt" not in codec_names():  # an installed wheel that predates its entry point
    register_codec("dcvc-rt", "baselines.dcvc_rt:DCVCRT")

FILES = {
    "dcvc-fm": ("DCVC-FM", "cvpr2024_image.pth.tar", "cvpr2024_video.pth.tar"),
    "dcvc-dc": ("DCVC-DC", "cvpr2023_image_yuv420_psnr.pth.tar", "cvpr2023_video_yuv420_psnr.pth.tar"),
}


def layout(root: Path, family: str, *, checkpoints: bool = True) -> Path:
    """root/DCVC-family/<family>/ with src/models/video_model.py (never imported) and, if
    asked, checkpoints holding tensors only; no C++ coder."""
    model = root / "DCVC-family" / family
    (model / "src" / "models").mkdir(parents=True)
    (model / "src" / "models" / "video_model.py").write_text("raise SystemExit('this layout is not to be imported')\n")
    if checkpoints:
        (model / "checkpoints").mkdir()
        name = next(k for k, v in FILES.items() if v[0] == family)
        for f in FILES[name][1:]:
            torch.save({"w": torch.ones(2)}, model / "checkpoints" / f)
    return model


def missing(codec) -> dict[str, object]:
    return {r.what: r for r in codec.requirements() if not r.present}


def test_no_checkout_says_where_to_get_one(tmp_path):
    with pytest.raises(CodecUnavailable, match=r"checkout of microsoft/DCVC with DCVC-FM not found \(looked in \(no --dcvc-root given\)\)"):
        create_codec("dcvc-fm").check()
    with pytest.raises(CodecUnavailable, match="git clone https://github.com/microsoft/DCVC"):
        create_codec("dcvc-dc", dcvc_root=str(tmp_path / "nothing")).check()


@pytest.mark.parametrize("name", ["dcvc-fm", "dcvc-dc"])
def test_an_unbuilt_coder_is_missing_with_the_build_command_for_this_python(name, tmp_path):
    family = FILES[name][0]
    model = layout(tmp_path / "DCVC", family)
    for root in (tmp_path / "DCVC", model):  # the repository root or the model folder
        codec = create_codec(name, dcvc_root=str(root))
        assert codec.model_dir() == model.resolve()
        gaps = missing(codec)
        assert list(gaps) == [f"{family}'s C++ entropy coder, built for this Python ({sys.executable})"]
        coder = next(iter(gaps.values()))
        assert "No module named 'src.models.MLCodec_rans'" in coder.where  # the probe's own words
        assert f"cd {model.resolve() / 'src'} && mkdir -p build && cd build && cmake ../cpp -DCMAKE_BUILD_TYPE=Release" in coder.fix
        assert f"-DPYTHON_EXECUTABLE={sys.executable} && make -j" in coder.fix
        assert f"DCVC-family/{family}/README.md" in coder.fix
    with pytest.raises(CodecUnavailable, match=r"C\+\+ entropy coder, built for this Python .* not found .*-DPYTHON_EXECUTABLE="):
        codec.check()


def test_a_coder_built_for_another_python_does_not_count(tmp_path):
    model = layout(tmp_path / "DCVC", "DCVC-FM")
    for mod in ("MLCodec_rans", "MLCodec_CXX"):  # what cmake leaves when given another Python
        (model / "src" / "models" / f"{mod}.cpython-39-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    gaps = missing(create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC")))
    assert any("C++ entropy coder" in what for what in gaps)


def test_missing_checkpoints_say_where_to_put_them(tmp_path):
    layout(tmp_path / "DCVC", "DCVC-DC", checkpoints=False)
    gaps = missing(create_codec("dcvc-dc", dcvc_root=str(tmp_path / "DCVC")))
    ckpt = gaps["DCVC-DC checkpoint cvpr2023_video_yuv420_psnr.pth.tar"]
    assert "DCVC-family/DCVC-DC/README.md" in ckpt.fix and str(tmp_path / "DCVC" / "DCVC-family" / "DCVC-DC" / "checkpoints") in ckpt.fix


def test_a_checkpoint_holding_more_than_tensors_needs_trust_by_its_sha256(tmp_path):
    layout(tmp_path / "DCVC", "DCVC-FM")
    weights = tmp_path / "w"
    weights.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-4)}, weights / "cvpr2024_image.pth.tar")
    torch.save({"w": torch.ones(2)}, weights / "cvpr2024_video.pth.tar")
    sha = hashlib.sha256((weights / "cvpr2024_image.pth.tar").read_bytes()).hexdigest()
    opts = {"dcvc_root": str(tmp_path / "DCVC"), "dcvc_weights": str(weights)}
    gaps = missing(create_codec("dcvc-fm", **opts))
    refused = gaps["DCVC-FM checkpoint cvpr2024_image.pth.tar loadable with weights_only=True"]
    assert f"(SHA-256 {sha})" in refused.where and "Namespace" in refused.where
    assert f"dcvc-fm:trust_checkpoint={sha}" in refused.fix
    assert not any("cvpr2024_video" in what for what in gaps)  # tensors only: loads as it is

    trusting = create_codec("dcvc-fm", trust_checkpoint=sha, **opts)
    assert not any("cvpr2024_image" in what for what in missing(trusting))
    assert trusting.describe()["trust_checkpoint"] == [sha]
    other = hashlib.sha256(b"another file").hexdigest()
    assert any("cvpr2024_image" in what for what in missing(create_codec("dcvc-fm", trust_checkpoint=other, **opts)))
    both = create_codec("dcvc-fm", trust_checkpoint=f"{other}:{sha.upper()}", **opts)  # several, ':'-separated
    assert both.trusted == {sha, other}
    for bad in ("yes", sha[:40], f"{sha}:xyz"):
        with pytest.raises(ValueError, match="trust_checkpoint takes the SHA-256"):
            create_codec("dcvc-fm", trust_checkpoint=bad)


def test_the_identity_holds_the_checkpoints_sha256(tmp_path):
    layout(tmp_path / "DCVC", "DCVC-FM")
    codec = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC"))
    before = codec.identity()
    image = tmp_path / "DCVC" / "DCVC-family" / "DCVC-FM" / "checkpoints" / "cvpr2024_image.pth.tar"
    assert before["checkpoints"]["cvpr2024_image.pth.tar"] == hashlib.sha256(image.read_bytes()).hexdigest()
    torch.save({"w": torch.zeros(2)}, image)
    after = create_codec("dcvc-fm", dcvc_root=str(tmp_path / "DCVC")).identity()
    assert after["checkpoints"]["cvpr2024_image.pth.tar"] != before["checkpoints"]["cvpr2024_image.pth.tar"]
    assert "model_dir" not in after  # a moved checkout is the same codec


def test_rate_points_are_q_indices():
    fm, dc = create_codec("dcvc-fm"), create_codec("dcvc-dc")
    assert fm.parse_rate("63") == 63 and dc.parse_rate(0) == 0
    with pytest.raises(RateError, match="q_index 64 is out of range: it must be an integer in 0..63"):
        fm.parse_rate(64)
    assert list(dc.default_rates) == [63, 42, 21, 0]
    anchors = create_codec("dcvc-dc", q_in_ckpt=True)  # the checkpoint's own 4 q scales
    assert list(anchors.default_rates) == [3, 2, 1, 0] and anchors.identity()["q_in_ckpt"] is True
    with pytest.raises(RateError, match=r"must be an integer in 0..3 \(q_in_ckpt=true"):
        anchors.parse_rate(4)
    with pytest.raises(ValueError, match="q_in_ckpt must be true or false"):
        create_codec("dcvc-dc", q_in_ckpt="sometimes")


def test_dcvc_rt_is_refused_without_cuda_naming_what_is_missing(tmp_path):
    if torch.cuda.is_available() and sys.version_info >= (3, 12):
        pytest.skip("this machine has CUDA and Python >= 3.12: the refusal cannot be seen here")
    codec = create_codec("dcvc-rt", dcvc_root=str(tmp_path / "DCVC"))
    with pytest.raises(CodecUnavailable) as e:
        codec.check()
    message = str(e.value)
    assert message.startswith("dcvc-rt cannot run here: ")
    if not torch.cuda.is_available():
        assert "a CUDA device (DCVC-RT's coders use CUDA streams and events; it has no CPU path) missing" in message
        assert "run on a machine with an NVIDIA GPU" in message
    if sys.version_info < (3, 12):
        assert f"Python >= 3.12 (DCVC-RT's C++ coder: src/cpp/setup.py python_requires) missing (Python 3.{sys.version_info.minor}" in message
    assert "checkout of microsoft/DCVC with DCVC-RT missing" in message
    on_cpu = create_codec("dcvc-rt", device="cpu")
    assert "device 'cpu'" in next(r.where for r in on_cpu.requirements() if "CUDA" in r.what)


def test_dcvc_rt_coder_hint_and_options(tmp_path):
    layout(tmp_path / "DCVC", "DCVC-RT", checkpoints=False)
    codec = create_codec("dcvc-rt", dcvc_root=str(tmp_path / "DCVC"))
    coder = next(r for r in codec.requirements() if "MLCodec_extensions_cpp" in r.what or "C++ entropy coder" in r.what)
    assert not coder.present
    assert f"cd {codec.model_dir() / 'src' / 'cpp'} && {sys.executable} -m pip install ." in coder.fix and "DCVC-family/DCVC-RT/README.md" in coder.fix
    assert codec.resources().gpu  # it runs on CUDA by default
    # the feature reset follows the sweep's intra period; with one intra frame, its README's 64
    assert create_codec("dcvc-rt").reset_interval == 64
    assert create_codec("dcvc-rt", intra_period=32).reset_interval == 32
    assert create_codec("dcvc-rt", intra_period=32, reset_interval=16).identity()["reset_interval"] == 16
    assert create_codec("dcvc-rt").identity()["force_zero_thres"] == 0.12
    with pytest.raises(ValueError, match="reset_interval must be"):
        create_codec("dcvc-rt", reset_interval=-2)


def test_trusting_a_checkpoint_is_an_option_data_may_not_set():
    from bench.codec import codec_class, location_options

    for name in ("dcvc-fm", "dcvc-dc", "dcvc-rt"):
        assert "trust_checkpoint" in location_options(codec_class(name))


def test_the_child_process_answers_and_reports_errors_and_crashes():
    import numpy as np

    from baselines.dcvc import _Child
    from bench.codec import CodecError

    child = _Child("DCVC-TEST", {"target": "tests.fakes.child_runner:EchoRunner", "device": "cpu"})
    try:
        planes = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
        answer = child.call("echo", planes=planes)
        assert answer["init"] == {"device": "cpu"} and np.array_equal(answer["planes"], planes)
        with pytest.raises(CodecError, match="ValueError: a bad frame") as e:
            child.call("fail")
        assert not isinstance(e.value, CodecUnavailable)
        with pytest.raises(CodecUnavailable, match="^the coder is not built: build it so$"):
            child.call("unavailable")
        assert child.call("echo")["init"] == {"device": "cpu"}  # an error is not the end of it
        with pytest.raises(CodecError, match=r"the DCVC-TEST process ended during abort \(killed by SIGABRT\)"):
            child.call("abort")
        assert child.proc.poll() is not None
    finally:
        child.close()
