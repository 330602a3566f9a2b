from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from baselines.x265 import X265
from bench.cli import main
from bench.codec import register_codec
from bench.store import ResultsStore
from bench.video import Video


def run_cli(*args) -> int:
    return main(list(map(str, args)))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "res"
    rc = run_cli("run", "--codec", "x265:preset=ultrafast", "--dataset", "synthetic", "--frames", 4, "--rates", "32,44", "--out", out, "--quiet")
    assert rc == 0
    return out


def test_tables_follow_the_contract(swept):
    s = pd.read_csv(swept / "summary.csv")
    f = pd.read_csv(swept / "frames.csv")
    assert len(s) == 4 and len(f) == 16
    for col in (
        "dataset",
        "sequence",
        "codec",
        "rate",
        "frames",
        "width",
        "height",
        "bytes",
        "bpp",
        "bitstream",
        "bitstream_md5",
        "psnr_y",
        "psnr_u",
        "psnr_v",
        "psnr_yuv",
        "psnr_rgb",
        "ms_ssim_rgb",
    ):
        assert col in s.columns, col
    assert not s.duplicated(["dataset", "sequence", "codec", "rate"]).any()
    assert set(s.rate) == {32, 44} and (s.codec == "x265").all()
    manifest = json.loads((swept / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 4, "failed": 0}
    prov = manifest["provenance"]
    assert prov["ffmpeg"]["version"].startswith("ffmpeg version") and "torch" in prov["packages"]
    assert "bframes=0" in " ".join(prov["codecs"]["x265"]["encoder_args_template"])
    job = next(iter(manifest["jobs"].values()))
    assert job["source"]["frames"] == 4 and job["config"]["codec_options"] == {"preset": "ultrafast"}
    # the exact command and binary of each job
    assert "-x265-params" in job["encoder"]["command"] and job["codec_config"]["ffmpeg_version"].startswith("ffmpeg")


def test_bpp_is_file_bits_over_unpadded_pixels(swept):
    s = pd.read_csv(swept / "summary.csv")
    for row in s.itertuples():
        size = (swept / row.bitstream).stat().st_size
        assert row.bytes == size
        assert row.bpp == pytest.approx(8 * size / (row.frames * row.width * row.height), rel=1e-9)
    f = pd.read_csv(swept / "frames.csv")
    per_seq = f.groupby(["sequence", "rate"]).bits.sum()
    for row in s.itertuples():
        assert per_seq[(row.sequence, row.rate)] == 8 * row.bytes  # per-frame bits add up to the file


def test_bitstream_md5_matches_file(swept):
    for row in pd.read_csv(swept / "summary.csv").itertuples():
        assert hashlib.md5((swept / row.bitstream).read_bytes()).hexdigest() == row.bitstream_md5


def test_done_jobs_are_skipped_and_force_redoes_them(swept, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (swept / "jobs").glob("*.json")}
    assert run_cli("run", "--codec", "x265:preset=ultrafast", "--dataset", "synthetic", "--frames", 4, "--rates", "32,44", "--out", swept, "--quiet") == 0
    assert "4 job(s) already done, skipped" in capsys.readouterr().err
    assert before == {p.name: p.stat().st_mtime_ns for p in (swept / "jobs").glob("*.json")}
    # other settings are other jobs: not skipped, and never mixed silently
    assert (
        run_cli(
            "run",
            "--codec",
            "x265:preset=ultrafast",
            "--dataset",
            "synthetic",
            "--sequences",
            "testsrc2",
            "--frames",
            4,
            "--rates",
            "44",
            "--out",
            swept,
            "--quiet",
            "--force",
        )
        == 0
    )
    after = {p.name: p.stat().st_mtime_ns for p in (swept / "jobs").glob("*.json")}
    changed = [n for n in before if before[n] != after[n]]
    assert len(changed) == 1 and changed[0].startswith("x265-synthetic-testsrc2-44-")
    assert len(pd.read_csv(swept / "summary.csv")) == 4


class FailsAt40(X265):
    """x265, except that QP 40 makes ffmpeg fail (a preset x265 does not have)."""

    name = "x265-fails-at-40"

    def encoder_args(self, qp):
        args = super().encoder_args(qp)
        return args + ["-preset", "no-such-preset"] if qp == 40 else args


def test_a_failing_job_is_recorded_and_the_others_go_on(tmp_path, capsys):
    register_codec("x265-fails-at-40", FailsAt40)
    out = tmp_path / "res"
    rc = run_cli(
        "run",
        "--codec",
        "x265-fails-at-40:preset=ultrafast",
        "--dataset",
        "synthetic",
        "--sequences",
        "testsrc2",
        "--frames",
        2,
        "--rates",
        "36,40,44",
        "--out",
        out,
        "--quiet",
    )
    assert rc == 1
    assert "FAILED x265-fails-at-40-synthetic-testsrc2-40" in capsys.readouterr().err
    s = pd.read_csv(out / "summary.csv")
    assert sorted(s.rate) == [36, 44]
    jobs = json.loads((out / "manifest.json").read_text())["jobs"]
    job = next(v for k, v in jobs.items() if k.startswith("x265-fails-at-40-synthetic-testsrc2-40-"))
    assert job["status"] == "failed" and "ffmpeg failed" in job["error"] and "no-such-preset" in job["error"]


def test_encoder_decoder_mismatch_is_reported(tmp_path, capsys):
    class Drifting(X265):
        name = "drifting"

        def encode(self, video, rate, workdir):
            result = super().encode(video, rate, workdir)
            result.reconstruction = video.copy()  # pretend the encoder used the source itself
            return result

    register_codec("drifting", Drifting)
    rc = run_cli(
        "run",
        "--codec",
        "drifting:preset=ultrafast",
        "--dataset",
        "synthetic",
        "--sequences",
        "testsrc2",
        "--frames",
        2,
        "--rates",
        "40",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert rc == 1 and "encoder/decoder mismatch" in capsys.readouterr().err


def test_a_failed_job_keeps_the_log_its_codec_attached(tmp_path):
    from bench.codec import CodecError
    from bench.config import SweepConfig
    from bench.sweep import run_sweep

    class Refuses(X265):
        name = "refuses"

        def encode(self, video, rate, workdir):
            e = CodecError("the encoder refused its configuration: see its log")
            e.logs = {"enc.log": b"Error: IntraPeriod must be a multiple of GOPSize\n", "../../escape": b"x"}
            raise e

    register_codec("refuses", Refuses)
    cfg = dict(codecs=["refuses:preset=ultrafast"], dataset="synthetic", sequences=["testsrc2"], frames=2, rates=["40"], metrics=["psnr"])
    result = run_sweep(SweepConfig.from_dict({**cfg, "out": str(tmp_path), "progress": False}))
    rec = result.failed[0]
    assert rec["logs"] == [f"bitstreams/{rec['job_id']}.enc.log", f"bitstreams/{rec['job_id']}.escape"]
    assert (tmp_path / rec["logs"][0]).read_bytes().startswith(b"Error: IntraPeriod")
    assert sorted(p.name for p in tmp_path.rglob("*escape*")) == [f"{rec['job_id']}.escape"]


def test_bad_cli_input_exits_2_with_the_valid_names(tmp_path, capsys):
    assert run_cli("run", "--codec", "x266", "--dataset", "synthetic", "--out", tmp_path) == 2
    assert "x265" in capsys.readouterr().err
    assert run_cli("run", "--codec", "x265", "--dataset", "hevc_f", "--out", tmp_path) == 2
    assert "mcl_jcv" in capsys.readouterr().err
    assert run_cli("run", "--codec", "x265", "--dataset", "hevc_b", "--data-root", tmp_path, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert "BQTerrace_1920x1080_60.yuv" in err and "--data-root" in err
    assert run_cli("run", "--codec", "x265", "--dataset", "synthetic", "--frames", 500, "--out", tmp_path) == 2
    assert "fewer than --frames 500" in capsys.readouterr().err
    assert run_cli("run", "--codec", "x265", "--dataset", "synthetic", "--rates", "99", "--out", tmp_path) == 2
    assert "out of range: it must be an integer in 0..51" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.hevc"))  # nothing was encoded


def test_missing_encoder_fails_at_plan_time(tmp_path, capsys, fake_ffmpeg):
    fake = fake_ffmpeg("libx264")
    assert run_cli("run", "--codec", "x265", "--dataset", "synthetic", "--ffmpeg", fake, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "no encoder 'libx265'" in err and "--ffmpeg PATH" in err


def test_weird_file_names_through_the_whole_sweep(weird_dir, capsys):
    from bench.video import write_yuv

    src = weird_dir / "my clip; rm -rf x 'q'_64x64_25.yuv"
    rng = np.random.default_rng(0)
    write_yuv(Video(rng.integers(0, 255, (2, 64, 64), dtype=np.uint8), np.full((2, 32, 32), 128, np.uint8), np.full((2, 32, 32), 128, np.uint8)), src)
    out = weird_dir / "out dir"
    # 64x64 is too small for MS-SSIM: asked for explicitly, refused before anything is encoded
    assert run_cli("run", "--codec", "x265:preset=ultrafast", "--dataset", src, "--rates", 40, "--out", out, "--quiet", "--metrics", "psnr,ms_ssim_rgb") == 2
    assert "MS-SSIM needs frames of at least 88x88" in capsys.readouterr().err
    assert not list(out.rglob("*.hevc"))
    # by default it is left out, with the reason printed and recorded
    assert run_cli("run", "--codec", "x265:preset=ultrafast", "--dataset", src, "--rates", 40, "--out", out, "--quiet") == 0
    assert "metric ms_ssim_rgb skipped" in capsys.readouterr().err
    assert "88x88" in json.loads((out / "manifest.json").read_text())["provenance"]["metrics_skipped"]["ms_ssim_rgb"]
    s = pd.read_csv(out / "summary.csv")
    assert s.sequence[0] == src.stem and (out / s.bitstream[0]).exists()


def test_second_sweep_into_the_same_folder_is_refused(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r")
    with store.lock():
        assert run_cli("run", "--codec", "x265", "--dataset", "synthetic", "--out", tmp_path / "r") == 2
    assert "another `bench run`" in capsys.readouterr().err


def test_kill_9_mid_sweep_then_resume(tmp_path):
    out = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--codec",
        "x265:preset=ultrafast",
        "--dataset",
        "synthetic",
        "--frames",
        "3",
        "--rates",
        "30,34,38,42,46,50",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "jobs").glob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = {p.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*.json")}
    assert 3 <= len(committed) < 12, "the sweep must have been killed part-way"
    s = pd.read_csv(out / "summary.csv")  # parses: never a partial row
    assert not s.duplicated(["sequence", "rate"]).any() and len(s) <= len(committed)

    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    assert res.returncode == 0, res.stderr
    assert f"{len(committed)} job(s) already done, skipped" in res.stderr
    for name, mtime in committed.items():
        assert (out / "jobs" / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    s = pd.read_csv(out / "summary.csv")
    f = pd.read_csv(out / "frames.csv")
    assert len(s) == 12 and not s.duplicated(["sequence", "rate"]).any()
    assert len(f) == 36 and not f.duplicated(["sequence", "rate", "frame"]).any()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"], "stale temporary files left"


def test_parallel_jobs_match_serial(swept, tmp_path):
    out = tmp_path / "par"
    assert (
        run_cli("run", "--codec", "x265:preset=ultrafast", "--dataset", "synthetic", "--frames", 4, "--rates", "32,44", "--out", out, "--jobs", 2, "--quiet")
        == 0
    )
    timing = lambda df: df.drop(columns=[c for c in df if c.endswith(("_s", "_per_frame"))])  # wall times differ run to run
    a = timing(pd.read_csv(swept / "summary.csv"))
    b = timing(pd.read_csv(out / "summary.csv"))
    pd.testing.assert_frame_equal(a, b)
