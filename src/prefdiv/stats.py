"""Seed-aware statistics over replicated experiments: numbers in, numbers out (numpy, pandas, scipy;
no experiment names, no DVC, no prose).

A configuration (loss, β, β_end, α, ε, scale) runs as replicates r = (seed, train_seed):
`seed` drives the whole pipeline (split, hence the test prompts; SFT policy; reward model;
pairs; training), `train_seed` only training and evaluation sampling. A run evaluates the test
prompts p of its seed: y[s, t, p]; replicates of one seed share their prompts, so two methods
are compared prompt by prompt within a seed.

- `estimate`: mean over replicates with a 95 % interval that carries seed variance: the
  t interval on the S seed means (S − 1 degrees of freedom), chosen by `coverage.simulate`
  (docs/statistics.md); one run: its prompts-only bootstrap interval.
- `paired_difference`: A − B per prompt within each seed, the same interval over seeds, and
  how many seeds agree in sign.
- `bootstrap_means`, `rank_probabilities`, `spearman_interval`: two-level bootstrap (seeds,
  then prompts within each drawn seed, paired across methods).
- `variance_components`: upstream seed, train seed within seed, residual.
- `part_test`, `holm`, `cell_verdict`: the tests and multiplicity rules a claim's parts are
  judged by (docs/statistics.md; `prefdiv.reference` holds the claims themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from prefdiv import diversity

Rep = tuple[int, int]  # (seed, train_seed)
LEVEL = 0.95
N_BOOT = 2000


def _nest(values: dict[Rep, object]) -> dict[int, dict[int, object]]:
    out: dict[int, dict[int, object]] = {}
    for (s, t), v in sorted(values.items()):
        out.setdefault(s, {})[t] = v
    return out


# --- intervals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean and its 95 % interval [low, high].

    `unit`: what the interval treats as independent replicates ("seeds", "train seeds" or
    "prompts" for a single run); `units`: the per-unit means (per seed, train seed, or the one
    run), whose SD is the between-seed SD and whose signs give the agreement count.
    """

    mean: float
    low: float
    high: float
    unit: str
    units: tuple[float, ...] = ()
    n_train: int = 1

    @property
    def n_seeds(self) -> int:
        return len(self.units) if self.unit == "seeds" else 1

    @property
    def sd(self) -> float:
        return float(np.std(self.units, ddof=1)) if len(self.units) > 1 else float("nan")

    @property
    def agree(self) -> int:
        """Units whose mean has the sign of the overall mean."""
        return int(sum(np.sign(u) == np.sign(self.mean) for u in self.units))

    def flipped(self) -> Estimate:
        """The estimate of −x (for a metric where lower is better)."""
        units = tuple(-u for u in self.units)
        return Estimate(-self.mean, -self.high, -self.low, self.unit, units, self.n_train)


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) = mean ± t_{(1+level)/2, n−1} · sd/√n over n ≥ 2 replicate means."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    half = float(st.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def _t_estimate(units: list[float], unit: str, n_train: int = 1) -> Estimate:
    return Estimate(*t_interval(units), unit, tuple(float(u) for u in units), n_train)


def estimate(means: dict[Rep, float], prompts_ci=(float("nan"), float("nan"))) -> Estimate:
    """Mean over replicates with its seed-aware 95 % interval.

    ≥ 2 seeds: a seed's train-seed runs are averaged (m_s), then m̄ ± t_{.975, S−1}·sd(m_s)/√S.
    1 seed with ≥ 2 train seeds: the same over its train-seed runs (conditional on that seed).
    1 run: `prompts_ci`, that run's prompts-only bootstrap interval (metrics/eval.json).
    """
    nested = _nest(means)
    n_train = max(len(t) for t in nested.values())
    if len(nested) >= 2:
        return _t_estimate([np.mean(list(t.values())) for t in nested.values()], "seeds", n_train)
    (runs,) = nested.values()
    if len(runs) >= 2:
        return _t_estimate(list(runs.values()), "train seeds", n_train)
    (value,) = runs.values()
    return Estimate(float(value), float(prompts_ci[0]), float(prompts_ci[1]), "prompts", (value,))


