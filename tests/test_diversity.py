import math

import numpy as np
import pytest

from prefdiv import diversity


def test_unigram_entropy_hand_computed():
    # pooled ids: 1,1,2,3 → p = (1/2, 1/4, 1/4)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert diversity.unigram_entropy([[1, 1], [2, 3]]) == pytest.approx(expected)
    assert diversity.unigram_entropy([[7, 7, 7]]) == 0.0
    assert diversity.unigram_entropy([[1, 2, 3, 4]]) == pytest.approx(math.log(4))
    assert math.isnan(diversity.unigram_entropy([]))


def test_bootstrap_ci_covers_mean_and_is_seeded():
    x = np.random.default_rng(1).normal(2.0, 1.0, size=200)
    lo, hi = diversity.bootstrap_ci(x, n_resamples=500, seed=0)
    assert lo < x.mean() < hi
    assert 0.1 < hi - lo < 0.5  # ≈ 2·1.96/√200 = 0.28
    assert diversity.bootstrap_ci(x, n_resamples=500, seed=0) == (lo, hi)
