"""The Markdown reports: `prefdiv compare` (`reports/compare.md` and its figures) and `prefdiv
table` (the README's results table), one code path for both (:func:`results`).

Every value is the mean over a configuration's replicates with a seed-aware 95 % interval
(`replicates.pool`); with the runs' per-prompt tables (`plots/eval_prompts.csv` of each
experiment's commit) `compare` adds paired differences vs SFT and DPO, the reference study's
claims with verdicts (`reference.claims`), rank probabilities and the Spearman interval vs the
reference (`stats`, docs/statistics.md). Which metrics, with which headers and decimals: the
catalogue (`prefdiv.catalogue`). Levels come from the grid file only: a configuration in no level
is written `—` and listed after the levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prefdiv import (
    catalogue,
    experiments,
    figures,
    fronts,
    matched,
    names,
    paired,
    reference,
    replicates,
    stats,
)
from prefdiv.catalogue import Metric
from prefdiv.experiments import EVAL, PROMPTS, Experiment
from prefdiv.grid import Levels
from prefdiv.markdown import cell, head, row
from prefdiv.names import Replicate
from prefdiv.plan import Plan
from prefdiv.replicates import Pooled, Replicates, level_order


def _order(item: tuple[str, Pooled]) -> tuple:
    return level_order(item[1].level), item[0]


def _present(pooled: dict[str, Pooled]) -> list[Metric]:
    """The table's metrics some configuration has (the length-fair entropy only in newer runs)."""
    return [m for m in catalogue.TABLE if any(m.key in p.metrics for p in pooled.values())]


def configurations(pooled: dict[str, Pooled]) -> str:
    """Table: configuration, level (`—` for none), loss, β, options, seeds, every metric of the
    catalogue's table as mean [low, high] of its 95 % CI (:func:`cell`)."""
    cols = _present(pooled)
    lines = head(
        ["experiment", "level", "loss", "β", "options", "seeds", *[m.header for m in cols]]
    )
    for name, e in sorted(pooled.items(), key=_order):
        cells = [cell(e.metrics, m.key, m.decimals) for m in cols]
        lvl = "—" if e.level is None else str(e.level)
        lines.append(
            row([name, lvl, e.loss, *names.describe(e.params), e.replicates.counted(), *cells])
        )
    return "\n".join(lines) + "\n"


def described(pooled: dict[str, Pooled]) -> str:
    """Table: the run-level diversity metrics (`matched.DESCRIBED`) per configuration, mean
    [95 % CI] over its replicates; described, never judged."""
    cols = [m for m in matched.DESCRIBED if any(m.key in p.metrics for p in pooled.values())]
    if not cols:
        return ""
    lines = head(["configuration", "seeds", *[m.header for m in cols]])
    for name, e in sorted(pooled.items(), key=_order):
        cells = [cell(e.metrics, m.key, m.decimals) for m in cols]
        lines.append(row([name, e.replicates.counted(), *cells]))
    intro = (
        "Rarefied unigram entropy (exactly N tokens per prompt, the same N for every method) and"
        " across-input diversity (one response per prompt, pooled), docs/metrics.md: described"
        " here and at matched KL below, not judged (the analysis plan was fixed without them)."
    )
    return "\n".join([intro, "", *lines]) + "\n"


def sd_table(pooled: dict[str, Pooled]) -> str:
    """Between-seed SD of every table metric, for configurations with replicates."""
    multi = {n: e for n, e in pooled.items() if len(e.replicates.names) > 1}
    if not multi:
        return ""
    cols = _present(multi)
    lines = head(["configuration", "seeds", *[m.header for m in cols]])
    for name, e in sorted(multi.items(), key=_order):
        est = e.estimates
        cells = [f"{est[m.key].sd:.{m.decimals}f}" if m.key in est else "—" for m in cols]
        lines.append(row([name, e.replicates.counted(), *cells]))
    intro = (
        "SD of the per-seed means (a seed's train-seed runs averaged; with one seed: SD over its"
        " train-seed runs). It includes the prompt sampling of each seed's own test prompts."
    )
    return "\n".join(["## Between-seed SD", "", intro, "", *lines, ""])


def is_paper_scale(pooled: dict[str, Pooled]) -> bool:
    return bool(pooled) and all(e.params.get("scale") == "paper" for e in pooled.values())


