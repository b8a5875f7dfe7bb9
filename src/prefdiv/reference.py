"""The reference study: its published numbers and its claims, judged on our replicates.

- :func:`read` loads its results (`reference/reference_results.csv`, a cited copy) by
  configuration; :func:`points` places them in the grid's levels for the figures; :func:`ranked`
  sets our configurations beside its own, for the table of orderings.
- :data:`CLAIMS`: its claims as pairwise parts between the methods of :data:`METHODS`;
  :func:`claims` judges each on every claim metric of the catalogue, by the analysis plan
  (`plan.Plan`: primary metric, equivalence margins, α, seeds needed; `stats.part_test`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from prefdiv import catalogue, names, replicates, stats
from prefdiv.grid import Levels
from prefdiv.names import Replicate
from prefdiv.plan import Plan
from prefdiv.stats import Estimate

# The reference study's configurations, by the names its claims use: (loss, β, options).
METHODS = {
    "SFT": ("sft", None, {}),
    "DPO": ("sigmoid", 0.1, {}),
    "hinge": ("hinge", 0.1, {}),
    "FKL": ("fkl", 0.1, {}),
    "JSD": ("jsd", 0.1, {}),
    "α=0.3": ("alpha", 0.1, {"alpha": 0.3}),
    "α=0.5": ("alpha", 0.1, {"alpha": 0.5}),
    "α=0.7": ("alpha", 0.1, {"alpha": 0.7}),
    "IPO 0.1": ("ipo", 0.1, {}),
    "IPO 0.3": ("ipo", 0.3, {}),
    "IPO 0.5": ("ipo", 0.5, {}),
    "cDPO": ("cdpo", 0.1, {"label_smoothing": 0.15}),
    "DPO anneal": ("sigmoid", 0.0, {"beta_end": 1.0}),
    "IPO anneal": ("ipo", 1.0, {"beta_end": 0.01}),
}
F_DIV = ("DPO", "JSD", "α=0.3", "α=0.5", "α=0.7", "FKL")  # reverse KL … forward KL
CONSTANT = tuple(m for m in METHODS if m not in ("SFT", "DPO anneal", "IPO anneal"))
TOP, LOW = ("DPO", "hinge", "JSD", "cDPO"), ("IPO 0.3", "IPO 0.5")

# (id, claim, "diversity" | "reward", parts): (A, ">", B) = A higher than B; (A, "≈", B) = close
CLAIMS = (
    (
        "1",
        "SFT more diverse than DPO and than SLiC-HF hinge; hinge and DPO close",
        "diversity",
        (("SFT", ">", "DPO"), ("SFT", ">", "hinge"), ("hinge", "≈", "DPO")),
    ),
    (
        "2a",
        "forward KL the most diverse f-divergence",
        "diversity",
        tuple(("FKL", ">", m) for m in F_DIV[:-1]),
    ),
    (
        "2b",
        "reverse KL (DPO) the least diverse f-divergence",
        "diversity",
        tuple((m, ">", "DPO") for m in F_DIV[1:]),
    ),
    (
        "2c",
        "α-divergences more diverse as α grows towards 1",
        "diversity",
        (("α=0.5", ">", "α=0.3"), ("α=0.7", ">", "α=0.5")),
    ),
    (
        "3",
        "IPO (τ = 0.1, 0.3, 0.5) and cDPO (ε = 0.15) more diverse than DPO",
        "diversity",
        tuple((m, ">", "DPO") for m in ("IPO 0.1", "IPO 0.3", "IPO 0.5", "cDPO")),
    ),
    (
        "4",
        "DPO annealing (β 0→1) ends less diverse than IPO annealing (β 1→0.01)",
        "diversity",
        (("IPO anneal", ">", "DPO anneal"),),
    ),
    (
        "5a",
        "reward highest for DPO, hinge, JSD and cDPO",
        "reward",
        tuple((t, ">", o) for t in TOP for o in CONSTANT if o not in TOP),
    ),
    (
        "5b",
        "reward lowest for IPO with τ ≥ 0.3",
        "reward",
        tuple((o, ">", low) for low in LOW for o in CONSTANT if o not in LOW),
    ),
)


def method_keys() -> dict[tuple, str]:
    """`names.config_key` of each claim method → its name."""
    return {names.config_key(*spec): name for name, spec in METHODS.items()}


@dataclass(frozen=True)
class Part:
    """One part A rel B of a claim on one metric: the paired difference A − B over seeds (None:
    a method did not run), its two-sided p and Holm-adjusted p within the claim's parts, and
    its verdict at the plan's α."""

    a: str
    rel: str
    b: str
    estimate: Estimate | None
    p: float = float("nan")
    p_holm: float = float("nan")
    verdict: str = "missing"


def _judge(parts: list[Part], margin: float, plan: Plan) -> tuple[list[Part], str, float]:
    """The parts with their tests and Holm-adjusted p-values, and the cell's candidate verdict
    with its p (`stats.cell_verdict`), before the correction across cells."""
    ok = [
        i for i, q in enumerate(parts)
        if q.estimate is not None and q.estimate.n_seeds >= plan.min_seeds
    ]  # fmt: skip
    tests = [stats.part_test(parts[i].estimate, parts[i].rel, margin) for i in ok]
    adjusted = stats.holm([p for p, _ in tests]) if tests else []
    out = [replace(q, verdict="missing" if q.estimate is None else "too few seeds") for q in parts]
    for i, (p, direction), p_holm in zip(ok, tests, adjusted, strict=True):
        verdict = direction if p_holm < plan.alpha else "inconclusive"
        out[i] = replace(parts[i], p=p, p_holm=float(p_holm), verdict=verdict)
    if not ok:
        untested = {q.verdict for q in out}
        return out, "missing" if untested == {"missing"} else "too few seeds", 1.0
    judged = [(tests[k][1], float(adjusted[k])) for k in range(len(ok))]
    verdict, p = stats.cell_verdict(judged)
    if verdict == "holds" and len(ok) < len(parts):  # a part that could not be tested
        untested = {q.verdict for q in out} - {"holds", "reversed", "inconclusive"}
        return out, "too few seeds" if "too few seeds" in untested else "inconclusive", 1.0
    return out, verdict, p


