"""Replicates grouped by configuration and pooled: the records every table and figure is built of.

- :func:`group`: the usable experiments by configuration (`names.config_id`), each a
  :class:`Replicates` (replicate → experiment name), labelled by the configuration's grid name.
- :func:`pool`: per configuration a :class:`Pooled` record: every metric as the mean over its
  replicates with the seed-aware 95 % interval (`stats.estimate`).
- :func:`prompt_tables`: per configuration its replicates' per-prompt tables, for the paired
  statistics; :func:`column` picks one metric of them.
- :func:`missing_notes`: a line per configuration lacking replicates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prefdiv import names, stats
from prefdiv.experiments import EVAL, PAIRS, Experiment
from prefdiv.grid import Levels
from prefdiv.names import Replicate


@dataclass
class Replicates:
    """One configuration's usable experiments: `names` maps replicate → experiment name; `label`
    is the configuration's grid name (with ` (<scale>)` when one grid name ran at two scales)."""

    label: str
    params: dict
    names: dict[Replicate, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for s, _ in self.names})

    @property
    def train_seeds(self) -> list[int]:
        return sorted({t for _, t in self.names})

    @property
    def n_train(self) -> int:
        """Most train-seed runs of any one seed."""
        return max(Counter(s for s, _ in self.names).values())

    def counted(self) -> str:
        """How tables write the replicates: `1 seed`, `3 seeds`, `3 seeds × 2 train`."""
        if len(self.names) == 1:
            return "1 seed"
        n = len(self.seeds)
        return f"{n} seed{'s' * (n > 1)}" + (f" × {self.n_train} train" if self.n_train > 1 else "")

    def level(self, levels: Levels) -> int | None:
        """Its level in the grid: that of its first experiment (by name) whose configuration
        name the grid places in a level; None if there is none."""
        found = (levels.of(name) for name in sorted(self.names.values()))
        return next((lvl for lvl in found if lvl is not None), None)


def level_order(level: int | None) -> tuple:
    """Sort key of a level: ascending, no level last."""
    return (level is None, level or 0)


def group(exps: dict[str, Experiment]) -> tuple[dict[tuple, Replicates], list[str]]:
    """Usable experiments by configuration (`names.config_id`), labelled by grid name; notes on
    dropped duplicates (two experiments of one configuration and replicate)."""
    configs: dict[tuple, Replicates] = {}
    notes = []
    for name in sorted(exps):
        p = exps[name].params
        c = configs.setdefault(names.config_id(p), Replicates(names.base_name(name), p))
        rep = names.replicate(p, name)
        if rep in c.names:
            notes.append(f"{name}: same configuration and seeds as {c.names[rep]}; ignored")
        else:
            c.names[rep] = name
    labels = Counter(c.label for c in configs.values())
    for key, c in configs.items():  # one grid name at two scales
        if labels[c.label] > 1:
            c.label = f"{c.label} ({key[0]})"
    return configs, notes


def _tag(rep: Replicate, with_train: bool) -> str:
    return f"s{rep[0]}-t{rep[1]}" if with_train else f"s{rep[0]}"


def missing_notes(configs: dict[tuple, Replicates], failed: dict[str, Experiment]) -> list[str]:
    """One line per configuration lacking replicates, e.g. `l2-fkl: seeds 0, 2 of 0, 1, 2 (s1
    failed)`. Expected: every seed any experiment used × the configuration's own train seeds."""
    lost = {(names.base_name(n), names.replicate(e.params, n)) for n, e in failed.items()}
    seeds = sorted({s for c in configs.values() for s in c.seeds} | {r[0] for _, r in lost})
    lines = []
    for c in configs.values():
        base = names.base_name(next(iter(c.names.values())))
        trains = c.train_seeds
        expected = [(s, t) for s in seeds for t in trains]
        absent = [r for r in expected if r not in c.names]
        if not absent:
            continue
        with_train = trains != [0]
        tags = {r: _tag(r, with_train) for r in expected}
        why = ", ".join(f"{tags[r]} {'failed' if (base, r) in lost else 'missing'}" for r in absent)
        if with_train:
            have = ", ".join(tags[r] for r in sorted(c.names))
            lines.append(f"{c.label}: replicates {have} of {', '.join(tags.values())} ({why})")
        else:
            have = ", ".join(map(str, c.seeds))
            lines.append(f"{c.label}: seeds {have} of {', '.join(map(str, seeds))} ({why})")
    bases = {names.base_name(n) for c in configs.values() for n in c.names.values()}
    for base in sorted({b for b, _ in lost} - bases):
        tags = ", ".join(sorted(_tag(r, r[1] != 0) for b, r in lost if b == base))
        lines.append(f"{base}: no replicate succeeded ({tags} failed)")
    return lines