def orderings(
    pooled: dict[str, Pooled],
    ref: dict[tuple, dict],
    runs: dict[str, dict[Replicate, pd.DataFrame]] | None = None,
) -> str:
    """Markdown: our and the reference study's reward and entropy with ranks, and Spearman ρ.

    Absolute values differ across scales; whether the methods come in the same *order* is the
    question this table answers. With `runs` (per-prompt tables by label), ρ gets a 95 %
    two-level bootstrap interval over seeds and prompts (`stats.spearman_interval`).
    """
    from scipy.stats import spearmanr

    rows = reference.ranked(pooled, ref)
    if len(rows) < 3:
        return ""
    ranks, lines = {}, []
    for what, (ours, theirs, col) in reference.ORDERED.items():
        a = np.array([m[ours] for _, _, m in rows])
        b = np.array([float(r[theirs]) for _, r, _ in rows])
        ranks[what] = (reference.ranks(a), reference.ranks(b))
        rho, pval = spearmanr(a, b)
        line = f"- {what}: Spearman ρ = {rho:.2f} (p = {pval:.3f}, {len(rows)} methods)"
        lines.append(line + _spearman_interval(rows, runs or {}, theirs, col))
    table = [
        "| experiment | reference method | reward: ours (rank) | reference (rank) "
        "| entropy: ours (rank) | reference (rank) |",
        "|---|---|---|---|---|---|",
    ]
    for i, (name, theirs, m) in enumerate(rows):
        (ra, rb), (ea, eb) = ranks["reward"], ranks["entropy"]
        table.append(
            f"| {name} | {theirs['method']} | {m['reward/mean']:.3f} ({ra[i]}) "
            f"| {float(theirs['reward_all']):.3f} ({rb[i]}) "
            f"| {m['diversity/entropy_unigram']:.3f} ({ea[i]}) "
            f"| {float(theirs['entropy_all']):.3f} ({eb[i]}) |"
        )
    return "\n".join(["## Orderings vs the reference study", "", *lines, "", *table, ""])


def _spearman_interval(rows, runs, theirs: str, col: str) -> str:
    tables = {name: replicates.column(runs.get(name), col) for name, _, _ in rows}
    tables = {n: t for n, t in tables.items() if t}
    ref = {name: float(r[theirs]) for name, r, _ in rows}
    found = stats.spearman_interval(tables, ref) if tables else None
    if found is None:
        return ""
    rho, lo, hi, used = found
    return (
        f"; on the per-prompt tables ({len(tables)} methods, seeds "
        f"{', '.join(map(str, used))}) ρ = {rho:.2f}, 95 % interval [{lo:.2f}, {hi:.2f}]"
    )


INTRO = (
    "Generated by `prefdiv compare` from `dvc exp show --json` and each experiment's"
    f" `{PROMPTS}`. One row per configuration: the mean over its replicates of each run's"
    " mean over test prompts with its 95 % interval [low, high]. With ≥ 2 seeds the interval is a t"
    " interval on the seed means (S − 1 degrees of freedom; a seed's train-seed runs averaged"
    ' first), so it carries seed-to-seed variance; a single run ("1 seed") keeps its'
    " bootstrap interval over test prompts, which does not (docs/statistics.md)."
    " Self-BLEU: lower = more diverse."
)


@dataclass(frozen=True)
class Results:
    """What both reports are built of: the usable experiments grouped by configuration
    (`replicates.group`), pooled (`replicates.pool`), the rest (failed, queued, or never
    evaluated) and the notes on missing replicates and dropped duplicates."""

    usable: dict[str, Experiment]
    failed: dict[str, Experiment]
    configs: dict[tuple, Replicates]
    pooled: dict[str, Pooled]
    missing: list[str]  # a line per configuration lacking replicates
    duplicates: list[str]  # a line per experiment ignored as a second copy of a replicate


def results(exps: dict[str, Experiment], levels: Levels | None = None) -> Results:
    """Group and pool `exps` (`experiments.show`): the one path of `prefdiv compare` and
    `prefdiv table`."""
    usable = experiments.usable(exps)
    failed = {n: e for n, e in exps.items() if n not in usable}
    configs, duplicates = replicates.group(usable)
    missing = replicates.missing_notes(configs, failed)
    pooled = replicates.pool(configs, usable, levels)
    return Results(usable, failed, configs, pooled, missing, duplicates)


