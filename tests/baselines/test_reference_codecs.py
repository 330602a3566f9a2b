"""The hm and vtm codecs against FAKE reference executables (tests/fakes/reference_codec.py).

The fakes follow HM's and VTM's command-line contract but code with ffmpeg, so the streams
are real HEVC/VVC; what is tested is the wrapper: how binaries and cfg files are found, the
exact encoder and decoder command lines (DCVC's test conditions), the kept encoder log, and
every error path. The fakes refuse what the real encoders refuse (an intra period their GOP
cannot honour); tests/baselines/test_reference_real.py runs the real HM-16.23 and VTM-17.0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from reference_tree import ROLES, make_tree

from bench.codec import CodecError, CodecUnavailable, RateError, ToolFailed, create_codec


@pytest.fixture
def calls(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_REFERENCE_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("kind", ["hm", "vtm"])
def test_exact_command_lines_and_round_trip(kind, tmp_path, calls, synthetic):
    tree = make_tree(tmp_path / kind.upper(), kind)
    codec = create_codec(kind, **{f"{kind}_dir": str(tree)})
    assert all(r.present for r in codec.requirements())
    video = synthetic["testsrc2"].open(frames=3)
    work = tmp_path / "work"
    work.mkdir()
    result = codec.encode(video, 37, work)
    path = result.bitstream
    enc, dec, cfg = ROLES[kind]
    (call,) = calls()
    assert call["role"] == enc
    assert call["argv"] == [
        "-c",
        str(tree / "cfg" / cfg),
        f"--InputFile={work / f'{kind}_qp37.input.yuv'}",
        f"--BitstreamFile={path}",
        "--DecodingRefreshType=2",
        "--InputBitDepth=8",
        "--OutputBitDepth=8",
        "--OutputBitDepthC=8",
        "--InputChromaFormat=420",
        f"--FrameRate={round(video.fps)}",
        "--FramesToBeEncoded=3",
        f"--SourceWidth={video.width}",
        f"--SourceHeight={video.height}",
        "--IntraPeriod=-1",
        "--QP=37",
        "--Level=6.2",
        f"--ReconFile={work / f'{kind}_qp37.recon.yuv'}",
    ]
    assert (work / f"{path.name}.enc.log").read_text().count("POC") == 1  # the encoder's log is kept beside the bitstream
    assert not (work / f"{kind}_qp37.input.yuv").exists()  # the raw input copy is removed
    decoded = codec.decode(path, work, bit_depth=8)
    assert calls()[-1] == {"role": dec, "argv": ["-b", str(path), "-o", str(work / f"{kind}_qp37.decoded.yuv"), "-d", "8"]}  # the source's depth
    assert (decoded.width, decoded.height, decoded.frames) == (video.width, video.height, 3)
    assert np.array_equal(decoded.y, result.reconstruction.y)
    assert result.command[0] == str(tree / "bin" / enc)
    # per-frame sizes and types from the stream's own access units
    assert len(result.frame_bytes) == 3 and sum(result.frame_bytes) <= path.stat().st_size and result.frame_types[0] == "I"


def test_intra_period_level_and_cfg_options(tmp_path, calls, synthetic):
    tree = make_tree(tmp_path / "HM", "hm")
    mycfg = tmp_path / "my_ld.cfg"
    mycfg.write_text("GOPSize : 4\n")
    codec = create_codec("hm", hm_dir=str(tree), intra_period=32, level="4.1", cfg=str(mycfg))
    codec.encode(synthetic["testsrc2"].open(frames=2), 42, tmp_path)
    argv = calls()[0]["argv"]
    assert argv[:2] == ["-c", str(mycfg)] and "--IntraPeriod=32" in argv and "--Level=4.1" in argv and "--QP=42" in argv
    with pytest.raises(ValueError, match="intra_period"):
        create_codec("hm", intra_period=0)
    with pytest.raises(RateError, match="qp 52 is out of range: it must be an integer in 0..51"):
        codec.parse_rate(52)
    assert create_codec("vtm").parse_rate(60) == 60


def test_found_on_path_with_cfg_beside_bin(tmp_path, monkeypatch, calls, synthetic):
    tree = make_tree(tmp_path / "VTM", "vtm")
    monkeypatch.setenv("PATH", f"{tree / 'bin'}{os.pathsep}{os.environ['PATH']}")
    codec = create_codec("vtm")
    codec.check()
    codec.encode(synthetic["testsrc2"].open(frames=1), 40, tmp_path)
    assert calls()[0]["argv"][1] == str(tree / "cfg" / "encoder_lowdelay_vtm.cfg")


def test_missing_binaries_and_cfg_are_named(tmp_path, monkeypatch, synthetic):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    codec = create_codec("hm")
    reqs = codec.requirements()
    assert [r.present for r in reqs] == [False, False, False] and "TAppEncoder" in reqs[0].what
    with pytest.raises(CodecUnavailable, match=r"HM encoder \(TAppEncoder or TAppEncoderStatic\) not found \(looked in PATH\).*hm_dir"):
        codec.check()
    nocfg = make_tree(tmp_path / "HM", "hm", with_cfg=False)
    codec = create_codec("hm", hm_dir=str(nocfg))
    with pytest.raises(CodecUnavailable, match=r"encoder_lowdelay_main10.cfg not found \(looked in .*HM/cfg\)"):
        codec.encode(synthetic["testsrc2"].open(frames=1), 37, tmp_path)
    nobin = make_tree(tmp_path / "VTM", "vtm", binaries=False)
    with pytest.raises(CodecUnavailable, match=r"VTM encoder \(EncoderApp or EncoderAppStatic\) not found \(looked in .*VTM/bin\)"):
        create_codec("vtm", vtm_dir=str(nobin)).check()


def test_encoder_failure_quotes_its_log_and_carries_it(tmp_path, monkeypatch, synthetic):
    tree = make_tree(tmp_path / "HM", "hm")
    monkeypatch.setenv("FAKE_REFERENCE_FAIL", "1")
    with pytest.raises(CodecError, match=r"(?s)HM encoder failed \(exit 1\).*Error parsing option \"Level\"") as info:
        create_codec("hm", hm_dir=str(tree)).encode(synthetic["testsrc2"].open(frames=1), 37, tmp_path)
    log = tmp_path / "hm_qp37.bin.enc.log"
    assert log.read_text().startswith("HM software")
    # the scratch folder goes with the job: the log travels in the error, for the store
    e = info.value
    assert isinstance(e, ToolFailed) and e.logs == {"enc.log": log.read_bytes()} and f"its log: {log};" in str(e)
    assert e.keep("hm-synthetic-testsrc2-37-abc", "bitstreams") == {"hm-synthetic-testsrc2-37-abc.enc.log": log.read_bytes()}
    assert str(e).startswith("HM encoder failed (exit 1); its log: bitstreams/hm-synthetic-testsrc2-37-abc.enc.log; its last lines:\n")


def test_a_failed_job_keeps_its_encoder_log_in_the_store(tmp_path, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("FAKE_REFERENCE_FAIL", "1")
    tree, out = make_tree(tmp_path / "HM", "hm"), tmp_path / "r"
    run = ["run", "--codec", "hm", "--hm-dir", str(tree), "--dataset", "synthetic", "--sequences", "testsrc2"]
    assert main([*run, "--frames", "1", "--rates", "37", "--metrics", "psnr", "--out", str(out), "--quiet"]) == 1
    ((job_id, job),) = json.loads((out / "manifest.json").read_text())["jobs"].items()
    assert job["status"] == "failed" and (out / "bitstreams" / f"{job_id}.enc.log").read_text().startswith("HM software")
    assert f"its log: bitstreams/{job_id}.enc.log;" in job["error"]  # not the scratch folder, which is gone


@pytest.mark.parametrize("period", [8, 12, 4, 1, 20])
def test_intra_period_the_gop_cannot_honour_is_refused_before_any_encode(period, tmp_path, calls, capsys):
    from bench.cli import main

    hm, vtm = make_tree(tmp_path / "HM", "hm"), make_tree(tmp_path / "VTM", "vtm")
    rc = main(
        ["run", "--codec", "hm,vtm", "--hm-dir", str(hm), "--vtm-dir", str(vtm), "--intra-period", str(period)]
        + ["--dataset", "synthetic", "--sequences", "testsrc2", "--frames", "17", "--rates", "37", "--out", str(tmp_path / "r"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and not calls() and not (tmp_path / "r" / "summary.csv").exists()
    for kind in ("hm", "vtm"):
        assert f"codec {kind}: intra_period {period} does not fit the GOP of {tmp_path / kind.upper() / 'cfg'}" in err
    assert err.count("takes -1 (one intra frame) or a multiple of the GOP size 8 above 8: -1, 16, 24, 32, ...") == 2
    for ok in (-1, 16, 24, 64):
        create_codec("hm", hm_dir=str(hm), intra_period=ok).check()


@pytest.mark.parametrize(
    "period,refused",
    [
        (8, "Intra period must be larger than GOP size for periodic IDR pictures"),
        (4, "Intra period must be more than GOP size, or -1 , not 0"),
        (12, "Intra period must be a multiple of GOPSize, or -1"),
    ],
)
def test_the_fake_refuses_what_hm_refuses(period, refused, tmp_path):
    """Run the fake by itself (past the plugin's check), as tests/baselines/test_reference_real.py runs HM."""
    tree = make_tree(tmp_path / "HM", "hm")
    cfg = tree / "cfg" / ROLES["hm"][2]
    opts = ["--DecodingRefreshType=2", f"--IntraPeriod={period}", "--QP=37", f"--InputFile={tmp_path / 'x'}", f"--BitstreamFile={tmp_path / 'y'}"]
    proc = subprocess.run([str(tree / "bin" / "TAppEncoder"), "-c", str(cfg), *opts], capture_output=True, text=True)
    assert proc.returncode == 1 and f"Error: {refused}" in proc.stdout and not (tmp_path / "y").exists()


def test_cfg_found_above_a_cmake_build_on_path(tmp_path, monkeypatch):
    release = "bin/umake/gcc-12.2/x86_64/release"  # where HM's and VTM's CMake builds put them
    tree = make_tree(tmp_path / "HM", "hm", bin_dir=release)
    monkeypatch.setenv("PATH", f"{tree / release}{os.pathsep}{os.environ['PATH']}")
    codec = create_codec("hm")
    codec.check()
    assert codec.describe()["cfg"] == str(tree / "cfg" / "encoder_lowdelay_main10.cfg")
    # bounded: a cfg/ further up than a build layout puts it is not the binary's
    deep = make_tree(tmp_path / "VTM", "vtm", bin_dir=f"{release}/a/b")
    monkeypatch.setenv("PATH", f"{deep / release / 'a/b'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(
        CodecUnavailable, match=rf"encoder_lowdelay_vtm.cfg not found \(looked in cfg/ in {deep / release / 'a/b'} and the 6 folders above it\)"
    ):
        create_codec("vtm").check()


def test_the_encoder_version_is_in_the_record_and_the_identity(tmp_path, calls):
    hm, vtm = create_codec("hm", hm_dir=str(make_tree(tmp_path / "HM", "hm"))), create_codec("vtm", vtm_dir=str(make_tree(tmp_path / "VTM", "vtm")))
    assert (hm.describe()["encoder_version"], hm.describe()["decoder_version"]) == ("16.23", "16.23")
    assert vtm.identity()["encoder_version"] == "17.0" and vtm.describe()["decoder_version"] == "17.0"
    asked = [c for c in calls() if c["argv"] == ["--help"]]
    assert len(asked) == 4  # once per binary, however often describe() runs
    enc = tmp_path / "HM" / "bin" / "TAppEncoder"
    enc.write_text(enc.read_text().replace("Version [16.23]", "Version [16.24]"))  # rebuilt
    os.utime(enc, ns=(enc.stat().st_atime_ns, enc.stat().st_mtime_ns + 10**9))  # a coarse clock may not have ticked
    assert hm.identity()["encoder_version"] == "16.24"


def test_decoder_refuses_a_non_hevc_file(tmp_path):
    tree = make_tree(tmp_path / "HM", "hm")
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CodecError):
        create_codec("hm", hm_dir=str(tree)).decode(bad, tmp_path)


