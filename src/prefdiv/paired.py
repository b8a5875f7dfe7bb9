"""The paired statistics of `prefdiv compare`, as Markdown sections: differences vs SFT and DPO,
variance components, the reference study's claims with verdicts, rank probabilities.

All are computed on the per-prompt tables of each configuration's replicates
(`replicates.prompt_tables`), paired prompt by prompt within a seed (`stats`, docs/statistics.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prefdiv import catalogue, reference, replicates, stats
from prefdiv.catalogue import Metric
from prefdiv.grid import Levels
from prefdiv.markdown import head, row
from prefdiv.plan import Plan
from prefdiv.replicates import Replicates


def fmt_difference(d: stats.Estimate | None, decimals: int) -> str:
    """`+Δ [low, high] k/S`: k of S seeds agree in sign with Δ."""
    if d is None:
        return "—"
    tail = {"seeds": f"{d.agree}/{len(d.units)}", "train seeds": f"{d.agree}/{len(d.units)} t"}
    return (
        f"{d.mean:+.{decimals}f} [{d.low:+.{decimals}f}, {d.high:+.{decimals}f}] "
        f"{tail.get(d.unit, '1 seed')}"
    )


def _columns(runs: dict) -> list[Metric]:
    """The paired metrics some configuration's per-prompt tables have."""
    return [
        m for m in catalogue.PAIRED if any(replicates.column(r, m.column) for r in runs.values())
    ]


def difference_table(runs: dict, baseline: str | None, what: str) -> str:
    """Every configuration minus `baseline` (a label), paired per prompt within seeds."""
    if baseline not in runs:
        return f"No {what} run with per-prompt tables: no differences against it.\n"
    cols = _columns(runs)
    lines = head(["configuration", *[m.header for m in cols]])
    base = runs[baseline]
    for name, r in runs.items():
        if name == baseline:
            continue
        cells = [
            fmt_difference(
                stats.paired_difference(
                    replicates.column(r, m.column), replicates.column(base, m.column)
                ),
                m.decimals,
            )
            for m in cols
        ]
        lines.append(row([name, *cells]))
    return "\n".join([f"### vs {what} (`{baseline}`)", "", *lines, ""])


def variance_table(runs: dict) -> str:
    """Shares of a run mean's variance, for configurations with seeds × train seeds."""
    cols = _columns(runs)
    lines = []
    for name, r in runs.items():
        shares = {m: stats.variance_components(replicates.column(r, m.column)) for m in cols}
        if not any(shares.values()):
            continue
        # no variance at all (SFT's KL is 0 in every run): no shares to give
        cells = [
            "/".join(f"{100 * v:.0f}" for v in s.values()) if s and np.isfinite(sum(s.values()))
            else "—"
            for s in shares.values()
        ]  # fmt: skip
        lines.append(row([name, *cells]))
    if not lines:
        return ""
    intro = (
        "Share (%) of one run's mean variance from the upstream `seed` / the `train_seed` within"
        " it / the residual prompt sampling (nested random effects, docs/statistics.md)."
    )
    top = head(["configuration", *[m.header for m in cols]])
    return "\n".join(["## Variance components", "", intro, "", *top, *lines, ""])


MARK = {"holds": "✓", "reversed": "✗", "inconclusive": "?", "too few seeds": "…", "missing": "—"}
CLAIMS_INTRO = (
    "Each claim is split into pairwise parts A > B (A more diverse, or higher reward), each a"
    " paired difference A − B over seeds, oriented so that > 0 = more diverse (self-BLEU's sign"
    " flipped), with its 95 % t interval. A part is a two-sided t test over seeds; A ≈ B is"
    " tested for equivalence (TOST) within the margin that `analysis.yaml` fixed in advance."
    " The parts' p-values are Holm-corrected within the claim, each claim × metric cell's p"
    " (holds: its largest part p; reversed: its smallest reversed part p) is Holm-corrected"
    " across all cells, and a cell keeps its verdict only when that p < α; otherwise it is"
    " inconclusive. A part needs ≥ `min_seeds` seeds of both methods, else 'too few seeds'."
    " The primary metric of each claim (`analysis.yaml`) is the verdict to read;"
    " docs/statistics.md gives the rules and why. Counts: parts holding / reversed /"
    " inconclusive / too few seeds / missing (a method not run). Parts: ✓ holds, ✗ reversed,"
    " ? inconclusive, … too few seeds, — missing; p: Holm-adjusted within the claim."
)


