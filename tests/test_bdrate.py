from __future__ import annotations

import math

import numpy as np
import pytest

from bench import bdrate as bd

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
    with pytest.raises(bd.InsufficientOverlap, match="overlap by"):
        bd.bd_rate(_curve(), _curve(shift=10))
    assert math.isfinite(bd.bd_rate(_curve(), _curve(shift=10), min_overlap=0.05))


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
