"""The sweep as a library (SweepConfig, run_sweep), its honest cache, and the plan-time
refusals: each bad input is a clear message before anything is encoded, and nothing is written."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.codec import RateError, codec_names, register_codec
from bench.config import SweepConfig, SweepConfigError
from bench.plan import PlanError
from bench.store import ResultsStore
from bench.sweep import run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "examples"))
from lambda_codec import Quantiser  # the README's plugin example, as written there

ROOT = Path(__file__).resolve().parents[2]


def _config(out, **kw) -> SweepConfig:
    base = dict(
        codecs=["x265:preset=ultrafast"], dataset="synthetic", sequences=["testsrc2"], frames=2, rates=["40"], metrics=["psnr"], out=str(out), progress=False
    )
    base.update(kw)
    return SweepConfig.from_dict(base)


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(p.is_file() for p in out.rglob("*") if p.name != ".lock")


def test_lambda_plugin_from_the_readme_runs_fractional_rates(tmp_path):
    register_codec("quantiser", Quantiser)
    result = run_sweep(_config(tmp_path / "q", codecs=["quantiser"], rates=["0.5", "1", "4"]))
    assert result.ok
    s = result.summary()
    assert sorted(s["rate"].astype(float)) == [0.5, 1.0, 4.0]  # not 0, 1, 4
    f = pd.read_csv(tmp_path / "q" / "frames.csv")
    assert set(f.frame_type) == {"I"} and f.bits.notna().all()
    by = s.set_index(s["rate"].astype(float))
    assert by.loc[4.0, "bpp"] < by.loc[1.0, "bpp"]
    assert "0.5" in Path(README := ROOT / "README.md").read_text() and "lambda_codec.py" in README.read_text()


def test_wrong_rate_type_and_range_are_refused_before_encoding(tmp_path):
    register_codec("quantiser", Quantiser)
    with pytest.raises(PlanError, match=r"x265: qp '37.5' is not an integer: it must be an integer in 0..51"):
        run_sweep(_config(tmp_path / "a", rates=["37.5"]))
    with pytest.raises(PlanError, match=r"lambda '0' is out of range: it must be a number in \(0, 64\]"):
        run_sweep(_config(tmp_path / "b", codecs=["quantiser"], rates=["0"]))
    with pytest.raises(RateError, match="not a number"):
        Quantiser().parse_rate("high")
    assert _nothing_written(tmp_path / "a") and _nothing_written(tmp_path / "b")


def test_unknown_config_key_lists_the_valid_ones(tmp_path):
    with pytest.raises(SweepConfigError, match=r"unknown sweep configuration key\(s\) 'rate'; valid keys: codecs, dataset, rates"):
        SweepConfig.from_dict({"codecs": ["x265"], "dataset": "synthetic", "rate": [32]})
    with pytest.raises(SweepConfigError, match="'frames' must be an integer"):
        SweepConfig.from_dict({"codecs": ["x265"], "dataset": "synthetic", "frames": "many"})
    with pytest.raises(SweepConfigError, match="needs dataset"):
        SweepConfig.from_dict({"codecs": ["x265"]})


def test_option_a_codec_does_not_take_is_refused_or_noted(tmp_path, capsys):
    # an image codec has no GOP: a mixed sweep would compare different GOPs without a word
    cfg = _config(tmp_path / "r", codecs=["x265:preset=ultrafast", "bmshj2018-hyperprior:random_weights_for_tests=true"], intra_period=8)
    with pytest.raises(PlanError, match="codec bmshj2018-hyperprior does not take --intra-period"):
        run_sweep(cfg)
    assert _nothing_written(tmp_path / "r")
    # a location option no codec of the sweep takes is used by none: said, and recorded
    result = run_sweep(_config(tmp_path / "n", codec_options={"hm_dir": "/nowhere"}))
    assert result.ok
    err = capsys.readouterr().err
    assert "no codec of this sweep takes hm_dir" in err
    assert any("hm_dir" in n for n in json.loads((tmp_path / "n" / "manifest.json").read_text())["provenance"]["notes"])
    with pytest.raises(PlanError, match="unknown harness-wide codec option"):
        run_sweep(_config(tmp_path / "u", codec_options={"hm_root": "/x"}))


def test_a_changed_metric_option_re_measures_an_unchanged_one_skips(tmp_path, capsys):
    out = tmp_path / "c"
    first = run_sweep(_config(out, metrics=["psnr", "ewarp:flow=dis"], frames=3))
    assert first.ok and first.parts[0].skipped == 0
    again = run_sweep(_config(out, metrics=["psnr", "ewarp:flow=dis"], frames=3))
    assert again.parts[0].skipped == 1 and not again.parts[0].records
    changed = run_sweep(_config(out, metrics=["psnr", "ewarp:flow=dis:on=source"], frames=3))
    assert changed.parts[0].skipped == 0 and len(changed.parts[0].records) == 1
    rec = ResultsStore(out).find("x265", "testsrc2", 40)
    assert rec["config"]["metrics"]["ewarp"] == {"metric": "ewarp", "flow": "dis", "on": "source", "random_weights": False}
    # and a codec setting is part of the identity too
    # another preset under the same label would put two encoders' points in one curve
    other = _config(out, codecs=["x265:preset=superfast"], metrics=["psnr", "ewarp:flow=dis:on=source"], frames=3)
    with pytest.raises(PlanError, match=r"(?s)codec_options.preset ultrafast \(this run: superfast\).*--out DIR.*--force"):
        run_sweep(other)
    other.force = True  # replaces the curve, leaving no point of the old preset
    preset = run_sweep(other)
    assert preset.parts[0].skipped == 0 and [r["config"]["codec_options"]["preset"] for r in ResultsStore(out).records()] == ["superfast"]


def test_flow_auto_is_resolved_into_the_identity(monkeypatch):
    from bench import weights
    from bench.metrics import create_metric

    monkeypatch.setattr(weights, "locate", lambda key: None)
    assert create_metric("ewarp").identity()["flow"] == "dis"  # what it will really use


def test_golden_configs_are_sweep_configs():
    for cfg in sorted((ROOT / "results" / "golden").glob("*/config.json")):
        SweepConfig.from_dict(json.loads(cfg.read_text()))


def test_bench_names_no_codec_and_the_cli_drift_cycle_is_gone():
    names = set(codec_names()) | {"baselines", "diffsit"}
    found = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                words = set(node.value.replace(",", " ").replace(":", " ").replace("=", " ").split())
                found += [f"{path.name}:{node.lineno}: {w!r}" for w in words & names]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path.name}:{node.lineno}: import {m}" for m in mods if m.split(".")[0] in ("baselines", "diffsit")]
    assert not found, found
    code = "import sys, bench.drift; print('bench.cli' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_tables_are_updated_per_job_without_rereading_the_sweep(tmp_path, monkeypatch):
    from bench import store as store_mod
    from bench.store import TableWriter

    out = tmp_path / "inc"
    assert run_sweep(_config(out, sequences=["testsrc2", "mandelbrot"], rates=["36", "44"])).ok
    st = ResultsStore(out)
    tables = TableWriter(st)
    reads = []
    real = pd.read_csv
    monkeypatch.setattr(store_mod.pd, "read_csv", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    rec = st.find("x265", "testsrc2", 36)
    frames = real(st.frames_path(rec["job_id"]), dtype={"rate": str})
    new = {**rec, "job_id": "x265-synthetic-testsrc2-38-0123456789", "rate": 38, "summary": {**rec["summary"], "rate": "38"}}
    tables.add(new, frames.assign(rate="38"))
    assert reads == []  # appended, not rebuilt
    s, f = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "frames.csv")
    assert len(s) == 5 and len(f) == 10 and (s.rate == 38).sum() == 1
    tables.add(new, frames.assign(rate="38"))  # the same job again (--force): replaced, not duplicated
    assert len(pd.read_csv(out / "summary.csv")) == 5 and len(pd.read_csv(out / "frames.csv")) == 10
    tables.finish()
    assert list(pd.read_csv(out / "summary.csv").query("sequence == 'testsrc2'").rate) == [36, 38, 44]  # sorted at the end


def test_spec_values_may_hold_colons():
    from bench.spec import parse_spec

    assert parse_spec("diffsit:model=preset:tiny:3:allow_untrained=true") == ("diffsit", {"model": "preset:tiny:3", "allow_untrained": True})
    assert parse_spec("x265:preset=slow:threads=1") == ("x265", {"preset": "slow", "threads": 1})
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_spec("x265:slow")
