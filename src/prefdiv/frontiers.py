"""β frontiers: losses compared at matched KL and at matched reward, not at one β (issue 19).

At one β two losses end at different distances from the SFT policy, and diversity falls with that
distance for every loss, so "A is more diverse than B at β = 0.1" mostly says "A moved less". The
DPO paper compares methods on reward–KL frontiers instead (arXiv 2305.18290, §6.1); so does this
module, per seed:

1. a loss's runs at several β (one seed) are points (x, y), x = KL (or standardised reward), y a
   metric; :func:`monotone` fits the isotonic curve through them (pool-adjacent-violators,
   `scipy.optimize.isotonic_regression`), in the direction the points themselves go (Spearman),
   and interpolates it linearly between the fitted points — never beyond the smallest and
   largest x the loss reached in that seed (:meth:`Curve.at` is NaN there: no extrapolation);
2. :func:`matched` takes the difference of two losses' curves at common x levels, seed by seed,
   and gives its t interval over the seeds in which both curves reach that level (the same
   interval as every paired difference, `stats.estimate`); a level outside a seed's range is
   counted, not guessed;
3. :func:`pareto` keeps a loss's non-dominated points (the reward–KL and reward–diversity fronts).

Pure numbers in, numbers out (numpy, scipy; no names, no DVC): `report` and `figures` name and
draw them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as st
from scipy.optimize import isotonic_regression

from prefdiv import stats

Points = dict[int, tuple[np.ndarray, np.ndarray]]  # seed → (x, y) of one loss, one point per β


@dataclass(frozen=True)
class Curve:
    """A monotone curve y(x) through one loss's points of one seed. `x`: the points' x, sorted;
    `y`: the isotonic fit at them; `increasing`: its direction."""

    x: np.ndarray
    y: np.ndarray
    increasing: bool

    @property
    def span(self) -> tuple[float, float]:
        return float(self.x[0]), float(self.x[-1])

    def at(self, level: float) -> float:
        """y at `level` by linear interpolation of the fit; NaN outside the points' x range."""
        lo, hi = self.span
        if not lo <= level <= hi:
            return float("nan")
        return float(np.interp(level, self.x, self.y))


def monotone(x, y, increasing: bool | None = None) -> Curve:
    """The isotonic (least-squares monotone) fit of y on x; direction from the sign of Spearman's
    ρ of the points when not given (ties: increasing). Equal x are averaged first."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ValueError("a curve needs at least two points")
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    if increasing is None:
        rho = st.spearmanr(ux, uy).statistic if len(ux) > 2 else np.sign(uy[-1] - uy[0])
        increasing = not rho < 0
    fit = isotonic_regression(uy, increasing=increasing).x
    return Curve(ux, fit, increasing)


def curves(points: Points, increasing: bool | None = None) -> dict[int, Curve]:
    """:func:`monotone` per seed (seeds with fewer than two distinct x are left out)."""
    out = {}
    for seed, (x, y) in sorted(points.items()):
        if len(np.unique(np.asarray(x)[np.isfinite(x)])) >= 2:
            out[seed] = monotone(x, y, increasing)
    return out


def overlap(a: dict[int, Curve], b: dict[int, Curve]) -> tuple[float, float] | None:
    """The x range inside both losses' curves in every seed both have; None if there is none."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return None
    lo = max(max(a[s].span[0], b[s].span[0]) for s in seeds)
    hi = min(min(a[s].span[1], b[s].span[1]) for s in seeds)
    return (lo, hi) if lo < hi else None


def levels(a: dict[int, Curve], b: dict[int, Curve], n: int = 3) -> list[float]:
    """`n` x levels evenly inside :func:`overlap` (its quartiles for n = 3), [] without one."""
    found = overlap(a, b)
    if found is None:
        return []
    lo, hi = found
    return [float(v) for v in lo + (hi - lo) * np.arange(1, n + 1) / (n + 1)]


@dataclass(frozen=True)
class Matched:
    """A − B at x = `level`: the t interval over the seeds whose curves both reach it (None when
    fewer than two do, or none), and the seeds where one curve stops short of it."""

    level: float
    estimate: stats.Estimate | None
    outside: tuple[int, ...] = ()


def matched(a: dict[int, Curve], b: dict[int, Curve], at: list[float]) -> list[Matched]:
    """Curve A − curve B at each level of `at`, seed by seed, with the seed-aware interval."""
    seeds = sorted(a.keys() & b.keys())
    out = []
    for level in at:
        diffs = {s: a[s].at(level) - b[s].at(level) for s in seeds}
        inside = {(s, 0): d for s, d in diffs.items() if np.isfinite(d)}
        outside = tuple(s for s, d in diffs.items() if not np.isfinite(d))
        est = stats.estimate(inside) if len(inside) >= 2 else None
        out.append(Matched(level, est, outside))
    return out


def band(curves: dict[int, Curve], xs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over seeds of the curves at each x of `xs`: the t interval over the
    seeds whose curve reaches x (a figure's line and seed band); with one seed there, its curve
    and no band; NaN where none reaches."""
    mean, low, high = (np.full(len(xs), np.nan) for _ in range(3))
    for i, x in enumerate(xs):
        ys = [c.at(x) for c in curves.values()]
        ys = [y for y in ys if np.isfinite(y)]
        if len(ys) >= 2:
            mean[i], low[i], high[i] = stats.t_interval(ys)
        elif ys:
            mean[i] = ys[0]
    return mean, low, high


def pareto(x, y, *, minimise_x: bool = True, maximise_y: bool = True) -> np.ndarray:
    """Indices of the non-dominated points, by x: none other is at least as good in both
    coordinates and better in one (reward–KL: low KL, high reward)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sx, sy = (x if minimise_x else -x), (-y if maximise_y else y)  # both "lower is better"
    keep = []
    for i in range(len(x)):
        dominated = (sx <= sx[i]) & (sy <= sy[i]) & ((sx < sx[i]) | (sy < sy[i]))
        if not dominated.any():
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: x[i]), dtype=int)
