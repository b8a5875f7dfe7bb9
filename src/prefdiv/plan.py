"""The analysis plan (`analysis.yaml`): the claims' primary metrics, equivalence margins, the error
rate and the seeds a verdict needs, read and checked into a frozen :class:`Plan`.

It is a file, not constants, so that it is fixed before the runs it judges and its history is
visible in git; docs/statistics.md gives the reasoning behind each value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prefdiv import catalogue
from prefdiv.errors import UserError

KEYS = ("alpha", "min_seeds", "primary", "margins")


@dataclass(frozen=True)
class Plan:
    alpha: float = 0.05
    min_seeds: int = 5
    primary: dict[str, str] = field(default_factory=dict)  # claim id → per-prompt column
    margins: dict[str, float] = field(default_factory=dict)  # column → equivalence margin


def load(path: str | Path, claim_ids=()) -> Plan:
    """The plan in `path`; a missing key, an unknown metric or claim, or a bad value is one
    UserError naming it. `claim_ids`: the claims it may name (all of them need a primary)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such analysis plan (--plan names it)") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or sorted(raw) != sorted(KEYS):
        raise UserError(f"{path}: expected exactly the keys {', '.join(KEYS)}")
    alpha, min_seeds = raw["alpha"], raw["min_seeds"]
    if not isinstance(alpha, float) or not 0 < alpha < 0.5:
        raise UserError(f"{path}: alpha = {alpha!r}: a number in (0, 0.5), e.g. 0.05")
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise UserError(f"{path}: min_seeds = {min_seeds!r}: an integer ≥ 2 (a t interval)")
    columns = set(catalogue.BY_COLUMN)
    primary = {str(k): v for k, v in (raw["primary"] or {}).items()}
    for cid, col in primary.items():
        if claim_ids and cid not in claim_ids:
            raise UserError(f"{path}: primary: no claim {cid!r}; claims: {', '.join(claim_ids)}")
        if col not in columns:
            raise UserError(f"{path}: primary.{cid} = {col!r} is not a metric column")
    if missing := [c for c in claim_ids if c not in primary]:
        raise UserError(f"{path}: primary: no metric for claim {missing[0]!r}")
    margins = raw["margins"] or {}
    for col, m in margins.items():
        if col not in columns:
            raise UserError(f"{path}: margins: {col!r} is not a metric column")
        if isinstance(m, bool) or not isinstance(m, int | float) or not m > 0:
            raise UserError(f"{path}: margins.{col} = {m!r}: a number > 0")
    return Plan(alpha, min_seeds, primary, {k: float(v) for k, v in margins.items()})