def compare(
    exps: dict[str, Experiment],
    out_dir: str | Path,
    levels: Levels,
    reference_csv: str | Path | None = None,
    prompts: dict[str, pd.DataFrame] | None = None,
    analysis: Plan | None = None,
) -> Path:
    """Write `compare.md` and its figures into `out_dir` (`prefdiv compare`); return the Markdown
    path.

    Replicates are grouped by configuration, and configurations by their level in `levels`
    (`grid.load_levels` of the grid file). With `reference_csv` (the reference study's results),
    add the table of method orderings; with `prompts` (experiment name → its per-prompt table),
    the paired differences, claims (judged by `analysis`, the plan of `analysis.yaml`; the
    defaults of `plan.Plan` without), rank probabilities and Spearman intervals. Rewards are also
    standardised within each seed (`replicates.standardise`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exps, prompts = replicates.standardise(exps, prompts)
    r = results(exps, levels)
    found = reference_csv and Path(reference_csv).exists()
    ref = reference.read(reference_csv) if found else None
    drawn = ref if is_paper_scale(r.pooled) else None  # comparable at paper scale only
    figures.reward_entropy_figure(r.pooled, out / "reward_entropy.png", levels, drawn)
    figures.reward_kl_figure(r.pooled, out / "reward_kl.png")
    plan_ = analysis or Plan()
    fams, sft = matched.families(r.usable, levels)
    frontier = matched.has_frontier(fams)
    judged = matched.views(fams, plan_) if frontier else {}
    div = catalogue.BY_COLUMN[plan_.primary.get("1", "ead")]  # the diversity claims' primary
    if frontier:
        drawn = matched.series(fams, sft, div.key)
        labels = ("reward (z in seed)", div.header)
        frontier = figures.frontier_figure(drawn, out / "frontiers.png", levels, labels)
    notes = r.missing + r.duplicates
    md = [
        "# Experiment comparison",
        "",
        INTRO,
        "",
        *(["Missing or failed replicates:", "", *[f"- {n}" for n in notes], ""] if notes else []),
        configurations(r.pooled),
        described(r.pooled),
        sd_table(r.pooled),
        *(
            ["Hollow diamonds: the reference study's published points (paper scale).\n"]
            if drawn
            else []
        ),
        "![reward vs entropy](reward_entropy.png)",
        "",
        "![reward vs KL](reward_kl.png)",
        "",
        *(["![β frontiers](frontiers.png)", ""] if frontier else []),
    ]
    if prompts is None:
        md.append("No per-prompt tables given: no paired differences, claims or ranks.\n")
    else:
        if no_table := ", ".join(sorted(set(r.usable) - set(prompts))):
            md.append(f"Without `{PROMPTS}` (left out of the paired statistics): {no_table}\n")
        md.append(paired.sections(r.configs, prompts, levels, plan_, judged))
    if judged:
        md.append(matched.section(fams, judged, div))
        md.append(fronts.section(fams, sft, div))
    if ref:
        md.append(
            orderings(r.pooled, ref, replicates.prompt_tables(r.configs, prompts or {}, levels))
        )
    skipped = sorted(r.failed)
    if skipped:
        md.append(f"Skipped (failed or without `{EVAL}`): {', '.join(skipped)}\n")
    path = out / "compare.md"
    path.write_text("\n".join(md))
    return path


def table(configs: dict[str, dict], exps: dict[str, Experiment]) -> str:
    """`prefdiv table`: the grid's configurations (`configs`, `grid.load_grid`) in file order,
    replicates grouped: reward and entropy as the mean over replicates with the seed-aware 95 %
    CI (:func:`cell`, as `prefdiv compare`), seeds, tokens. Below it, a line per configuration
    missing replicates."""
    r = results(replicates.standardise(exps)[0])
    found: dict[tuple, list[tuple[str, Pooled]]] = {}
    for key, c in r.configs.items():
        found.setdefault(key[1:], []).append((key[0], r.pooled[c.label]))
    rows = [
        "| experiment | loss | β | options | seeds | reward (95 % CI) | entropy, nats (95 % CI) "
        "| tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, settings in configs.items():
        matches = found.get(names.settings_key(settings), [])
        if not matches:
            rows.append(f"| {name} | {settings['loss']} | | | | not run / failed | | |")
        for scale, e in matches:
            m = e.metrics
            beta, opts = names.describe(e.params)
            label = name if len(matches) == 1 else f"{name} ({scale})"
            rows.append(
                f"| {label} | {e.loss} | {beta} | {opts} | {e.replicates.counted()} "
                f"| {cell(m, 'reward/mean', 3)} "
                f"| {cell(m, 'diversity/entropy_unigram', 3)} "
                f"| {m['length/mean_tokens']:.1f} |"
            )
    return "\n".join(rows) + "\n" + "".join(f"\n{line}\n" for line in r.missing)
