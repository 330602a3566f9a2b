"""The hm and vtm plugins against the real HM-16.23 and VTM-17.0, built from
../shared/thirdparty by .ci/build-thirdparty (tox does it once, under its work dir).

Each runs through the sweep on carphone (176x144): 17 frames at 8 bits with an intra period
of 16, and 9 frames at 10 bits with one intra frame. What the harness recorded must be what
the encoder says in its own log: per-frame bits, picture types and slice QPs. The harness
itself checks the decoder's output against the encoder's reconstruction (a job that differs
fails). The GOP rule the plugin and the fake enforce is checked against the real encoder.
Where ../shared/thirdparty or a build is absent these tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.codec import create_codec

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("BENCH_THIRDPARTY", REPO.parent / "shared" / "thirdparty"))
# tox sets it ({work_dir}/thirdparty); by hand, tox's default work dir is looked in
BUILD = Path(os.environ.get("BENCH_THIRDPARTY_BUILD") or Path(os.environ.get("BENCH_TOX_WORKDIR", "~/.cache/bench/tox")).expanduser() / "thirdparty")
ENCODER = {"hm": "TAppEncoder", "vtm": "EncoderApp"}
FAKE = REPO / "tests" / "fakes" / "reference_codec.py"
# HM:  POC    1 TId: 0 ( B-SLICE, nQP 38 QP 38 )       1234 bits [Y ...
# VTM: POC    1 LId:  0 TId: 0 ( LD_B, B-SLICE, QP 38 )   1234 bits [Y ...
_POC = re.compile(r"^POC\s+(\d+)\s.*?\(\s*(?:\w+,\s*)?([IPB])-SLICE,\s*(?:nQP\s+-?\d+\s+)?QP\s+(-?\d+)\s*\)\s+(\d+) bits", re.M)


def built(kind: str) -> Path:
    """The tree .ci/build-thirdparty left (bin/ and cfg/), or a skip that says why not."""
    if not SOURCE.is_dir():
        pytest.skip(f"../shared/thirdparty is absent (a user's clone): no {kind.upper()} source to build ({SOURCE})")
    dest = BUILD / kind
    if not (dest / ".stamp").is_file():
        log = BUILD / f"{kind}.log"
        if log.is_file():
            pytest.skip(f"the {kind.upper()} build failed: see {log}")
        pytest.skip(f"{kind.upper()} is not built in {dest}: run BENCH_THIRDPARTY_BUILD={BUILD} bash .ci/build-thirdparty PYTHON (tox does)")
    return dest


@pytest.fixture(scope="module")
def carphone_10bit(tmp_path_factory, ffmpeg_exe) -> Path:
    from bench.datasets import DATASETS

    carphone = next(s for s in DATASETS["sample"].resolve(None) if s.name == "carphone")
    out = tmp_path_factory.mktemp("ten") / "Carphone_176x144_30_10bit.yuv"
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "176x144", "-r", "30", "-i", str(carphone.path)]
    subprocess.run([ffmpeg_exe, "-hide_banner", "-loglevel", "error", *raw, "-frames:v", "9", "-pix_fmt", "yuv420p10le", str(out)], check=True)
    return out


RUNS = {  # name: (dataset arguments, frames, rate, intra period, where the I frames must be)
    "8bit-ip16": (["--dataset", "sample", "--sequences", "carphone"], 17, 37, 16, [0, 16]),
    "10bit": ([], 9, 32, -1, [0]),
}


@pytest.fixture(scope="module")
def sweep(request, tmp_path_factory):
    """One sweep per (codec, run), run once for the tests that read it."""
    kind, run = request.param
    tree = built(kind)  # first: a skip makes no clip
    data, frames, rate, period, _ = RUNS[run]
    data = data or ["--dataset", str(request.getfixturevalue("carphone_10bit"))]
    out = tmp_path_factory.mktemp(f"{kind}-{run}")
    args = ["run", "--codec", kind, f"--{kind}-dir", str(tree), *data, "--frames", str(frames), "--rates", str(rate)]
    rc = main([*args, "--intra-period", str(period), "--metrics", "psnr", "--out", str(out), "--quiet"])
    ((job_id, job),) = json.loads((out / "manifest.json").read_text())["jobs"].items()
    assert rc == 0 and job["status"] == "done", job.get("error")  # done: the decode equalled the reconstruction
    return kind, run, out, job_id, job


CASES = [(k, r) for k in ("hm", "vtm") for r in RUNS]


@pytest.mark.parametrize("sweep", CASES, ids=[f"{k}-{r}" for k, r in CASES], indirect=True)
def test_per_frame_bits_types_and_qps_are_the_encoders_own(sweep):
    kind, run, out, job_id, job = sweep
    _, frames, rate, period, intra = RUNS[run]
    log = (out / "bitstreams" / f"{job_id}.enc.log").read_text()
    theirs = sorted((int(poc), kind_, int(qp), int(bits)) for poc, kind_, qp, bits in _POC.findall(log))
    assert [t[0] for t in theirs] == list(range(frames)), log[-2000:]
    ours = pd.read_csv(out / "frames.csv").sort_values("frame")
    assert ours.frame.tolist() == list(range(frames))
    assert ours.frame_type.tolist() == [t[1] for t in theirs]
    assert ours.qp.tolist() == [t[2] for t in theirs]
    assert ours.bits.tolist() == [t[3] for t in theirs]
    assert ours.index[ours.frame_type == "I"].tolist() == intra  # I frames exactly where the period puts them
    assert set(ours.frame_type[ours.frame_type != "I"]) == {"B"}  # low delay: generalized B
    summary = pd.read_csv(out / "summary.csv")
    assert summary.bytes[0] * 8 == ours.bits.sum() and summary.bit_depth[0] == (10 if run == "10bit" else 8)
    cmd = job["encoder"]["command"]
    assert f"--IntraPeriod={period}" in cmd and f"--QP={rate}" in cmd
    assert job["codec_config"]["encoder_version"] == {"hm": "16.23", "vtm": "17.0"}[kind]
    assert job["codec_config"]["decoder_version"] == {"hm": "16.23", "vtm": "17.0"}[kind]


@pytest.mark.parametrize("kind", ["hm", "vtm"])
def test_an_intra_period_the_gop_cannot_honour_is_refused_as_the_encoder_would(kind, tmp_path):
    """The plugin refuses at plan time what the real encoder refuses at run time, and the
    fake refuses it with the real encoder's own words."""
    tree = built(kind)
    cfg = create_codec(kind, **{f"{kind}_dir": str(tree)}).describe()["cfg"]
    with pytest.raises(ValueError, match=r"multiple of the GOP size 8 above 8: -1, 16, 24, 32, \.\.\."):
        create_codec(kind, **{f"{kind}_dir": str(tree)}, intra_period=8).check()
    create_codec(kind, **{f"{kind}_dir": str(tree)}, intra_period=16).check()
    fake = tmp_path / ENCODER[kind]
    fake.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    fake.chmod(0o755)
    (real,) = (tree / "bin").rglob(ENCODER[kind])
    for period in (4, 8, 12):
        args = ["-c", cfg, "--DecodingRefreshType=2", f"--IntraPeriod={period}", "--QP=37", f"--InputFile={tmp_path / 'none.yuv'}"]
        args += [f"--BitstreamFile={tmp_path / 'out.bin'}", "--SourceWidth=176", "--SourceHeight=144", "--FramesToBeEncoded=17", "--FrameRate=30"]
        said = [subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60) for exe in (real, fake)]
        errors = [[line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")] for p in said]
        assert [p.returncode != 0 for p in said] == [True, True] and errors[0] and errors[0] == errors[1], said[0].stdout[-1500:]
        assert not (tmp_path / "out.bin").exists()
