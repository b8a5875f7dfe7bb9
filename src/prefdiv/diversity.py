"""Diversity of a policy's samples, per prompt, as the reference study measures it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import stats


def unigram_entropy(responses: Sequence[Sequence[int]]) -> float:
    """Shannon entropy (nats) of the unigram distribution of token ids pooled over responses.

    The reference study's diversity metric, computed per prompt over that prompt's kept
    responses (then averaged over prompts by the caller). It grows with the number of tokens
    pooled, so compare it at equal sample counts and lengths.
    """
    counts = np.fromiter(Counter(t for r in responses for t in r).values(), dtype=np.float64)
    if counts.size == 0:
        return float("nan")
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def bootstrap_ci(values: Sequence[float], *, n_resamples: int, seed: int) -> tuple[float, float]:
    """95 % percentile-bootstrap confidence interval of the mean over prompts."""
    values = np.asarray(values, dtype=np.float64)
    res = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
