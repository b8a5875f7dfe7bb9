"""Seeds of one replicate: the one place `seed` and `train_seed` are combined."""

from __future__ import annotations

import numpy as np


def replicate_seed(seed: int, train_seed: int) -> int:
    """The seed of training order, dropout and evaluation sampling for one replicate.

    `train_seed` = 0 gives `seed` itself, so every output of a run without replicates stays what
    it was before `train_seed` existed. Otherwise the two are mixed by numpy's `SeedSequence`
    (a hash, so nearby pairs such as (0, 1) and (1, 0) give unrelated streams) into [0, 2³²),
    the range every seeded library accepts (`numpy.random.seed` allows no more).
    """
    if train_seed == 0:
        return seed
    return int(np.random.SeedSequence([seed, train_seed]).generate_state(1)[0])
