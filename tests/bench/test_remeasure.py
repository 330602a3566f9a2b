"""Two-level cache (issue 35): a bitstream is keyed by what makes it, metric values by the
decoded samples and the metric; adding a metric decodes the stored bitstream, never encodes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from baselines.x265 import X265
from bench.cli import main
from bench.config import SweepConfig
from bench.plan import PlanError
from bench.store import ResultsStore
from bench.sweep import run_sweep


def _config(out, **kw) -> SweepConfig:
    base = dict(codecs=["x265:preset=ultrafast"], dataset="synthetic", sequences=["testsrc2"], frames=3, rates=["36", "44"], metrics=["psnr"], out=str(out))
    return SweepConfig.from_dict({**base, "progress": False, **kw})


def _md5s(out) -> dict[str, str]:
    return {r["rate"]: r["bitstream_md5"] for r in ResultsStore(out).records()}


def test_an_added_metric_decodes_the_stored_bitstream(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    assert run_sweep(_config(out)).ok
    before = _md5s(out)
    psnr_before = pd.read_csv(out / "summary.csv").set_index("rate").psnr_yuv

    def refuse(self, *a, **k):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(X265, "encode", refuse)
    # a sweep that adds a metric: measured again from the stored stream
    again = run_sweep(_config(out, metrics=["psnr", "psnr_rgb"]))
    assert again.ok and len(again.parts[0].records) == 2 and _md5s(out) == before
    rec = again.parts[0].records[0]
    assert any("not encoded again" in n for n in rec["notes"]) and any("kept the recorded values of psnr" in n for n in rec["notes"])
    assert "encode_s" not in rec["timings"]
    # bench measure adds another to the finished results, also without encoding
    assert main(["measure", "--results", str(out), "--metrics", "ms_ssim_rgb", "--quiet"]) == 0
    assert "2 measured again, 0 failed, 0 unchanged" in capsys.readouterr().out
    s = pd.read_csv(out / "summary.csv").set_index("rate")
    assert {"psnr_yuv", "psnr_rgb", "ms_ssim_rgb"} <= set(s.columns) and _md5s(out) == before
    assert (s.psnr_yuv == psnr_before).all()
    prov = ResultsStore(out).manifest()["provenance"]
    assert prov["measured_later"][0]["metrics"] == ["ms_ssim_rgb"] and "command" in prov
    # nothing asked that is not there: nothing runs
    assert main(["measure", "--results", str(out), "--metrics", "ms_ssim_rgb", "--quiet"]) == 0
    assert "0 measured again, 0 failed, 2 unchanged" in capsys.readouterr().out


def test_measure_refuses_what_it_cannot_do_without_encoding(tmp_path):
    from bench.remeasure import measure_results

    with pytest.raises(PlanError, match="has no jobs/ folder"):
        measure_results(tmp_path, ["psnr"])
    out = tmp_path / "r"
    assert run_sweep(_config(out, rates=["44"])).ok
    for p in (out / "bitstreams").glob("*.hevc"):
        p.unlink()
    with pytest.raises(PlanError, match="no stored bitstream to measure again .* never encodes"):
        measure_results(out, ["psnr_rgb"])
    rec = json.loads(next((out / "jobs").glob("*.json")).read_text())
    assert rec["config"]["metrics"].keys() == {"psnr"}  # untouched


def test_force_encodes_again(tmp_path):
    out = tmp_path / "r"
    assert run_sweep(_config(out, rates=["44"])).ok
    again = run_sweep(_config(out, rates=["44"], metrics=["psnr", "psnr_rgb"], force=True))
    assert "encode_s" in again.parts[0].records[0]["timings"]
