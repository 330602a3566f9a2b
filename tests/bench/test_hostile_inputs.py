"""Hostile and mistaken inputs (issue 30): each class of case gives a clear error before any
work, or a correct result, and never loses, overwrites or averages a row.

Each test asserts the message and that nothing already written changed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.config import SweepConfig
from bench.datasets import Sequence
from bench.jobs import Job
from bench.plan import PlanError
from bench.store import PooledResults, ResultsStore, read_summaries
from bench.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
FIG5 = ROOT / "results" / "published" / "diffsit_fig5"


def _config(out, **kw) -> SweepConfig:
    base = dict(codecs=["x265:preset=ultrafast"], dataset="synthetic", sequences=["testsrc2"], frames=2, rates=["40"], metrics=["psnr"], out=str(out))
    return SweepConfig.from_dict({**base, "progress": False, **kw})


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under a folder: its content hash and mtime (what must not change)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# --- a job's identity ----------------------------------------------------------------------


def test_two_presets_of_one_codec_keep_two_rows(tmp_path):
    result = run_sweep(_config(tmp_path, codecs=["x265:preset=ultrafast", "x265:preset=superfast"]))
    s = result.summary()
    assert result.ok and len(s) == 2
    assert sorted(s.codec) == ["x265:preset=superfast", "x265:preset=ultrafast"]
    assert len({r["job_id"] for r in ResultsStore(tmp_path).records()}) == 2


def test_a_label_names_a_curve_and_a_bad_one_is_refused(tmp_path):
    result = run_sweep(_config(tmp_path / "ok", codecs=["x265:preset=ultrafast:label=x265-fast"]))
    assert list(result.summary().codec) == ["x265-fast"]
    with pytest.raises(PlanError, match="codec label '../x'"):
        run_sweep(_config(tmp_path / "bad", codecs=["x265:label=../x"]))
    assert not (tmp_path / "bad").exists()


def test_a_job_listed_twice_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match=r"the same job twice \(x265 on testsrc2 at rate 40\)"):
        run_sweep(_config(tmp_path, rates=["40", "40"]))
    with pytest.raises(PlanError, match="the same job twice"):
        run_sweep(_config(tmp_path, codecs=["x265:preset=ultrafast", "x265:preset=ultrafast"]))
    assert not tmp_path.joinpath("jobs").exists()


def test_names_that_sanitise_alike_get_different_ids(tmp_path):
    def job(name):
        seq = Sequence("d", name, tmp_path / "x.yuv", 16, 16, 25.0)
        return Job(dataset="d", sequence=seq, codec="x265", codec_options=(), rate=32, frames=2, metrics=())

    a, b = job("a b"), job("a_b")
    assert a.job_id.startswith("x265-d-a_b-32-") and b.job_id.startswith("x265-d-a_b-32-") and a.job_id != b.job_id


def test_a_rerun_with_other_frames_is_refused_and_the_curve_kept(tmp_path):
    assert run_sweep(_config(tmp_path, frames=3, rates=["40", "44"])).ok
    before = _snapshot(tmp_path)
    with pytest.raises(PlanError, match=r"(?s)holds jobs made with other settings.*frames 3 \(this run: 2\).*--out DIR.*--force"):
        run_sweep(_config(tmp_path, frames=2, rates=["40"]))
    assert _snapshot(tmp_path) == before
    # --force replaces the whole curve: no point of the 3-frame run is left beside the new one
    assert run_sweep(_config(tmp_path, frames=2, rates=["40"], force=True)).ok
    s = pd.read_csv(tmp_path / "summary.csv")
    assert list(s.frames) == [2] and len(ResultsStore(tmp_path).records()) == 1
    assert len(list((tmp_path / "bitstreams").glob("*.hevc"))) == 1


def test_a_published_table_is_not_overwritten_by_run(tmp_path):
    copy = tmp_path / "fig5"
    shutil.copytree(FIG5, copy)
    before = _snapshot(copy)
    rc = main(["run", "--codec", "x265:preset=ultrafast", "--dataset", "synthetic", "--sequences", "testsrc2", "--frames", "2"]
              + ["--rates", "40", "--metrics", "psnr", "--out", str(copy), "--quiet"])  # fmt: skip
    assert rc != 0
    assert _snapshot(copy) == before and len(pd.read_csv(copy / "summary.csv")) == 76
    with pytest.raises(PlanError, match=r"holds 76 summary row\(s\) that no job record .* made .* another --out"):
        run_sweep(_config(copy, force=True))  # --force redoes jobs; it does not take a folder
    assert _snapshot(copy) == before


# --- reports never pool ---------------------------------------------------------------------


def _rows(folder: Path, psnr: float) -> None:
    folder.mkdir(parents=True)
    rows = [
        dict(dataset="sample", sequence="carphone", codec="x265", rate=r, frames=3, bpp=0.1 / (i + 1), psnr_yuv=psnr - i) for i, r in enumerate(("32", "42"))
    ]
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)


def test_rows_of_two_folders_are_never_averaged(tmp_path, capsys):
    _rows(tmp_path / "mix" / "a", 38.0)
    _rows(tmp_path / "mix" / "b", 30.0)
    with pytest.raises(PooledResults, match=r"x265 on sample/carphone at rate 32 is in both .*mix/a and .*mix/b \(2 such rows"):
        read_summaries([tmp_path / "mix"])
    for command in (["bdrate", "--anchor", "x265"], ["plot", "--out", str(tmp_path / "plots")]):
        assert main([*command, "--results", str(tmp_path / "mix")]) != 0
        assert "reports never average two folders' rows" in capsys.readouterr().err
    assert not (tmp_path / "plots").exists()
    assert len(read_summaries([tmp_path / "mix" / "a"])) == 2  # one folder is fine


# --- rate counts what a decoder needs -------------------------------------------------------


@pytest.mark.parametrize("spec", ["x265:preset=ultrafast", "x264:preset=ultrafast", "vvenc:preset=faster"])
def test_anchor_streams_carry_no_informational_units(tmp_path, spec):
    from bench.codec import create_codec, parse_codec_spec
    from bench.datasets import get_dataset

    name, opts = parse_codec_spec(spec)
    codec = create_codec(name, **opts)
    seq = get_dataset("synthetic").resolve(None, ["testsrc2"])[0]
    enc = codec.encode(seq.open(frames=3), 37, tmp_path)
    trace = subprocess.run(
        [codec.exe, "-hide_banner", "-f", codec.muxer, "-i", str(enc.bitstream), "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True,
        text=True,
    ).stderr
    nal_types = {int(line.rsplit("=", 1)[1]) for line in trace.splitlines() if "nal_unit_type" in line}
    informational = {"x265": {39, 40}, "x264": {6}, "vvenc": {20, 23, 24}}[name]  # SEI (and VVC's delimiters)
    assert nal_types and not nal_types & informational
    assert "user_data" not in trace
    assert sum(enc.frame_bytes) == enc.bitstream.stat().st_size  # per-frame bits still add up


def test_encoder_params_are_checked_and_part_of_the_identity(tmp_path):
    from bench.codec import create_codec, parse_codec_spec

    name, opts = parse_codec_spec("x265:preset=slow:params=ref=2:me=hex")
    assert (name, opts) == ("x265", {"preset": "slow", "params": "ref=2:me=hex"})
    codec = create_codec(name, **opts)
    assert codec.encoder_args(32)[-1].endswith(":info=0:ref=2:me=hex") and codec.identity()["params"] == "ref=2:me=hex"
    for bad, why in (
        ("qp=20", "the harness sets it"),
        ("info=1", "the harness sets it"),
        ("csv=log.csv", "names a file"),
        ("ref=2;rm", "is not key=value"),
        ("ref", "is not key=value"),
        ("pools=/tmp/x", "is not key=value"),
    ):
        with pytest.raises(ValueError, match=why):
            create_codec("x265", params=bad)
    with pytest.raises(PlanError, match="IntraPeriod: the harness sets it"):
        run_sweep(_config(tmp_path, codecs=["vvenc:params=IntraPeriod=8"]))
    ids = {run_sweep(_config(tmp_path / p, codecs=[f"x265:preset=ultrafast{p}"])).parts[0].records[0]["job_id"] for p in ("", ":params=ref=1")}
    assert len(ids) == 2


# --- a crash in a codec's native code -------------------------------------------------------


def test_a_process_killing_crash_fails_that_job_only(tmp_path):
    """A learned codec's C++ coder that aborts (DCVC's 'double free or corruption') kills the
    process it runs in: at --jobs 1 too, it costs that job, recorded with the signal."""
    import sys

    from bench.codec import register_codec

    # the fakes' folder on sys.path (spawned workers inherit it), as the other tests do
    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    from crashing_codec import AbortsAt44

    register_codec("aborts-at-44", AbortsAt44)
    result = run_sweep(_config(tmp_path, codecs=["aborts-at-44"], rates=["40", "44", "48"], jobs=1))
    by_rate = {r["rate"]: r for r in result.parts[0].records}
    assert by_rate[44]["status"] == "failed" and by_rate[44]["signal"] == "SIGABRT"
    assert "killed by SIGABRT" in by_rate[44]["error"]
    assert by_rate[40]["status"] == by_rate[48]["status"] == "done"
    assert sorted(pd.read_csv(tmp_path / "summary.csv").rate) == [40, 48]
    manifest = (tmp_path / "manifest.json").read_text()
    assert '"signal": "SIGABRT"' in manifest
