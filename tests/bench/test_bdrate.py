from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import bdrate as bd
from bench.report import AGGREGATES, AVERAGE, BDOptions, bd_table, format_bd

# JCTVC-E137 (the vectors Netflix vmaf's BD-rate tests use)
E137_A1 = [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)]
E137_T1 = [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)]
E137_A2 = [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)]
E137_T2 = [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)]


@pytest.mark.parametrize("anchor, test, expected", [(E137_A1, E137_T1, -0.4652), (E137_A2, E137_T2, -1.8780)])
def test_jctvc_e137_vectors(anchor, test, expected):
    assert bd.bd_rate(anchor, test) == pytest.approx(expected, abs=1e-4)


def test_method_is_an_option_and_matters():
    vals = {m: bd.bd_rate(E137_A2, E137_T2, method=m) for m in bd.METHODS}
    assert abs(vals["pchip"] - vals["cubic"]) > 0.02
    with pytest.raises(ValueError, match="pchip"):
        bd.bd_rate(E137_A2, E137_T2, method="linear")


def _curve(scale=1.0, n=5, shift=0.0):
    """Quality 30 + 3 dB per doubling of rate; ``scale`` gives the same qualities at scale x the rate."""
    rates = np.array([0.01, 0.02, 0.04, 0.08, 0.16, 0.32])[:n]
    return [(r * scale, 30 + 3 * math.log2(r / 0.01) + shift) for r in rates]


def test_half_the_rate_is_minus_50_percent():
    assert bd.bd_rate(_curve(), _curve(scale=0.5)) == pytest.approx(-50.0, abs=1e-6)
    assert bd.bd_metric(_curve(), _curve(shift=0.7)) == pytest.approx(0.7, abs=1e-9)


def test_lower_is_better_metrics_are_flipped():
    lp = lambda c: [(r, 1 / q) for r, q in c]
    assert bd.bd_rate(lp(_curve()), lp(_curve(scale=0.5)), lower_is_better=True) == pytest.approx(-50.0, abs=1e-6)
    assert bd.bd_metric(lp(_curve()), lp(_curve(scale=0.5)), lower_is_better=True) < 0  # better = lower LPIPS
    with pytest.raises(bd.NotMonotonic):
        bd.bd_rate(lp(_curve()), lp(_curve()), lower_is_better=False)


def test_different_point_counts_work():
    assert bd.bd_rate(_curve(n=6), _curve(scale=0.5, n=4)) == pytest.approx(-50.0, abs=1e-6)


def test_too_few_points():
    with pytest.raises(bd.TooFewPoints, match="test has 2 point"):
        bd.bd_rate(_curve(), _curve(n=2))
    # the cubic fit needs 4 points; piecewise PCHIP/Akima give a number on 3 (published curves)
    with pytest.raises(bd.TooFewPoints, match="test has 3 point.*cubic BD needs at least 4"):
        bd.bd_rate(_curve(), _curve(n=3), method="cubic")
    assert bd.bd_rate(_curve(n=4), _curve(scale=0.5, n=3)) == pytest.approx(-50.0, abs=1e-6)


def test_no_overlap_and_too_little_overlap():
    with pytest.raises(bd.NoOverlap, match="do not overlap"):
        bd.bd_rate(_curve(), _curve(shift=40))
    # by default only no overlap at all is refused (as DCVC and the bjontegaard package
    # compute); the strict mode refuses below its threshold (this was the default until the
    # overlap became a column and a mark)
    assert bd.quality_overlap(_curve(), _curve(shift=10)) == pytest.approx(2 / 22)
    assert math.isfinite(bd.bd_rate(_curve(), _curve(shift=10)))
    with pytest.raises(bd.InsufficientOverlap, match="overlap by 9.1% of their union, less than the 50% --min-overlap asks for"):
        bd.bd_rate(_curve(), _curve(shift=10), min_overlap=0.5)
    assert math.isfinite(bd.bd_rate(_curve(), _curve(shift=10), min_overlap=0.05))
    assert bd.rate_overlap(_curve(), _curve(scale=2)) == pytest.approx(3 / 5)  # 3 of 5 octaves