def judge(cells: list[dict], plan: Plan) -> list[dict]:
    """Verdicts for one family of claim × metric cells, each {claim, text, column, key, metric,
    parts: [Part with its estimate]}: the parts' tests with Holm within each cell (`_judge`),
    then Holm across all the cells, a cell keeping its verdict only if that p < α. Adds to each
    cell `primary` (the plan's metric of its claim), `candidate`, `p`, `p_adjusted`, `verdict`.
    """
    rows = []
    for cell in cells:
        margin = plan.margins.get(cell["column"], float("nan"))
        judged, candidate, p = _judge(cell["parts"], margin, plan)
        primary = plan.primary.get(cell["claim"]) == cell["column"]
        rows.append(cell | dict(primary=primary, candidate=candidate, p=p, parts=judged))
    decided = [r for r in rows if r["candidate"] in ("holds", "reversed")]
    for r, p_adj in zip(decided, stats.holm([r["p"] for r in decided]), strict=True):
        r["p_adjusted"] = float(p_adj)
    for r in rows:
        r.setdefault("p_adjusted", float("nan"))
        lost = r["candidate"] in ("holds", "reversed") and not r["p_adjusted"] < plan.alpha
        r["verdict"] = "inconclusive" if lost else r["candidate"]
    return rows


def claims(
    runs: dict[str, dict[Replicate, pd.DataFrame]], plan: Plan, *, n_boot: int = stats.N_BOOT
) -> list[dict]:
    """Every claim on every metric it is judged on, at the study's own β (docs/statistics.md).

    `runs`: per claim method name (`METHODS`) its per-prompt tables (index prompt_id) by
    replicate. Diversity claims are judged on each `catalogue.DIVERSITY` column present
    (differences oriented so that > 0 = more diverse), claim 5 on the reward metrics. Each part
    is a two-sided t test over seeds (TOST against `plan.margins` for "≈"), Holm-corrected
    within the claim's parts; each claim × metric cell's p (`stats.cell_verdict`) is then
    Holm-corrected across all cells (:func:`judge`).

    Returns rows {claim, text, column, key, metric (header), primary, verdict, candidate (before
    the correction across cells), p, p_adjusted, parts: [Part]}.
    """
    cache: dict[tuple, Estimate | None] = {}

    def diff(a: str, b: str, col: str, sign: int) -> Estimate | None:
        if (a, b, col) not in cache:
            ta = replicates.column(runs.get(a), col)
            tb = replicates.column(runs.get(b), col)
            d = stats.paired_difference(ta, tb, n_boot=n_boot) if ta and tb else None
            cache[a, b, col] = d.flipped() if d is not None and sign < 0 else d
        return cache[a, b, col]

    cells = []
    for cid, text, kind, parts in CLAIMS:
        for m in catalogue.DIVERSITY if kind == "diversity" else catalogue.REWARD:
            if not any(replicates.column(r, m.column) for r in runs.values()):
                continue  # metric absent from every run (e.g. entropy_fair before it existed)
            found = [Part(a, rel, b, diff(a, b, m.column, m.sign)) for a, rel, b in parts]
            cell = dict(claim=cid, text=text, column=m.column, key=m.key, metric=m.header)
            cells.append(cell | dict(parts=found))
    return judge(cells, plan)


# --- its published numbers -----------------------------------------------------------------------


def read(path: str | Path) -> dict[tuple, dict]:
    """The reference study's results (`reference/reference_results.csv`), by configuration
    (`names.config_key`)."""
    out = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            option = dict(kv.split("=") for kv in row["option"].split(";") if kv)
            out[names.config_key(row["loss"], row["beta"] or None, option)] = row
    return out


def points(
    reference: dict[tuple, dict], levels: Levels
) -> list[tuple[int | None, str, float, float]]:
    """(level, method, reward, entropy) of every configuration of the reference study; its level
    is that of the grid configuration with the same loss, β and options (`names.settings_key`),
    None if no level of the grid has one."""
    return [
        (levels.by_settings.get(key), r["method"], float(r["reward_all"]), float(r["entropy_all"]))
        for key, r in reference.items()
    ]


# (what, our metrics/eval.json name, its column in the reference CSV, our per-prompt column)
ORDERED = {
    "reward": ("reward/mean", "reward_all", "reward_mean"),
    "entropy": ("diversity/entropy_unigram", "entropy_all", "entropy"),
}


def ranked(pooled: dict[str, replicates.Pooled], reference: dict[tuple, dict]) -> list[tuple]:
    """(label, reference row, our pooled metrics) of every configuration the reference study ran
    too, by label."""
    return [
        (name, reference[names.settings_key(p.params)], p.metrics)
        for name, p in sorted(pooled.items())
        if names.settings_key(p.params) in reference
    ]


def ranks(values) -> np.ndarray:
    """1 = highest."""
    return np.argsort(np.argsort(-np.asarray(values))) + 1