@dataclass(frozen=True)
class Pooled:
    """A configuration's pooled results. `metrics`: every numeric metric its replicates share, as
    the mean over them, with its seed-aware 95 % interval as `<metric>_ci_low/high` where finite
    (a single experiment keeps its own values and prompts-only interval); `estimates`: metric →
    `stats.Estimate`; `per_replicate`: replicate → that experiment's metrics; `level`: its level
    in the grid (None: in no level)."""

    label: str
    params: dict
    replicates: Replicates
    metrics: dict
    estimates: dict[str, stats.Estimate]
    per_replicate: dict[Replicate, dict]
    level: int | None = None

    @property
    def loss(self) -> str:
        return self.params["loss"]


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _numeric_keys(runs: dict) -> list[str]:
    keys = set.intersection(*(set(m) for m in runs.values()))
    return sorted(
        k
        for k in keys
        if not k.endswith(("_ci_low", "_ci_high"))
        and all(isinstance(m[k], int | float) for m in runs.values())
    )


def pool(
    configs: dict[tuple, Replicates], exps: dict[str, Experiment], levels: Levels | None = None
) -> dict[str, Pooled]:
    """Per configuration label its :class:`Pooled` record (level from `levels`; None without)."""
    out = {}
    for c in configs.values():
        runs = {rep: exps[name].eval for rep, name in c.names.items()}
        first = next(iter(runs.values()))
        metrics, estimates = {}, {}
        for key in _numeric_keys(runs):
            ci = _nan(first.get(f"{key}_ci_low")), _nan(first.get(f"{key}_ci_high"))
            e = estimates[key] = stats.estimate({r: m[key] for r, m in runs.items()}, ci)
            metrics[key] = e.mean
            if np.isfinite([e.low, e.high]).all():
                metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = e.low, e.high
        level = None if levels is None else c.level(levels)
        out[c.label] = Pooled(c.label, c.params, c, metrics, estimates, runs, level)
    return out


def prompt_tables(
    configs: dict[tuple, Replicates], tables: dict[str, pd.DataFrame], levels: Levels
) -> dict[str, dict[Replicate, pd.DataFrame]]:
    """Per configuration label (level order, no level last), its replicates' per-prompt tables
    (`tables`: experiment name → its table), index prompt_id."""
    out = {}
    ordered = sorted(configs.values(), key=lambda c: (level_order(c.level(levels)), c.label))
    for c in ordered:
        runs = {r: tables[n].set_index("prompt_id") for r, n in c.names.items() if n in tables}
        if runs:
            out[c.label] = runs
    return out


def standardise(
    exps: dict[str, Experiment], tables: dict[str, pd.DataFrame] | None = None
) -> tuple[dict[str, Experiment], dict[str, pd.DataFrame] | None]:
    """`exps` and their per-prompt `tables` with the reward also standardised within its seed:
    z = (r − μ_s) / σ_s, μ_s and σ_s the mean and SD of the rewards of the SFT policy's samples
    under seed s's own reward model (`metrics/pairs.json` of the experiment, written by the
    `pairs` stage). Every seed trains its own reward model, on its own logit scale; averaging raw
    logits across seeds would weight the seeds by their models' scales. The metric
    `reward/standardised` (interval and label splits transformed alike) and the column
    `reward_z`; experiments without the scale (older runs) are left as they are."""
    out_exps, out_tables = {}, None if tables is None else dict(tables)
    for name, e in exps.items():
        scale = e.metrics.get(PAIRS, {})
        mu, sd = scale.get("reward_mean"), scale.get("reward_sd")
        if not e.usable or mu is None or not (sd or 0) > 0 or "reward/mean" not in e.eval:
            out_exps[name] = e
            continue
        ev = dict(e.eval)
        for suffix in ("", "_ci_low", "_ci_high", "_negative", "_positive"):
            if f"reward/mean{suffix}" in ev:
                ev[f"reward/standardised{suffix}"] = (ev[f"reward/mean{suffix}"] - mu) / sd
        out_exps[name] = replace(e, metrics={**e.metrics, EVAL: ev})
        if out_tables is not None and name in out_tables:
            t = out_tables[name]
            if "reward_mean" in t.columns:
                out_tables[name] = t.assign(reward_z=(t["reward_mean"] - mu) / sd)
    return out_exps, out_tables


def column(runs: dict[Replicate, pd.DataFrame] | None, col: str) -> dict[Replicate, pd.Series]:
    """One column of each replicate's per-prompt table; {} if absent."""
    if not runs:
        return {}
    return {rep: df[col] for rep, df in runs.items() if col in df.columns}