def test_dominance_is_the_least_gain_at_no_more_rate():
    old = [(1.0, 30.0), (2.0, 31.0), (4.0, 32.0)]
    new = [(0.1, 33.0), (0.2, 34.0), (0.4, 35.0)]
    # each old point meets the new top (35 dB at 0.4): gains 5, 4, 3; the least is the bound
    assert bd.dominance(old, new) == pytest.approx(3.0)
    # a new point counts only for the old points at or above its rate: the 33 dB at 3.0 does
    # not help the old point at 2.0, which only the 31.5 dB at 1.0 beats
    assert bd.dominance(old, [(1.0, 31.5), (3.0, 33.0)]) == pytest.approx(0.5)
    # one point is enough: no curve is fitted
    assert bd.dominance([(1.0, 30.0)], [(0.5, 30.5)]) == pytest.approx(0.5)
    # lower-is-better metrics keep BD-metric's sign: an improvement is negative
    assert bd.dominance([(1.0, 0.3), (2.0, 0.2)], [(0.5, 0.1)], lower_is_better=True) == pytest.approx(-0.1)


def test_dominance_refuses_what_it_cannot_bound():
    old = [(1.0, 30.0), (2.0, 31.0)]
    with pytest.raises(bd.NotDominated, match="no point at or below the anchor's rate 1"):
        bd.dominance(old, [(1.5, 40.0)])
    with pytest.raises(bd.NotDominated, match="at the anchor's rate 2 .*best 30.5 against 31"):
        bd.dominance(old, [(0.5, 30.5)])
    with pytest.raises(bd.BadPoints):
        bd.dominance(old, [(0.0, 40.0)])


def test_non_monotonic_curve_names_the_points():
    bumpy = _curve()
    bumpy[3] = (bumpy[3][0], bumpy[2][1] - 0.5)
    with pytest.raises(bd.NotMonotonic, match="not monotonic"):
        bd.bd_rate(_curve(), bumpy)


def test_bad_points():
    with pytest.raises(bd.BadPoints, match="non-finite"):
        bd.bd_rate(_curve(), [*_curve()[:4], (0.5, float("nan"))])
    with pytest.raises(bd.BadPoints, match="rate <= 0"):
        bd.bd_rate(_curve(), [(0.0, 20.0), *_curve()[1:]])


def test_convex_hull_drops_dominated_and_concave_points():
    pts = _curve(n=6)
    bumpy = list(pts)
    bumpy[3] = (bumpy[3][0], bumpy[2][1] - 0.5)  # dominated
    hull = bd.convex_hull(bumpy)
    assert bumpy[3] not in hull and len(hull) == 5
    dip = list(pts)
    dip[2] = (dip[2][0], dip[2][1] - 1.0)  # under the chord of its neighbours
    assert dip[2] not in bd.convex_hull(dip)
    assert bd.convex_hull(pts) == [tuple(map(float, p)) for p in pts]  # a straight line in log rate stays


# --- bootstrap interval across sequences ------------------------------------------------------


def _known_bd_summary(bd_values: list[float]) -> pd.DataFrame:
    """Per sequence, a test curve that needs (1 + b/100) times the anchor's rate at every
    quality: its BD-rate is b exactly, whatever the interpolation."""
    rows = []
    for i, b in enumerate(bd_values):
        for k in range(4):
            bpp = 0.02 * 2**k * (1 + 0.05 * i)
            q = 30 + 3 * k + 0.1 * math.sin(i + k)  # concave enough, sequence-specific
            rows.append({"dataset": "syn", "sequence": f"s{i}", "codec": "anchor", "rate": str(k), "bpp": bpp, "psnr_yuv": q})
            rows.append({"dataset": "syn", "sequence": f"s{i}", "codec": "test", "rate": str(k), "bpp": bpp * (1 + b / 100), "psnr_yuv": q})
    return pd.DataFrame(rows)