def seed_profiles(tables: dict[Rep, pd.Series]) -> dict[int, pd.Series]:
    """Per seed: per-prompt values (index prompt_id) averaged over its train-seed runs."""
    return {
        s: pd.concat(list(runs.values()), axis=1).mean(axis=1) for s, runs in _nest(tables).items()
    }


def paired_difference(
    a: dict[Rep, pd.Series], b: dict[Rep, pd.Series], *, n_boot: int = N_BOOT, seed: int = 0
) -> Estimate | None:
    """A − B, paired per prompt within each seed both ran; None if they share no seed.

    Per seed s: d_s = mean over shared prompts of (A − B), train-seed runs averaged first.
    ≥ 2 seeds: t interval on the d_s. One seed, ≥ 2 train seeds both ran: t interval on the
    per-train-seed differences. Else: prompts-only bootstrap of the per-prompt differences.
    """
    pa, pb = seed_profiles(a), seed_profiles(b)
    seeds = sorted(pa.keys() & pb.keys())
    if not seeds:
        return None
    if len(seeds) >= 2:  # pandas aligns on prompt_id; prompts not in both drop out as NaN
        return _t_estimate([(pa[s] - pb[s]).mean() for s in seeds], "seeds")
    (s,) = seeds
    trains = sorted({t for q, t in a if q == s} & {t for q, t in b if q == s})
    if len(trains) >= 2:
        units = [(a[s, t] - b[s, t]).mean() for t in trains]
        return _t_estimate(units, "train seeds", len(trains))
    d = (pa[s] - pb[s]).dropna().to_numpy()
    lo, hi = diversity.bootstrap_ci(d, n_resamples=n_boot, seed=seed)
    return Estimate(float(d.mean()), lo, hi, "prompts", (float(d.mean()),))


# --- two-level bootstrap: ranks and Spearman -----------------------------------------------------


def aligned_profiles(tables: dict[str, dict[Rep, pd.Series]]) -> tuple[list[int], list]:
    """Seeds every method ran and, per seed, an (M, P_s) array of the methods' per-prompt
    values (train seeds averaged) over the prompts where all M have a value."""
    profiles = {name: seed_profiles(t) for name, t in tables.items()}
    seeds = sorted(set.intersection(*(set(p) for p in profiles.values())))
    arrays = [
        pd.concat([p[s] for p in profiles.values()], axis=1).dropna().to_numpy().T for s in seeds
    ]
    return seeds, arrays


