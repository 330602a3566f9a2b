from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.drift import Golden, compare

GOLDEN = Path(__file__).resolve().parents[2] / "results" / "golden" / "sample"


@pytest.fixture
def golden_copy(tmp_path):
    dst = tmp_path / "golden"
    shutil.copytree(GOLDEN, dst)
    return dst


def _perturbed(golden: Path, tmp_path: Path, column: str, delta: float, rel: bool = False) -> Path:
    df = pd.read_csv(golden / "summary.csv", dtype={"rate": str})
    df.loc[0, column] = df.loc[0, column] * (1 + delta) if rel else df.loc[0, column] + delta
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    df.to_csv(out / "summary.csv", index=False)
    return out


def test_committed_golden_set_is_complete():
    g = Golden.load(GOLDEN)
    s = g.summary()
    assert set(s.codec) == {"x265", "vvenc"} and s.rate.nunique() == 2 and set(s.sequence) == {"bigbuckbunny", "bikes", "carphone"}
    assert all("threads=1" in c for c in g.config["codecs"])
    # honest tolerances: a 0.05 dB or 1 % bpp change must be caught
    assert g.tolerances["psnr_yuv"]["abs"] < 0.05 and g.tolerances["bpp"]["rel"] < 0.01


@pytest.mark.parametrize(
    "column, delta, rel, drifts",
    [
        ("psnr_yuv", 0.05, False, True),
        ("psnr_y", -0.02, False, True),
        ("bpp", 0.01, True, True),
        ("ms_ssim_rgb", 0.001, False, True),
        ("psnr_yuv", 0.004, False, False),
        ("bpp", 0.002, True, False),
    ],
)
def test_perturbed_beyond_tolerance_fails_within_passes(golden_copy, tmp_path, capsys, column, delta, rel, drifts):
    results = _perturbed(golden_copy, tmp_path, column, delta, rel)
    rc = main(["check", "--golden", str(golden_copy), "--results", str(results)])
    out = capsys.readouterr().out
    assert rc == (1 if drifts else 0)
    assert ("DRIFT" in out) == drifts
    assert column in out  # the moved value is listed either way


def test_missing_and_extra_rows_are_drift():
    g = pd.read_csv(GOLDEN / "summary.csv", dtype={"rate": str})
    # the golden set's own tolerances: the registry's defaults name columns this table lacks
    # (lpips, ...), which compare() now refuses rather than skips
    tol = Golden.load(GOLDEN).tolerances
    t = compare(g, g.iloc[1:], tol)
    assert (t.status == "MISSING").sum() == 1
    extra = pd.concat([g, g.iloc[:1].assign(rate="99")])
    assert (compare(g, extra, tol).status == "EXTRA").sum() == 1


def test_update_rewrites_on_purpose(golden_copy, tmp_path, capsys):
    results = _perturbed(golden_copy, tmp_path, "psnr_yuv", 1.0)
    assert main(["check", "--golden", str(golden_copy), "--results", str(results), "--update"]) == 0
    assert main(["check", "--golden", str(golden_copy), "--results", str(results)]) == 0
    assert json.loads((golden_copy / "tolerances.json").read_text()) == json.loads((GOLDEN / "tolerances.json").read_text())


def test_not_a_golden_set(tmp_path, capsys):
    assert main(["check", "--golden", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_rerunning_the_configuration_reproduces_the_golden_tables(capsys):
    assert main(["check", "--golden", str(GOLDEN)]) == 0
    assert "0 out of tolerance" in capsys.readouterr().out
