"""Seed-aware statistics: intervals, paired differences, ranks, variance components, verdicts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from prefdiv import coverage, diversity, stats
from prefdiv.replicates import column


def _runs(offsets: dict, *, n=40, col="entropy", noise=0.1, rng=None, ids=None):
    """Per-prompt tables {(seed, train_seed): DataFrame}: value = offset + shared prompt effect
    of the seed + noise. `offsets`: {(seed, train_seed): offset}."""
    rng = rng or np.random.default_rng(0)
    out = {}
    for (seed, t), off in offsets.items():
        prompt_rng = np.random.default_rng(100 + seed)  # same prompts and effects per seed
        effect = prompt_rng.normal(0, 0.3, n)
        index = pd.Index(ids or [f"s{seed}-p{i}" for i in range(n)], name="prompt_id")
        out[seed, t] = pd.DataFrame({col: off + effect + rng.normal(0, noise, n)}, index=index)
    return out


def _by_seed(values, t=0):
    return {(s, t): v for s, v in enumerate(values)}


# --- the interval ------------------------------------------------------------------------------


def test_t_interval_covers_at_the_nominal_rate_where_prompts_only_does_not():
    # 400 simulated studies: the coverage estimate has SD sqrt(.95·.05/400) = 0.011, so a
    # correct 95 % interval lands in [0.92, 0.98] (±2.7 SD); the seed is fixed, the band is
    # what another seed could give. Seed SD = 2× the prompt SE of a seed mean.
    for n_seeds in (3, 10):
        cov, _ = coverage.simulate("t", n_seeds, sd_seed=0.2, reps=400, seed=1)
        assert 0.92 <= cov <= 0.98, (n_seeds, cov)
    cov, _ = coverage.simulate("prompts", 3, sd_seed=0.2, reps=400, n_boot=300, seed=1)
    assert cov < 0.8  # ignoring the seeds under-covers badly: why the t interval exists


def test_seed_interval_is_wider_than_prompts_only_when_seeds_differ():
    rng = np.random.default_rng(0)
    y = np.array([0.0, 0.5, 1.0])[:, None] + rng.normal(0, 0.1, (3, 100))
    e = stats.estimate(_by_seed(y.mean(axis=1)))
    lo, hi = diversity.bootstrap_ci(y.ravel(), n_resamples=1000, seed=0)
    assert e.unit == "seeds" and e.n_seeds == 3
    assert e.mean == pytest.approx(y.mean())
    assert e.high - e.low > 5 * (hi - lo)
    assert e.sd == pytest.approx(np.std(y.mean(axis=1), ddof=1))
    half = st.t.ppf(0.975, 2) * e.sd / np.sqrt(3)
    assert (e.low, e.high) == pytest.approx((e.mean - half, e.mean + half))


def test_one_run_keeps_its_prompts_interval_and_train_seeds_average_within_a_seed():
    one = stats.estimate({(0, 0): 2.0}, (1.9, 2.1))
    assert (one.mean, one.low, one.high, one.unit, one.n_seeds) == (2.0, 1.9, 2.1, "prompts", 1)
    nested = stats.estimate({(0, 0): 1.0, (0, 1): 3.0, (1, 0): 4.0, (1, 1): 4.0})
    assert nested.units == (2.0, 4.0) and nested.n_train == 2 and nested.mean == 3.0
    trains = stats.estimate({(0, 0): 1.0, (0, 1): 3.0})
    assert trains.unit == "train seeds" and trains.units == (1.0, 3.0)


# --- paired differences ------------------------------------------------------------------------


def test_paired_difference_and_sign_agreement_by_hand():
    ids = [f"p{i}" for i in range(4)]
    base = pd.Series([1.0, 2.0, 3.0, 4.0], index=ids)
    b = {(s, 0): base + 10 * s for s in range(3)}
    a = {(s, 0): base + 10 * s + d for s, d in enumerate([1.0, 2.0, -0.5])}
    a[0, 0] = pd.concat([a[0, 0], pd.Series([99.0], index=["only-in-a"])])  # not paired: dropped
    a[0, 1] = a[0, 0] + 2.0  # a second train seed of seed 0: averaged first → seed 0 gives +2
    d = stats.paired_difference(a, b)
    units = [2.0, 2.0, -0.5]
    assert d.units == pytest.approx(units)
    assert d.mean == pytest.approx(np.mean(units))
    half = st.t.ppf(0.975, 2) * np.std(units, ddof=1) / np.sqrt(3)
    assert (d.low, d.high) == pytest.approx((d.mean - half, d.mean + half))
    assert d.agree == 2 and d.flipped().agree == 2 and d.flipped().mean == pytest.approx(-d.mean)
    assert stats.paired_difference(a, {(7, 0): base}) is None  # no shared seed


def test_paired_difference_with_one_seed_bootstraps_the_prompt_differences():
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(50)]
    b = pd.Series(rng.normal(0, 1, 50), index=ids)
    a = b + 0.5 + rng.normal(0, 0.1, 50)  # paired: the prompt effects cancel
    d = stats.paired_difference({(0, 0): a}, {(0, 0): b})
    assert d.unit == "prompts" and d.low < 0.5 < d.high and d.high - d.low < 0.1


# --- ranks, Spearman, variance components ------------------------------------------------------


def test_rank_probability_is_one_for_a_clear_gap_and_one_half_for_identical_methods():
    low = _runs(_by_seed([0.0, 0.1, -0.1]))
    high = {r: df + 1.0 for r, df in low.items()}
    tables = {n: column(t, "entropy") for n, t in [("low", low), ("high", high)]}
    tables["same"] = column(low, "entropy")
    p, ranks, seeds = stats.rank_probabilities(tables, n_boot=500)
    assert seeds == [0, 1, 2]
    assert p.loc["high", "low"] > 0.99 and p.loc["low", "high"] < 0.01
    assert p.loc["same", "low"] == pytest.approx(0.5)
    assert ranks.loc["high", "mean rank"] == 1.0
    flipped, _, _ = stats.rank_probabilities(tables, sign=-1, n_boot=500)
    assert flipped.loc["low", "high"] > 0.99


def test_spearman_interval_against_the_reference_order():
    tables = {
        n: column(_runs(_by_seed([v, v + 0.01, v - 0.01]), noise=0.01), "entropy")
        for n, v in [("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0)]
    }
    rho, lo, hi, seeds = stats.spearman_interval(tables, {"a": 1, "b": 2, "c": 3, "d": 4})
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0) and seeds == [0, 1, 2]
    rho, *_ = stats.spearman_interval(tables, {"a": 4, "b": 3, "c": 2, "d": 1})
    assert rho == pytest.approx(-1.0)
    assert stats.spearman_interval(tables, {"a": 1, "b": 2}) is None  # < 3 methods


def test_variance_components_recover_known_shares():
    rng = np.random.default_rng(0)
    n_seeds, b, n = 200, 3, 20
    sd = dict(a=0.3, b=0.2, c=0.5, e=0.4)
    tables = {}
    for s in range(n_seeds):
        a, c = rng.normal(0, sd["a"]), rng.normal(0, sd["c"], n)
        ids = [f"s{s}-p{i}" for i in range(n)]
        for t in range(b):
            y = a + rng.normal(0, sd["b"]) + c + rng.normal(0, sd["e"], n)
            tables[s, t] = pd.Series(y, index=ids)
    var = {"seed": 0.09, "train seed": 0.04, "residual": (0.25 + 0.16) / n}
    total = sum(var.values())
    shares = stats.variance_components(tables)
    for k, v in var.items():
        assert shares[k] == pytest.approx(v / total, abs=0.06), (k, shares)
    assert stats.variance_components({(0, 0): tables[0, 0], (1, 0): tables[1, 0]}) is None


# --- claims ------------------------------------------------------------------------------------


def test_holm_adjusts_step_down_and_keeps_the_order():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then running max
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.4, 0.2]) == pytest.approx([0.4, 0.4]) and len(stats.holm([])) == 0
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def _seeds(values):
    v = np.asarray(values, dtype=float)
    lo, hi = stats.t_interval(v)[1:]
    return stats.Estimate(float(v.mean()), lo, hi, "seeds", tuple(v))


def test_a_part_is_a_two_sided_t_test_and_close_is_tost():
    d = _seeds([0.3, 0.5, 0.1, 0.4, 0.2])
    p, direction = stats.part_test(d, ">")
    assert direction == "holds" and p == pytest.approx(st.ttest_1samp(d.units, 0.0).pvalue)
    assert stats.part_test(d.flipped(), ">") == (pytest.approx(p), "reversed")
    # equivalence: both one-sided tests against ±margin, doubled (a 95 % interval inside)
    near = _seeds([0.01, -0.02, 0.0, 0.02, -0.01])
    p, direction = stats.part_test(near, "≈", margin=0.1)
    se = np.std(near.units, ddof=1) / np.sqrt(5)
    tost = max(st.t.sf((near.mean + 0.1) / se, 4), st.t.cdf((near.mean - 0.1) / se, 4))
    assert direction == "holds" and p == pytest.approx(2 * tost) and p < 0.001
    assert stats.part_test(d, "≈", margin=0.05)[1] == "reversed"  # 0.3 ± 0.07: beyond 0.05
    assert stats.part_test(d, "≈", margin=1.0)[1] == "holds"
    assert stats.part_test(_seeds([1.0] * 5), ">") == (0.0, "holds")  # no spread: exact


def test_a_cell_holds_when_every_part_holds_and_is_reversed_by_one_part():
    assert stats.cell_verdict([("holds", 0.01), ("holds", 0.03)]) == ("holds", 0.03)
    assert stats.cell_verdict([("holds", 0.01), ("reversed", 0.2), ("reversed", 0.04)]) == (
        "reversed",
        0.04,
    )
    assert stats.cell_verdict([]) == ("missing", 1.0)
