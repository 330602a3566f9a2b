"""The DCVC adapters against the real code of microsoft/DCVC (../shared/thirdparty/DCVC).

.ci/build-thirdparty (run by tox before the tests) copies DCVC-FM and DCVC-DC into
$BENCH_THIRDPARTY_BUILD/dcvc, builds their C++ entropy coders for the test Python and makes
checkpoints of random weights from their own classes (.ci/thirdparty/dcvc.sh). Where that is
absent (a user's clone has no ../shared/thirdparty) or failed, these tests skip and say why.

By hand: ``BENCH_THIRDPARTY_BUILD=/tmp/tp bash .ci/build-thirdparty $(which python)``, then
``BENCH_THIRDPARTY_BUILD=/tmp/tp python -m pytest tests/baselines/test_dcvc_real.py``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import random_video

from bench.codec import CodecUnavailable, codec_names, create_codec, register_codec

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("BENCH_THIRDPARTY") or REPO.parent / "shared" / "thirdparty")
FAMILY = SHARED / "DCVC" / "DCVC-family"

if "dcvc-rt" not in codec_names():  # an installed wheel that predates its entry point
    register_codec("dcvc-rt", "baselines.dcvc_rt:DCVCRT")


@pytest.fixture(scope="module")
def build() -> Path:
    """The built DCVC-FM and DCVC-DC (with checkpoints), or a skip saying why there is none."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone): no real DCVC to test against")
    out = os.environ.get("BENCH_THIRDPARTY_BUILD")
    if not out:
        pytest.skip("BENCH_THIRDPARTY_BUILD is not set: run through tox, or BENCH_THIRDPARTY_BUILD=DIR bash .ci/build-thirdparty PYTHON first")
    dest = Path(out) / "dcvc"
    if not (dest / ".stamp").is_file():
        log = Path(out) / "dcvc.log"
        pytest.skip(f"the DCVC build failed: see {log}" if log.is_file() else f"DCVC is not built in {dest}: run .ci/build-thirdparty")
    return dest


@pytest.mark.slow  # about 280 s of CPU (2 threads): 36 frames coded and decoded by full-size networks
def test_both_families_run_end_to_end_on_cpu(build, tmp_path):
    """`bench run` of dcvc-fm and dcvc-dc in one worker, the way users run them: every job
    done, each decoded from its file alone to the encoder's reconstruction (the harness
    fails the job otherwise), per-frame bits adding up to the file, more bits at a higher q."""
    from bench.cli import main

    out = tmp_path / "r"
    argv = ["run", "--codec", "dcvc-fm,dcvc-dc", "--dcvc-root", str(build), "--dataset", "sample", "--sequences", "carphone"]
    # 9 frames: a whole rate GOP of DCVC-FM's hierarchical quality; intra period 8 puts a
    # second I frame (a new SPS for DCVC-FM, a picture size for DCVC-DC's P frames) at 8
    argv += ["--frames", "9", "--intra-period", "8", "--rates", "63,0", "--metrics", "psnr", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]
    assert len(records) == 4 and all(r["status"] == "done" for r in records), [r.get("error") for r in records]
    frames, summary = pd.read_csv(out / "frames.csv"), pd.read_csv(out / "summary.csv")
    for (codec, rate), rows in frames.groupby(["codec", "rate"]):
        row = summary[(summary.codec == codec) & (summary.rate == rate)].iloc[0]
        assert rows.bits.sum() == 8 * row.bytes == 8 * (out / row.bitstream).stat().st_size
        assert list(rows.sort_values("frame").frame_type) == ["I", *"PPPPPPP", "I"]
    size = summary.set_index(["codec", "rate"]).bytes
    for codec in ("dcvc-fm", "dcvc-dc"):
        assert size[codec, 63] > size[codec, 0], f"{codec}: q 63 should give more bits than q 0"
    configs = {r["codec"]: r["codec_config"] for r in records}
    assert len(configs["dcvc-fm"]["checkpoints"]) == 2 and all(len(s) == 64 for s in configs["dcvc-fm"]["checkpoints"].values())