def test_bench_run_passes_hm_dir(tmp_path, calls):
    import pandas as pd

    from bench.cli import main

    tree = make_tree(tmp_path / "HM", "hm")
    rc = main(
        [
            "run",
            "--codec",
            "hm",
            "--hm-dir",
            str(tree),
            "--dataset",
            "synthetic",
            "--sequences",
            "testsrc2",
            "--frames",
            "2",
            "--rates",
            "37",
            "--metrics",
            "psnr",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert rc == 0 and calls()[0]["role"] == "TAppEncoder"
    s = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert s.loc[0, "codec"] == "hm" and s.loc[0, "bytes"] > 0
    assert shutil.which("TAppEncoder") is None  # nothing leaked onto PATH


def test_codecs_and_doctor_show_what_each_baseline_needs(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tree = make_tree(tmp_path / "HM", "hm")
    assert main(["codecs", "--hm-dir", str(tree)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "ok" in lines["hm"] and "[needs 3/3 present]" in lines["hm"]
    assert "cannot run: VTM encoder (EncoderApp or EncoderAppStatic) not found" in lines["vtm"] and "[needs 0/3 present]" in lines["vtm"]
    assert "ssf2020-mse-5-1dd7d574.pth.tar not found" in lines["ssf2020"] and "[needs 0/5 present]" in lines["ssf2020"]
    assert "checkout of microsoft/DCVC with DCVC-FM not found" in lines["dcvc-fm"]
    assert main(["doctor", "--hm-dir", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"hm: present HM encoder (TAppEncoder or TAppEncoderStatic)\n          at {tree / 'bin' / 'TAppEncoder'}" in out
    assert "vtm: MISSING VTM low-delay configuration encoder_lowdelay_vtm.cfg" in out
    assert "bmshj2018-hyperprior: MISSING bmshj2018-hyperprior quality 1 (mse) weights bmshj2018-hyperprior-1-7eb97409.pth.tar" in out
    assert "dcvc-dc: MISSING DCVC-DC checkpoint cvpr2023_video_yuv420_psnr.pth.tar" in out
    assert "x265: present ffmpeg encoder libx265" in out and "x265: present ffmpeg decoder hevc" in out
