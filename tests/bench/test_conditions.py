"""Named test conditions (issue 32): a sweep under a condition records it, flags override it
and the override is recorded, and curves of two conditions are not compared silently."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.conditions import CONDITIONS, MixedConditions, check_comparable, get_conditions


def test_every_condition_names_its_source_and_the_harness_conventions(capsys):
    assert {"dcvc-ip32", "dcvc-ip96", "dcvc-ip-1", "dcvc-rt-allf", "jvet-ctc-ld"} <= set(CONDITIONS)
    assert (get_conditions("dcvc-ip32").frames, get_conditions("dcvc-ip32").intra_period) == (96, 32)
    assert (get_conditions("dcvc-rt-allf").frames, get_conditions("dcvc-rt-allf").intra_period) == (0, -1)
    assert get_conditions("jvet-ctc-ld").rates["vtm"] == (22, 27, 32, 37)
    assert main(["conditions"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in CONDITIONS) and out.count("source:") == len(CONDITIONS)
    assert "test_conditions.md" in out and "JVET-T2010" in out


def test_an_unknown_condition_lists_the_valid_ones(tmp_path, capsys):
    assert main(["run", "--codec", "x265", "--conditions", "dcvc", "--dataset", "sample", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown test conditions 'dcvc'; named conditions: dcvc-ip32, dcvc-ip96" in err
    assert not (tmp_path / "r").exists()


def test_a_conditions_sweep_records_its_condition_and_overrides(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["run", "--codec", "x265:preset=ultrafast", "--conditions", "dcvc-ip32", "--dataset", "sample", "--sequences", "carphone"]
    assert main([*argv, "--frames", "2", "--metrics", "psnr", "--out", str(out), "--quiet"]) == 0
    cond = json.loads((out / "manifest.json").read_text())["provenance"]["conditions"]
    assert cond["name"] == "dcvc-ip32" and cond["label"] == "dcvc-ip32 (frames=2)"
    assert cond["overrides"] == {"dataset": "sample", "frames": 2} and "test_conditions.md" in cond["source"]
    s = pd.read_csv(out / "summary.csv")
    assert sorted(s.rate) == [22, 27, 32, 37]  # the condition's anchor ladder
    assert set(s.conditions) == {"dcvc-ip32 (frames=2)"}
    rec = json.loads(next((out / "jobs").glob("*.json")).read_text())
    assert rec["config"]["codec_options"]["intra_period"] == 32 and rec["config"]["conditions"] == "dcvc-ip32 (frames=2)"
    # the report says which experiment it shows
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "page")]) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert "test conditions" in page and "dcvc-ip32 (frames=2): DCVC&#x27;s suggested conditions" in page
    # BD numbers between curves of two conditions are refused, naming both
    other = tmp_path / "other"
    other.mkdir()
    s.assign(codec="vvenc", conditions="jvet-ctc-ld (frames=2)", bpp=s.bpp * 0.8).to_csv(other / "summary.csv", index=False)
    capsys.readouterr()
    assert main(["bdrate", "--anchor", "x265", "--results", str(out), "--results", str(other)]) == 2
    err = capsys.readouterr().err
    assert "x265 ran under test conditions 'dcvc-ip32 (frames=2)' and vvenc under 'jvet-ctc-ld (frames=2)'" in err
    assert "--mixed-conditions" in err
    assert main(["bdrate", "--anchor", "x265", "--results", str(out), "--results", str(other), "--mixed-conditions"]) == 0


def test_rows_without_named_conditions_compare_with_a_note():
    rows = pd.DataFrame({"codec": ["x265", "x265", "VTM-17.0"], "conditions": ["dcvc-ip32", "dcvc-ip32", None]})
    assert check_comparable(rows, "x265") == ["VTM-17.0: no named conditions", "x265: dcvc-ip32"]
    two = pd.DataFrame({"codec": ["x265", "x265"], "conditions": ["dcvc-ip32", "jvet-ctc-ld"]})
    with pytest.raises(MixedConditions, match="x265 has results under several test conditions"):
        check_comparable(two, "x265")