def test_bench_codecs_gives_both_families_complexity(build, capsys):
    """kMAC/pixel and seconds a frame, both directions, from the real networks (random
    weights: the count does not depend on the values)."""
    from bench.cli import main

    assert main(["codecs", "--complexity", "128x128", "--dcvc-root", str(build)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("dcvc-fm", "dcvc-dc"):
        (i,) = [k for k, line in enumerate(lines) if line.startswith(f"{name} ")]
        figures = [float(x) for x in re.findall(r"([0-9.]+) kMAC/px", lines[i + 1])]
        assert len(figures) == 2 and min(figures) > 100, lines[i + 1]  # hundreds of kMAC/px each way


def test_the_child_reports_each_frame_to_the_jobs_bar(build, tmp_path, monkeypatch):
    """DCVC codes in a child process of its own; each of its frames reaches the job's
    progress stage (the child sends every one; here the job's side shows every one too)."""
    from bench import progress

    monkeypatch.setattr(progress, "MAX_RATE", 1e9)
    codec = create_codec("dcvc-fm", dcvc_root=str(build))
    video = random_video(frames=3, height=128, width=128)
    seen = []
    with progress.sink(seen.append), progress.job("j"):
        with progress.stage("encode", 3):
            stream = codec.encode(video, 42, tmp_path).bitstream
        with progress.stage("decode", 3):
            codec.decode(stream, tmp_path)
    for stage in ("encode", "decode"):
        done = [e.done for e in seen if e.stage == stage]
        assert done == sorted(done) and {1, 2, 3} <= set(done), (stage, done)


def test_doctor_tells_an_unbuilt_coder_from_a_built_one(build, tmp_path, capsys):
    from bench.cli import main

    unbuilt = tmp_path / "DCVC-FM"
    shutil.copytree(build / "DCVC-FM", unbuilt, ignore=shutil.ignore_patterns("MLCodec_*", "build", "checkpoints"))
    weights = build / "DCVC-FM" / "checkpoints"
    assert main(["doctor", "--dcvc-root", str(unbuilt), "--dcvc-weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert f"dcvc-fm: MISSING DCVC-FM's C++ entropy coder, built for this Python ({sys.executable})" in out
    assert f"cd {unbuilt / 'src'} && mkdir -p build && cd build && cmake ../cpp -DCMAKE_BUILD_TYPE=Release -DPYTHON_EXECUTABLE={sys.executable}" in out
    assert "DCVC-family/DCVC-FM/README.md" in out
    assert main(["doctor", "--dcvc-root", str(build)]) == 0
    out = capsys.readouterr().out
    assert f"dcvc-fm: present DCVC-FM's C++ entropy coder, built for this Python ({sys.executable})" in out
    assert "dcvc-dc: present DCVC-DC's C++ entropy coder" in out and "dcvc-dc: MISSING" not in out
    assert main(["codecs", "--dcvc-root", str(build)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " ok [needs" in lines["dcvc-fm"] and " ok [needs" in lines["dcvc-dc"]


def test_a_trusted_checkpoint_with_more_than_tensors_loads(build, tmp_path):
    """A checkpoint that also holds a Namespace (as training scripts save them) is refused
    until trusted by its SHA-256, and then loads into the real networks."""
    import torch

    weights = tmp_path / "w"
    weights.mkdir()
    src = build / "DCVC-FM" / "checkpoints"
    state = torch.load(src / "cvpr2024_image.pth.tar", weights_only=True)
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-4)}, weights / "cvpr2024_image.pth.tar")
    (weights / "cvpr2024_video.pth.tar").symlink_to(src / "cvpr2024_video.pth.tar")
    opts = {"dcvc_root": str(build), "dcvc_weights": str(weights), "intra_period": 1}
    with pytest.raises(CodecUnavailable, match=r"weights_only=True not found .*argparse.Namespace.*dcvc-fm:trust_checkpoint=[0-9a-f]{64}"):
        create_codec("dcvc-fm", **opts).check()
    sha = create_codec("dcvc-fm", **opts).identity()["checkpoints"]["cvpr2024_image.pth.tar"]
    codec = create_codec("dcvc-fm", trust_checkpoint=sha, **opts)
    result = codec.encode(random_video(frames=1), 21, tmp_path)
    decoded = codec.decode(result.bitstream, tmp_path, bit_depth=8)
    assert np.array_equal(decoded.y, result.reconstruction.y)


# --- what the adapters call, checked against the real source --------------------------------------


def _signatures(path: Path) -> dict[str, list[str]]:
    """``Class.method`` (and module functions) -> parameter names, from the source."""
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = [a.arg for a in item.args.args]
    return out


# what baselines/dcvc_rt.py calls (DCVC-RT cannot run without CUDA and Python >= 3.12, so
# this is what a CPU machine can check of it)
RT_CALLS = {
    "src/models/image_model.py": {"DMCI.compress": ["self", "x", "qp"], "DMCI.decompress": ["self", "bit_stream", "sps", "qp"]},
    "src/models/video_model.py": {
        "DMC.compress": ["self", "x", "qp"],
        "DMC.decompress": ["self", "bit_stream", "sps", "qp"],
        "DMC.shift_qp": ["self", "qp", "fa_idx"],
        "DMC.prepare_feature_adaptor_i": ["self", "last_qp"],
        "DMC.add_ref_frame": ["self", "feature", "frame", "increase_poc"],
        "DMC.clear_dpb": ["self"],
        "DMC.set_curr_poc": ["self", "poc"],
        "DMC.reset_ref_feature": ["self"],
    },
    "src/models/common_model.py": {
        "CompressionModel.update": ["self", "force_zero_thres"],
        "CompressionModel.set_use_two_entropy_coders": ["self", "use_two_entropy_coders"],
        "CompressionModel.get_padding_size": ["height", "width", "p"],
    },
    "src/utils/stream_helper.py": {
        "write_sps": ["f", "sps"],
        "write_ip": ["f", "is_i_frame", "sps_id", "qp", "bit_stream"],
        "read_header": ["f"],
        "read_sps_remaining": ["f", "sps_id"],
        "read_ip_remaining": ["f"],
        "SPSHelper.get_sps_id": ["self", "target_sps"],
    },
    "src/utils/transforms.py": {"ycbcr420_to_444_np": ["y", "uv", "order", "separate"], "yuv_444_to_420": ["yuv"]},
    "src/layers/cuda_inference.py": {"replicate_pad": ["x", "pad_b", "pad_r"]},
}


def test_dcvc_rt_calls_match_the_real_source():
    model = FAMILY / "DCVC-RT"
    if not model.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone): no DCVC-RT source to check against")
    for rel, wanted in RT_CALLS.items():
        found = _signatures(model / rel)
        for name, params in wanted.items():
            assert found.get(name) == params, f"DCVC-RT {rel}: {name}{tuple(found.get(name) or ())}, the adapter calls it as {tuple(params)}"


@pytest.mark.gpu
def test_dcvc_rt_runs_end_to_end_on_cuda(tmp_path):
    """DCVC-RT's real code with random-weight checkpoints, on a GPU machine whose Python has
    its coder installed (cd DCVC-family/DCVC-RT/src/cpp && python -m pip install .)."""
    import importlib.util

    from bench.cli import main

    if not (FAMILY / "DCVC-RT").is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone)")
    problems = [r for r in create_codec("dcvc-rt", dcvc_root=str(FAMILY / "DCVC-RT")).requirements() if not r.present and "checkpoint" not in r.what]
    if problems:
        pytest.skip("dcvc-rt cannot run here: " + "; ".join(f"{r.what} missing" for r in problems))
    spec = importlib.util.spec_from_file_location("dcvc_checkpoints", REPO / ".ci" / "thirdparty" / "dcvc_checkpoints.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    maker.make(FAMILY / "DCVC-RT", tmp_path / "w")
    out = tmp_path / "r"
    argv = ["run", "--codec", "dcvc-rt", "--dcvc-root", str(FAMILY / "DCVC-RT"), "--dcvc-weights", str(tmp_path / "w"), "--device", "cuda"]
    argv += ["--dataset", "sample", "--sequences", "carphone", "--frames", "9", "--intra-period", "8", "--rates", "63,0"]
    assert main([*argv, "--metrics", "psnr", "--out", str(out), "--quiet"]) == 0
    frames, summary = pd.read_csv(out / "frames.csv"), pd.read_csv(out / "summary.csv")
    for rate, rows in frames.groupby("rate"):
        assert rows.bits.sum() == 8 * summary.set_index("rate").bytes[rate]
    assert summary.set_index("rate").bytes[63] > summary.set_index("rate").bytes[0]
