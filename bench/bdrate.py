"""Bjøntegaard deltas on top of the ``bjontegaard`` package, with every edge case named.

- ``bd_rate``: average rate difference (percent) at equal quality over the overlapping
  quality range; negative means the test codec needs fewer bits.
- ``bd_metric``: average quality difference at equal rate, in the metric's own units, as
  ``test - anchor`` (so for LPIPS, DISTS, Ewarp a negative value is an improvement). It
  integrates quality over log-rate, so it exists where BD-rate does not: quality ranges that
  do not overlap (while the rate ranges do), or a quality that does not rise with rate (Ewarp
  of real codecs often does not).
- ``dominance``: where the rate ranges do not meet and neither BD exists, the least quality
  gain one ladder guarantees over the other at no more rate: a lower bound, not a BD number.

The interpolation method is a recorded option: JVET/JCT-VC CTC use piecewise cubic Hermite
(``pchip``, the default), AV2 uses ``akima``, VCEG-M33 a cubic polynomial (``cubic``); they
can differ by more than two points. Lower-is-better metrics (``lower_is_better=True``; the
metric registry says which, ``bench.metrics.lower_is_better``) are negated before fitting.
Fewer than 3 points (4 for ``cubic``), no overlap, or a curve whose quality does not rise with rate
raise a :class:`BDError` subclass whose message is the reason to print in the table.

Overlap: by default a BD number is refused only where the ranges do not overlap at all, as
DCVC's ``compare_bd_rate.py`` and the ``bjontegaard`` package compute one over any overlap
(the package warns below its threshold). Real ladders often overlap little (QP 22-37 against
28-43), and a number with its overlap beside it is more use than a refusal: the caller shows
:func:`quality_overlap` / :func:`rate_overlap` and marks a cell below ``OVERLAP_MARK``.
``min_overlap`` > 0 is the strict mode: below it, :class:`InsufficientOverlap`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

METHODS = ("pchip", "akima", "cubic")
# The cubic polynomial fit (VCEG-M33) needs 4 points. Piecewise interpolation (PCHIP, Akima)
# is defined on 3: published curves often have 3 points (the Diff-SIT paper's HM/VTM, HNeRV),
# and a 3-point BD with its caveat in the note is more use than none. 2 points stay refused.
MIN_POINTS = {"pchip": 3, "akima": 3, "cubic": 4}
DEFAULT_MIN_OVERLAP = 0.0  # refuse only where nothing overlaps (strict mode: pass more)
#: below this overlap (fraction of the union) a BD number is shown with a mark: it rests on a
#: narrow part of the curves. 0.5 was this harness's refusal threshold before it marked instead.
OVERLAP_MARK = 0.5

Points = Sequence[tuple[float, float]]


class BDError(ValueError):
    """A BD value that cannot be computed honestly; ``str(e)`` is the reason."""


class TooFewPoints(BDError):
    pass


class NoOverlap(BDError):
    pass


class InsufficientOverlap(BDError):
    pass


class NotMonotonic(BDError):
    pass


class BadPoints(BDError):
    pass


def _prepare(points: Points, role: str, flip: bool, method: str = "pchip", monotonic: bool = True, least: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by rate. ``monotonic``: quality must rise with rate (BD-rate inverts the curve;
    BD-metric integrates quality over log-rate and needs only distinct rates). ``least``:
    fewest points, when not the interpolation's."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(arr).all():
        raise BadPoints(f"{role} has non-finite values")
    if (arr[:, 0] <= 0).any():
        raise BadPoints(f"{role} has a rate <= 0")
    need = MIN_POINTS[method] if least is None else least
    if len(arr) < need:
        raise TooFewPoints(f"{role} has {len(arr)} point(s); {f'{method} BD' if least is None else 'it'} needs at least {need}")
    arr = arr[np.argsort(arr[:, 0])]
    rate, q = arr[:, 0], (-arr[:, 1] if flip else arr[:, 1])
    worse = np.flatnonzero(np.diff(q) <= 0)
    if monotonic and len(worse):
        i = worse[0]
        shown = arr[:, 1]
        raise NotMonotonic(
            f"{role} is not monotonic: quality goes from {shown[i]:.5g} at {rate[i]:.5g} to {shown[i + 1]:.5g} "
            f"at {rate[i + 1]:.5g} (more rate, no better); try --convex-hull"
        )
    if len(np.unique(rate)) != len(rate):
        raise NotMonotonic(f"{role} has two points at the same rate")
    return rate, q


def _fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the intersection of the two ranges over the length of their union."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    total = max(a.max(), b.max()) - min(a.min(), b.min())
    return max(hi - lo, 0.0) / total if total > 0 else 0.0


def _overlap(a: np.ndarray, b: np.ndarray, axis: str, min_overlap: float, sign: float = 1.0) -> None:
    """``sign`` -1: the values were negated for fitting (lower is better); name them as measured."""
    frac = _fraction(a, b)
    if frac <= 0:

        def span(v):
            x, y = sorted((sign * v.min(), sign * v.max()))
            return f"{x:.5g}..{y:.5g}"

        raise NoOverlap(f"the {axis} ranges do not overlap (anchor {span(a)}, test {span(b)})")
    if frac < min_overlap:
        raise InsufficientOverlap(
            f"the {axis} ranges overlap by {100 * frac:.1f}% of their union, less than the {100 * min_overlap:.0f}% --min-overlap asks for"
        )


def _values(points: Points) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return arr[np.isfinite(arr).all(axis=1)]


def quality_overlap(anchor: Points, test: Points) -> float:
    """The overlap BD-rate integrates over: of the quality ranges, as a fraction of their union
    (0 where either curve has no finite point)."""
    a, t = _values(anchor), _values(test)
    return _fraction(a[:, 1], t[:, 1]) if len(a) and len(t) else 0.0


def rate_overlap(anchor: Points, test: Points) -> float:
    """The overlap BD-metric integrates over: of the log-rate ranges, as a fraction of their union."""
    a, t = _values(anchor), _values(test)
    a, t = a[a[:, 0] > 0], t[t[:, 0] > 0]
    return _fraction(np.log10(a[:, 0]), np.log10(t[:, 0])) if len(a) and len(t) else 0.0


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown BD interpolation {method!r}; choose one of {', '.join(METHODS)}")


def bd_rate(anchor: Points, test: Points, *, method: str = "pchip", lower_is_better: bool = False, min_overlap: float = DEFAULT_MIN_OVERLAP) -> float:
    """BD-rate in percent of ``test`` against ``anchor``; points are (rate, quality)."""
    import bjontegaard

    _check_method(method)
    ra, qa = _prepare(anchor, "anchor", lower_is_better, method)
    rt, qt = _prepare(test, "test", lower_is_better, method)
    _overlap(qa, qt, "quality", min_overlap, -1.0 if lower_is_better else 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap was checked above, with a stated reason
        return float(bjontegaard.bd_rate(ra, qa, rt, qt, method=method, require_matching_points=False, min_overlap=0))


def bd_metric(anchor: Points, test: Points, *, method: str = "pchip", lower_is_better: bool = False, min_overlap: float = DEFAULT_MIN_OVERLAP) -> float:
    """Average quality difference (test - anchor, metric units) at equal log-rate."""
    import bjontegaard

    _check_method(method)
    ra, qa = _prepare(anchor, "anchor", lower_is_better, method, monotonic=False)
    rt, qt = _prepare(test, "test", lower_is_better, method, monotonic=False)
    _overlap(np.log10(ra), np.log10(rt), "rate", min_overlap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = float(bjontegaard.bd_psnr(ra, qa, rt, qt, method=method, require_matching_points=False, min_overlap=0))
    return -d if lower_is_better else d


class NotDominated(BDError):
    pass


def dominance(anchor: Points, test: Points, *, lower_is_better: bool = False) -> float:
    """The least quality gain (test - anchor, metric units, signed as :func:`bd_metric`) that
    ``test`` offers at every anchor point while spending no more rate.

    For each anchor point (r, q): the best test quality among the test points at rate <= r,
    minus q; the least of these over the anchor points. This is where BD cannot go: two
    ladders whose rate ranges do not meet (a codec improved so much that its whole curve
    moved left). A codec can always be run at a lower point of its own ladder, so a test
    curve that dominates the anchor's is at least this much better at every anchor rate, a
    lower bound on the BD-metric the curves would give if they met, never an estimate of it.
    Raises :class:`NotDominated` when some anchor point has no test point at or below its
    rate, or some test point at or below it is no better: test does not dominate there.
    """
    sign = -1.0 if lower_is_better else 1.0
    a = _prepare(anchor, "anchor", lower_is_better, monotonic=False, least=1)
    t = _prepare(test, "test", lower_is_better, monotonic=False, least=1)
    gains = []
    for r, q in zip(*a):
        below = t[1][t[0] <= r]
        if not len(below):
            raise NotDominated(f"test has no point at or below the anchor's rate {r:.5g}")
        gains.append(below.max() - q)
    least = float(min(gains))
    if least <= 0:
        i = int(np.argmin(gains))
        raise NotDominated(
            f"at the anchor's rate {a[0][i]:.5g} no test point at or below it is better (best {sign * (a[1][i] + least):.5g} against {sign * a[1][i]:.5g})"
        )
    return sign * least


def convex_hull(points: Points, *, lower_is_better: bool = False) -> list[tuple[float, float]]:
    """The points on the upper-left RD convex hull in (log rate, quality).

    Drops points that are dominated (more rate, no better quality) or lie under the chord
    of their neighbours; what remains is monotonic and concave, as encoders' operational
    RD curves should be.
    """
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    arr = arr[np.argsort(arr[:, 0])]
    sign = -1.0 if lower_is_better else 1.0
    hull: list[tuple[float, float, int]] = []  # (log rate, signed quality, index)
    for i, (r, q) in enumerate(arr):
        p = (float(np.log10(r)), sign * float(q), i)
        if hull and p[1] <= hull[-1][1]:
            continue  # dominated
        while len(hull) >= 2:
            (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
            # drop the middle point if it lies under the chord from hull[-2] to p (points on a
            # straight line are kept: they are on the hull)
            cross = (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)
            if cross > 1e-12 * (abs(x2 - x1) + abs(p[0] - x1)) * (abs(y2 - y1) + abs(p[1] - y1) + 1e-300):
                hull.pop()
            else:
                break
        hull.append(p)
    return [(float(arr[i, 0]), float(arr[i, 1])) for _, _, i in hull]


# --- uncertainty across sequences ----------------------------------------------------------------


class TooFewSequences(BDError):
    pass


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-sequence values (BD-rates).

    Sequences are resampled with replacement, ``resamples`` times, from a generator seeded
    with ``seed``: the same inputs and seed give the same interval on every machine. It says
    how much the mean depends on which sequences a test set happens to hold, not how noisy
    each BD-rate is. Fewer than 2 values have no interval (:class:`TooFewSequences`).
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise TooFewSequences(f"{len(x)} sequence(s): a bootstrap interval needs at least 2")
    if not np.isfinite(x).all():
        raise BadPoints("a per-sequence value is not finite")
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level} is not between 0 and 1")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if np.ptp(x) == 0:  # every sequence agrees: the interval is the value (scipy warns instead)
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile", vectorized=True, **_rng_kw(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _rng_kw(seed: int) -> dict:
    import inspect

    from scipy import stats

    # scipy 1.15 renamed random_state to rng (and warns on the old name later)
    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}