def test_bootstrap_interval_of_known_per_sequence_bd_covers_their_mean_and_is_seeded():
    rng = np.random.default_rng(7)
    true = list(rng.normal(-12.0, 6.0, size=16))
    t = bd_table(_known_bd_summary(true), "anchor", ["psnr_yuv"], BDOptions(bootstrap=2000, seed=3))
    per = t[~t.sequence.isin(AGGREGATES)].sort_values("sequence", key=lambda s: s.str[1:].astype(int))
    np.testing.assert_allclose(per.bd_rate.to_numpy(), true, atol=1e-6)  # the construction holds
    mean = t[t.sequence == AVERAGE].iloc[0]
    assert mean.bd_rate == pytest.approx(np.mean(true), abs=1e-6)
    assert mean.ci_low < np.mean(true) < mean.ci_high
    # the interval is about the standard error wide (±1.96 σ/√n for 95 %)
    se = np.std(true, ddof=1) / math.sqrt(len(true))
    assert 2.5 * se < mean.ci_high - mean.ci_low < 5.5 * se
    assert "2000 resamples, seed 3" in mean.note and "16 sequences" in mean.note
    again = bd_table(_known_bd_summary(true), "anchor", ["psnr_yuv"], BDOptions(bootstrap=2000, seed=3))
    other = bd_table(_known_bd_summary(true), "anchor", ["psnr_yuv"], BDOptions(bootstrap=2000, seed=4))
    m2, m3 = again[again.sequence == AVERAGE].iloc[0], other[other.sequence == AVERAGE].iloc[0]
    assert (m2.ci_low, m2.ci_high) == (mean.ci_low, mean.ci_high)
    assert (m3.ci_low, m3.ci_high) != (mean.ci_low, mean.ci_high)
    text = format_bd(t, "md")
    assert f"{mean.bd_rate:+.2f}% [{mean.ci_low:+.2f}, {mean.ci_high:+.2f}]" in text and "2000 resamples, seed 3" in text


def test_bootstrap_interval_covers_the_population_mean_at_about_its_level():
    from bench.bdrate import bootstrap_ci

    rng = np.random.default_rng(0)
    hits, trials = 0, 300
    for trial in range(trials):
        sample = rng.normal(-20.0, 8.0, size=25)
        lo, hi = bootstrap_ci(sample, resamples=1000, level=0.9, seed=trial)
        hits += lo <= -20.0 <= hi
    # a percentile interval of the mean at n=25 covers slightly under its nominal level
    assert 0.82 <= hits / trials <= 0.96


def test_bootstrap_needs_two_sequences_and_says_so():
    from bench.bdrate import TooFewSequences, bootstrap_ci

    with pytest.raises(TooFewSequences, match="at least 2"):
        bootstrap_ci([-3.0])
    assert bootstrap_ci([-3.0, -3.0, -3.0]) == (-3.0, -3.0)
    t = bd_table(_known_bd_summary([-10.0]), "anchor", ["psnr_yuv"])
    mean = t[t.sequence == AVERAGE].iloc[0]
    assert math.isnan(mean.ci_low) and "no bootstrap interval: 1 sequence(s)" in mean.note
    off = bd_table(_known_bd_summary([-10.0, -5.0]), "anchor", ["psnr_yuv"], BDOptions(bootstrap=0))
    assert off[off.sequence == AVERAGE].ci_low.isna().all()


def test_bdrate_cli_prints_the_interval_and_refuses_bad_options(tmp_path, capsys):
    from bench.cli import main

    _known_bd_summary([-10.0, -4.0, -8.0, -12.0]).to_csv(tmp_path / "summary.csv", index=False)
    assert main(["bdrate", "--anchor", "anchor", "--results", str(tmp_path), "--metric", "psnr_yuv", "--seed", "5", "--bootstrap", "500"]) == 0
    out = capsys.readouterr().out
    assert "-8.50% [" in out and "500 resamples, seed 5" in out
    assert main(["bdrate", "--anchor", "anchor", "--results", str(tmp_path), "--ci", "95"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
