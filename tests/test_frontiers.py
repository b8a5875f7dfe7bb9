"""Matched-KL comparisons on synthetic frontiers with a known answer."""

import numpy as np
import pytest

from prefdiv import frontiers


def _family(kls, offset, seeds=range(5), slope=-0.1, noise=0.005):
    """seed → (KL, diversity): diversity = offset + slope·KL (+ a seed effect and noise)."""
    rng = np.random.default_rng(len(kls) + int(100 * offset))
    out = {}
    for s in seeds:
        x = np.asarray(kls, dtype=float) * (1 + 0.05 * s)  # each seed moves a little further
        out[s] = (x, offset + 0.01 * s + slope * x + rng.normal(0, noise, len(x)))
    return out


def test_a_loss_better_at_equal_kl_but_worse_at_its_own_beta():
    """A moves far from SFT (KL 1 … 12), B little (0.5 … 3); at equal KL A is 0.1 more diverse,
    yet at the same β index B looks 0.285 more diverse, because it moved less: at the third β,
    −0.1 + 0.1 · (5 − 1.5) · 1.1 (the mean seed stretch of the KLs)."""
    a = _family([1, 3, 5, 8, 12], offset=1.0)
    b = _family([0.5, 1, 1.5, 2, 3], offset=0.9)
    own_beta = np.mean([b[s][1][2] - a[s][1][2] for s in a])  # the third β of each
    assert own_beta == pytest.approx(0.285, abs=0.02)
    ca, cb = frontiers.curves(a), frontiers.curves(b)
    assert all(not c.increasing for c in ca.values())  # diversity falls with KL
    lo, hi = frontiers.overlap(ca, cb)
    assert (lo, hi) == pytest.approx((1.2, 3.0))  # seed 4: A starts at 1.2; seed 0: B ends at 3
    found = frontiers.matched(ca, cb, frontiers.levels(ca, cb))
    assert len(found) == 3
    for m in found:
        assert m.estimate.mean == pytest.approx(0.1, abs=0.01) and m.estimate.low > 0
        assert m.estimate.n_seeds == 5 and m.outside == ()


def test_no_extrapolation_beyond_a_curves_points():
    a = frontiers.curves(_family([1, 3, 5], offset=1.0))
    b = frontiers.curves(_family([0.5, 1, 2], offset=0.9))
    assert np.isnan(a[0].at(0.5)) and np.isnan(a[0].at(5.1)) and np.isfinite(a[0].at(2.0))
    (beyond,) = frontiers.matched(a, b, [4.0])  # inside A's range, past every seed of B's
    assert beyond.estimate is None and beyond.outside == (0, 1, 2, 3, 4)
    (edge,) = frontiers.matched(a, b, [2.2])  # B reaches 2.2 from seed 1 on (2 × 1.05 = 2.1)
    assert edge.outside == (0, 1) and edge.estimate.n_seeds == 3
    far = frontiers.curves(_family([10, 20], offset=0.5))
    assert frontiers.overlap(b, far) is None and frontiers.levels(b, far) == []


def test_the_curve_is_monotone_and_interpolates_between_points():
    c = frontiers.monotone([0, 1, 2, 3], [1.0, 0.6, 0.7, 0.2])  # one violation, pooled
    assert not c.increasing and c.y.tolist() == pytest.approx([1.0, 0.65, 0.65, 0.2])
    assert c.at(2.5) == pytest.approx(0.425)
    assert frontiers.monotone([0, 1], [0.0, 1.0]).increasing
    with pytest.raises(ValueError, match="two points"):
        frontiers.monotone([1.0], [1.0])


def test_pareto_keeps_the_non_dominated_points():
    kl = [0.0, 1.0, 2.0, 3.0, 2.5]
    reward = [0.0, 1.0, 0.8, 2.0, 2.0]  # (2, 0.8) and (3, 2) are dominated
    assert frontiers.pareto(kl, reward).tolist() == [0, 1, 4]
    div = [5.0, 4.0, 4.5, 3.0, 3.5]  # reward–diversity: both higher is better
    keep = frontiers.pareto(div, reward, minimise_x=False)
    assert sorted(keep.tolist()) == [0, 1, 2, 4]


def test_the_band_is_a_t_interval_over_the_seeds_reaching_each_kl():
    c = frontiers.curves(_family([1, 2, 4], offset=1.0, seeds=range(3), noise=0.0))
    mean, low, high = frontiers.band(c, [1.5, 4.15, 9.0])
    per_seed = [c[s].at(1.5) for s in range(3)]
    assert mean[0] == pytest.approx(np.mean(per_seed)) and low[0] < mean[0] < high[0]
    # 4.15 is inside seed 1's and seed 2's ranges (4.2, 4.4) only; 9 in none
    assert np.isfinite(mean[1]) and np.isnan(mean[2])
    one = frontiers.band({0: c[0]}, [1.5])  # one seed: its curve, no band
    assert one[0][0] == pytest.approx(c[0].at(1.5)) and np.isnan(one[1][0])
