"""The simulation behind the choice of interval (docs/statistics.md): how often each candidate
95 % interval of a mean over seeds covers the truth, for few seeds and seed effects of several
sizes. `stats.estimate` uses the t interval on the seed means because of this table.
"""

from __future__ import annotations

import numpy as np

from prefdiv import stats


def _interval(method: str, y: np.ndarray, rng: np.random.Generator, n_boot: int):
    """95 % interval of the mean from (S seeds × P prompts) data `y`, by `method`."""
    if method == "t":
        return stats.t_interval(y.mean(axis=1))[1:]
    if method == "two-level":
        boot = stats.bootstrap_means([row[None, :] for row in y], n_boot, rng)[:, 0]
    elif method == "seeds":  # percentile cluster bootstrap: seeds resampled, prompts kept
        m = y.mean(axis=1)
        boot = m[rng.integers(len(m), size=(n_boot, len(m)))].mean(axis=1)
    elif method == "prompts":  # seeds ignored: all S·P values as independent prompts
        flat = y.ravel()
        boot = flat[rng.integers(flat.size, size=(n_boot, flat.size))].mean(axis=1)
    else:
        raise ValueError(f"unknown interval method {method!r}")
    return tuple(np.percentile(boot, [2.5, 97.5]))


def simulate(
    method: str,
    n_seeds: int,
    *,
    sd_seed: float,
    sd_prompt: float = 1.0,
    n_prompts: int = 100,
    effects: str = "normal",
    reps: int = 400,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(coverage, mean width) of `method`'s 95 % interval for the true mean 0 over `reps`
    simulated studies y[s, p] = a_s + e[s, p], e ~ N(0, sd_prompt²), a_s ~ N(0, sd_seed²)
    (`effects="t3"`: Student t with 3 df scaled to SD sd_seed, heavy-tailed seed effects)."""
    rng = np.random.default_rng(seed)
    hits, widths = 0, []
    for _ in range(reps):
        if effects == "t3":
            a = sd_seed * rng.standard_t(3, size=n_seeds) / np.sqrt(3.0)
        else:
            a = sd_seed * rng.standard_normal(n_seeds)
        y = a[:, None] + sd_prompt * rng.standard_normal((n_seeds, n_prompts))
        lo, hi = _interval(method, y, rng, n_boot)
        hits += bool(lo <= 0.0 <= hi)
        widths.append(hi - lo)
    return hits / reps, float(np.mean(widths))


def table(*, reps: int = 1000, n_prompts: int = 100, seed: int = 0) -> str:
    """Markdown: coverage (mean width) of each interval method, S = 3, 5, 10 seeds, seed SD
    0, 1 and 3 times the prompt standard error of a seed mean (sd_prompt = 1)."""
    methods = ("t", "two-level", "seeds", "prompts")
    se = 1.0 / np.sqrt(n_prompts)
    lines = [
        "| seed effects | seed SD / prompt SE | S | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for effects, ratio in (("normal", 0), ("normal", 1), ("normal", 3), ("t3", 3)):
        for n_seeds in (3, 5, 10):
            cells = []
            for m in methods:
                cov, width = simulate(
                    m, n_seeds, sd_seed=ratio * se, n_prompts=n_prompts, effects=effects,
                    reps=reps, seed=seed,
                )  # fmt: skip
                cells.append(f"{cov:.3f} ({width:.3f})")
            lines.append(f"| {effects} | {ratio} | {n_seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