def claims_section(
    runs_by_method: dict, plan: Plan, views: dict[str, list[dict]] | None = None
) -> str:
    """The reference study's claims: a verdict per claim and metric (the primary first, and, with
    `views` (view → its judged claims, `matched.views`), the primary verdict at matched KL and
    at matched reward beside it), then every part."""
    rows = reference.claims(runs_by_method, plan)
    if not rows:
        return ""
    views = views or {}
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    ids = list(dict.fromkeys(r["claim"] for r in rows))
    matched = [f"at matched {v}" for v in views]
    lines = head(["claim", "statement", "primary metric: at β = 0.1", *matched, *metrics])
    for cid in ids:
        mine = {r["metric"]: r for r in rows if r["claim"] == cid}
        first = next(iter(mine.values()))
        primary = next((r for r in mine.values() if r["primary"]), None)
        lead = f"{primary['metric']}: {fmt_cell(primary)}" if primary else "—"
        at = []
        for judged in views.values():
            found = [r for r in judged if r["claim"] == cid and r["primary"]]
            at.append(fmt_cell(found[0]) if found else "—")
        cells = [fmt_cell(mine[m]) if m in mine else "" for m in metrics]
        lines.append(row([cid, first["text"], lead, *at, *cells]))
    md = ["## Claims of the reference study", "", CLAIMS_INTRO, "", *lines, ""]
    for cid in ids:
        mine = [r for r in rows if r["claim"] == cid]
        md += [f"### Claim {cid}: parts", "", *head(["part", *[r["metric"] for r in mine]])]
        for i, part in enumerate(mine[0]["parts"]):
            cells = [_part(r["parts"][i], catalogue.BY_KEY[r["key"]].decimals) for r in mine]
            md.append(row([f"{part.a} {part.rel} {part.b}", *cells]))
        md.append("")
    return "\n".join(md)


def _part(part: reference.Part, decimals: int) -> str:
    p = f" p={part.p_holm:.3f}" if np.isfinite(part.p_holm) else ""
    return f"{fmt_difference(part.estimate, decimals)} {MARK[part.verdict]}{p}"


def fmt_cell(cell: dict) -> str:
    """`**holds** (p=0.004) 3/0/1/0/0`: the verdict, its p corrected across cells, then its
    parts holding / reversed / inconclusive / too few seeds / missing."""
    counts = [sum(q.verdict == k for q in cell["parts"]) for k in stats.VERDICTS]
    p = f" (p={cell['p_adjusted']:.3f})" if np.isfinite(cell["p_adjusted"]) else ""
    return f"**{cell['verdict']}**{p} {'/'.join(map(str, counts))}"


def rank_section(runs: dict) -> str:
    """Per diversity metric, P(row more diverse than column) and each method's rank."""
    md = []
    for m in catalogue.DIVERSITY:
        tables = {n: t for n, r in runs.items() if (t := replicates.column(r, m.column))}
        found = stats.rank_probabilities(tables, m.sign) if len(tables) > 1 else None
        if found is None:
            continue
        p, ranks, used = found
        order = list(ranks.sort_values("mean rank").index)
        lines = head(["#", "configuration", "rank [95 %]", *map(str, range(1, len(order) + 1))])
        for i, n in enumerate(order, 1):
            rank = f"{ranks.loc[n, 'mean rank']:.1f} [{ranks.loc[n, 'low']:.0f}, "
            rank += f"{ranks.loc[n, 'high']:.0f}]"
            cells = ["" if a == n else f"{100 * p.loc[n, a]:.0f}" for a in order]
            lines.append(row([str(i), n, rank, *cells]))
        seeds_used = ", ".join(map(str, used))
        md += [f"### {m.header} (seeds {seeds_used})", "", *lines, ""]
    if not md:
        return ""
    intro = (
        "P(row more diverse than column), %, from the two-level bootstrap (seeds, then prompts"
        " within each drawn seed, paired across methods); rank 1 = most diverse. Only seeds every"
        " method ran are used. With few seeds these probabilities are overconfident"
        " (docs/statistics.md)."
    )
    return "\n".join(["## Rank probabilities", "", intro, "", *md])


def sections(
    configs: dict[tuple, Replicates],
    prompts: dict[str, pd.DataFrame],
    levels: Levels,
    plan: Plan,
    views: dict | None = None,
) -> str:
    """Differences vs SFT and DPO, variance components, claims (with `views`: scale → the
    claims at matched KL / reward) and ranks, per scale."""
    md = []
    scales = sorted({key[0] for key in configs}, key=str)
    method_of = reference.method_keys()
    for scale in scales:
        part = {k: c for k, c in configs.items() if k[0] == scale}
        runs = replicates.prompt_tables(part, prompts, levels)
        methods = {method_of[k[1:]]: c.label for k, c in part.items() if k[1:] in method_of}
        by_method = {m: runs[label] for m, label in methods.items() if label in runs}
        if len(scales) > 1:
            md.append(f"# Scale `{scale}`\n")
        md += [
            "## Paired differences",
            "",
            "A − baseline per test prompt within each seed, mean over seeds, 95 % interval"
            " (t over seeds; with one seed: bootstrap over prompts); k/S = seeds whose mean"
            " difference has the sign of the estimate. Self-BLEU: lower = more diverse.",
            "",
            difference_table(runs, methods.get("SFT"), "SFT"),
            difference_table(runs, methods.get("DPO"), "DPO (β = 0.1)"),
            variance_table(runs),
            claims_section(by_method, plan, (views or {}).get(scale)),
            rank_section(runs),
        ]
    return "\n".join(md)
