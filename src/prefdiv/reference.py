"""The reference study: its published numbers and its claims, judged on our replicates.

- :func:`read` loads its results (`reference/reference_results.csv`, a cited copy) by
  configuration; :func:`points` places them in the grid's levels for the figures; :func:`ranked`
  sets our configurations beside its own, for the table of orderings.
- :data:`CLAIMS`: its claims as pairwise parts between the methods of :data:`METHODS`;
  :func:`claims` judges each on every claim metric of the catalogue (`stats.part_verdict`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from prefdiv import catalogue, names, replicates, stats
from prefdiv.grid import Levels
from prefdiv.names import Replicate
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
CLOSE = 0.2  # "close": |A − B| within CLOSE·|SFT − DPO| (the effect the study is about)

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


def claims(
    runs: dict[str, dict[Replicate, pd.DataFrame]], *, n_boot: int = stats.N_BOOT
) -> list[dict]:
    """Every claim on every metric it is judged on, with its parts.

    `runs`: per claim method name (`METHODS`) its per-prompt tables (index prompt_id) by
    replicate. Diversity claims are judged on each `catalogue.DIVERSITY` column present
    (differences oriented so that > 0 = more diverse), claim 5 on reward. Returns rows {claim,
    text, column, key (metrics/eval.json name), metric (header), verdict, parts: [(A, rel, B,
    Estimate | None, verdict)]}.
    """
    cache: dict[tuple, Estimate | None] = {}

    def diff(a: str, b: str, col: str, sign: int) -> Estimate | None:
        if (a, b, col) not in cache:
            ta = replicates.column(runs.get(a), col)
            tb = replicates.column(runs.get(b), col)
            d = stats.paired_difference(ta, tb, n_boot=n_boot) if ta and tb else None
            cache[a, b, col] = d.flipped() if d is not None and sign < 0 else d
        return cache[a, b, col]

    rows = []
    for cid, text, kind, parts in CLAIMS:
        metrics = catalogue.DIVERSITY if kind == "diversity" else catalogue.REWARD
        for m in metrics:
            if not any(replicates.column(r, m.column) for r in runs.values()):
                continue  # metric absent from every run (e.g. entropy_fair before it existed)
            ref = diff("SFT", "DPO", m.column, m.sign)
            margin = CLOSE * abs(ref.mean) if ref is not None else float("nan")
            judged = []
            for a, rel, b in parts:
                d = diff(a, b, m.column, m.sign)
                judged.append((a, rel, b, d, stats.part_verdict(d, rel, margin)))
            verdict = stats.claim_verdict([v for *_, v in judged])
            row = dict(
                claim=cid, text=text, column=m.column, key=m.key, metric=m.header, verdict=verdict
            )
            rows.append({**row, "parts": judged})
    return rows


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
