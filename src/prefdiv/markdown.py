"""Markdown primitives every report table uses: one way to write a value with its interval."""

from __future__ import annotations


def cell(m: dict, key: str, decimals: int = 3) -> str:
    """A metric of `m` as every results table writes it: `mean [low, high]`, its 95 % interval
    (`<key>_ci_low/high`); the mean alone without one, `—` without the metric.

    The bounds, not `± half`: a single run's interval is a percentile bootstrap, not symmetric
    about the mean, and the paired differences and claims are written `Δ [low, high]` too."""
    if key not in m:
        return "—"
    lo, hi = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if lo is None or hi is None:
        return f"{m[key]:.{decimals}f}"
    return f"{m[key]:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]"


def row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def head(cells) -> list[str]:
    return [row(cells), "|" + "---|" * len(cells)]