def bootstrap_means(arrays: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap of the mean of seed means: (n_boot, M) from per-seed (M, P_s) arrays.

    A draw picks S seeds with replacement, then for each pick P_s prompts with replacement, the
    same prompts for all M methods (paired); its value is the mean over picks of the prompt means.
    With one seed it is the prompts-only bootstrap.
    """
    n_seeds = len(arrays)
    picks = rng.integers(n_seeds, size=(n_boot, n_seeds))
    total = np.zeros((n_boot, arrays[0].shape[0]))
    for s, x in enumerate(arrays):
        owner = np.repeat(np.arange(n_boot), (picks == s).sum(axis=1))  # one row per pick of s
        n = x.shape[1]
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=len(owner)) / n
        np.add.at(total, owner, weights @ x.T)
    return total / n_seeds


def rank_probabilities(
    tables: dict[str, dict[Rep, pd.Series]], sign: int = 1, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, list[int]] | None:
    """P(row above column) and each method's rank (mean, 95 % interval; 1 = highest).

    "Above" means higher `sign`·value (sign −1 for self-BLEU: lower = more diverse). Ties count
    one half, so identical methods give 0.5. Only seeds every method ran are used (returned);
    None if there is none.
    """
    names = list(tables)
    seeds, arrays = aligned_profiles(tables)
    if not seeds:
        return None
    boot = sign * bootstrap_means(arrays, n_boot, np.random.default_rng(seed))
    a, b = boot[:, :, None], boot[:, None, :]
    p = (a > b).mean(axis=0) + 0.5 * (a == b).mean(axis=0)
    np.fill_diagonal(p, np.nan)
    ranks = st.rankdata(-boot, axis=1)
    summary = pd.DataFrame(
        {
            "mean rank": ranks.mean(axis=0),
            "low": np.percentile(ranks, 2.5, axis=0),
            "high": np.percentile(ranks, 97.5, axis=0),
        },
        index=names,
    )
    return pd.DataFrame(p, index=names, columns=names), summary, seeds


def _rowwise_spearman(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    rx, rr = st.rankdata(x, axis=-1), st.rankdata(ref)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    rr = rr - rr.mean()
    return (rx @ rr) / np.sqrt((rx**2).sum(axis=-1) * (rr**2).sum())


def spearman_interval(
    tables: dict[str, dict[Rep, pd.Series]],
    reference: dict[str, float],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float, float, list[int]] | None:
    """Spearman ρ of our method means with `reference` values, its 95 % two-level bootstrap
    percentile interval, and the seeds used (those every method ran). None with < 3 methods."""
    names = [n for n in tables if n in reference]
    if len(names) < 3:
        return None
    seeds, arrays = aligned_profiles({n: tables[n] for n in names})
    if not seeds:
        return None
    ref = np.array([reference[n] for n in names], dtype=np.float64)
    point = np.mean([x.mean(axis=1) for x in arrays], axis=0)
    boot = _rowwise_spearman(bootstrap_means(arrays, n_boot, np.random.default_rng(seed)), ref)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return float(_rowwise_spearman(point, ref)), float(lo), float(hi), seeds


# --- variance components -----------------------------------------------------------------------


def variance_components(tables: dict[Rep, pd.Series]) -> dict[str, float] | None:
    """Shares of a run mean's variance: upstream seed, train seed within seed, residual.

    Model (prompts nested in seed, crossed with train seed within it):
        y[s,t,p] = μ + a_s + b_{s,t} + c_{s,p} + e_{s,t,p},
    variances σa², σb², σc², σe². With b train seeds common to all S ≥ 2 seeds and n_s prompts
    with values in all of them, mean squares within seeds (sums over seeds):
        MS_E = ΣΣΣ (y − ȳ_st − ȳ_sp + ȳ_s)² / Σ (b−1)(n_s−1)     E = σe²
        MS_B = Σ n_s Σ_t (ȳ_st − ȳ_s)² / S(b−1)                 E = σe² + mean(n_s)·σb²
        MS_C = b Σ Σ_p (ȳ_sp − ȳ_s)² / Σ (n_s−1)                E = σe² + b·σc²
    and across seeds Var(ȳ_s) = σa² + σb²/b + (σc² + σe²/b)·mean(1/n_s). Negative estimates
    are set to 0. A run's mean varies by σa² + σb² + (σc² + σe²)/n: "residual" is the last term,
    the prompt-sampling part that a prompts-only interval already covers.
    None without ≥ 2 seeds sharing ≥ 2 train seeds.
    """
    nested = _nest(tables)
    if len(nested) < 2:
        return None
    trains = sorted(set.intersection(*(set(t) for t in nested.values())))
    if len(trains) < 2:
        return None
    b = len(trains)
    ss = dict(e=0.0, b=0.0, c=0.0)
    df = dict(e=0, b=0, c=0)
    seed_means, ns = [], []
    for runs in nested.values():
        y = pd.concat([runs[t] for t in trains], axis=1).dropna().to_numpy()  # (n_s, b)
        n, grand = len(y), y.mean()
        cell, prompt = y.mean(axis=0), y.mean(axis=1)
        ss["e"] += ((y - cell[None, :] - prompt[:, None] + grand) ** 2).sum()
        ss["b"] += n * ((cell - grand) ** 2).sum()
        ss["c"] += b * ((prompt - grand) ** 2).sum()
        df["e"] += (b - 1) * (n - 1)
        df["b"] += b - 1
        df["c"] += n - 1
        seed_means.append(grand)
        ns.append(n)
    ms = {k: ss[k] / df[k] for k in ss}
    inv_n = float(np.mean(1.0 / np.array(ns)))
    var_e = ms["e"]
    var_b = max((ms["b"] - ms["e"]) / np.mean(ns), 0.0)
    var_c = max((ms["c"] - ms["e"]) / b, 0.0)
    var_a = max(np.var(seed_means, ddof=1) - var_b / b - (var_c + var_e / b) * inv_n, 0.0)
    parts = {"seed": var_a, "train seed": var_b, "residual": (var_c + var_e) * inv_n}
    total = sum(parts.values())
    return {k: v / total if total > 0 else float("nan") for k, v in parts.items()}


# --- verdicts ----------------------------------------------------------------------------------

VERDICTS = ("holds", "reversed", "inconclusive", "too few seeds", "missing")


def _se(d: Estimate) -> float:
    return d.sd / np.sqrt(len(d.units))


def one_sided_p(d: Estimate, bound: float, side: str) -> float:
    """p of the t test (df = S − 1 over the per-seed units) of H0: δ ≤ bound (`side` ">": the
    evidence is for δ > bound) or H0: δ ≥ bound (`side` "<")."""
    se = _se(d)
    if not se > 0:  # every seed the same: the data decide exactly, or not at all
        beyond = d.mean > bound if side == ">" else d.mean < bound
        return 0.0 if beyond else 1.0
    t = (d.mean - bound) / se
    df = len(d.units) - 1
    return float(st.t.sf(t, df) if side == ">" else st.t.cdf(t, df))


def part_test(d: Estimate, rel: str, margin: float = float("nan")) -> tuple[float, str]:
    """(p, direction) of one part of a claim, as a two-sided test: p = 2·min of its two
    one-sided p-values (capped at 1), direction the side with the smaller one.

    ">" (A − B > 0): "holds" is δ > 0, "reversed" δ < 0, so p is the ordinary two-sided t test.
    "≈" (|A − B| < margin): "holds" is equivalence, shown by TOST (Schuirmann 1987: both
    H0: δ ≤ −margin and H0: δ ≥ +margin rejected, p = max of the two); "reversed" is δ beyond
    the margin on the side of the estimate. The factor 2 treats the two directions as a
    two-sided test, so equivalence is shown when the 95 % interval (not the 90 % of a lone
    TOST) lies inside ±margin.
    """
    if rel == ">":
        up, down = one_sided_p(d, 0.0, ">"), one_sided_p(d, 0.0, "<")
        p, direction = (up, "holds") if up <= down else (down, "reversed")
    else:
        tost = max(one_sided_p(d, -margin, ">"), one_sided_p(d, margin, "<"))
        far = one_sided_p(d, margin, ">") if d.mean >= 0 else one_sided_p(d, -margin, "<")
        p, direction = (tost, "holds") if tost <= far else (far, "reversed")
    return min(1.0, 2.0 * p), direction


def holm(p) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: family-wise error ≤ α under any dependence
    (the parts of a claim share methods and seeds, so no independence is assumed)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def cell_verdict(parts: list[tuple[str, float]]) -> tuple[str, float]:
    """(verdict, p) of a claim on one metric from its parts' (direction, Holm-adjusted p).

    holds when every part holds: p = the largest part p (an intersection–union test: each part
    must be shown, and then no further correction is needed for their conjunction); reversed
    when some part is reversed: p = the smallest p among those; inconclusive otherwise (p = 1).
    The verdict is final only once p survives the correction across cells (`holm`)."""
    if not parts:
        return "missing", 1.0
    reversed_p = [p for direction, p in parts if direction == "reversed"]
    if reversed_p:
        return "reversed", min(reversed_p)
    return "holds", max(p for _, p in parts)
