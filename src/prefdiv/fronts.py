"""The Pareto fronts of a frontier study: which configurations no other matches or beats in both
coordinates of the reward–KL and reward–diversity planes (the plan's primary diversity metric,
EAD in analysis.yaml), study-wide and per loss (issue 19).

Described, not tested: the points are configuration means over seeds (`matched.Family`), and a
point's place on a front has no interval; the tested comparisons are `matched`'s.
"""

from __future__ import annotations

import numpy as np

from prefdiv import frontiers
from prefdiv.catalogue import Metric
from prefdiv.markdown import head, row
from prefdiv.matched import KL, REWARD, Family


def section(
    fams: dict[tuple, Family], sft: dict[str | None, dict[int, dict]], primary: Metric
) -> str:
    """Markdown: :func:`_fronts` per scale that has a family; `primary`: the plan's diversity
    metric, the x of the second plane."""
    md = []
    for scale in sorted({k[0] for k in fams}, key=str):
        mine = {k: f for k, f in fams.items() if k[0] == scale}
        md += _fronts(mine, sft.get(scale, {}), primary)
    return "\n".join(md)


def planes(primary: Metric) -> dict[str, tuple[str, bool]]:
    """Plane name → (x key, whether higher x is better); reward (y) is always maximised."""
    return {"reward–KL": (KL, False), f"reward–{primary.header}": (primary.key, primary.sign > 0)}


def means(
    fams: dict[tuple, Family], sft: dict[int, dict], primary: Metric
) -> list[tuple[str, float | None, dict]]:
    """(family label, β, metric means over the seeds that ran it, with `seeds`) of every family
    and β, SFT first (β None): the configurations as points of the study's planes."""
    keys = (KL, REWARD, primary.key)

    def mean(runs: list[dict]) -> dict:
        runs = [r for r in runs if all(k in r for k in keys)]
        return {k: float(np.mean([r[k] for r in runs])) for k in keys} | {"seeds": len(runs)}

    out = [("SFT", None, mean(list(sft.values())))] if sft else []
    for fam in sorted(fams.values(), key=lambda f: (f.level or 99, f.label)):
        betas = sorted({b for by_beta in fam.points.values() for b in by_beta})
        for b in betas:
            out.append((fam.label, b, mean([bb[b] for bb in fam.points.values() if b in bb])))
    return [p for p in out if p[2]["seeds"]]


def _fronts(fams: dict[tuple, Family], sft: dict[int, dict], primary: Metric) -> list[str]:
    """Markdown: the study-wide Pareto fronts (`frontiers.pareto`) of the configurations' means
    over seeds in the reward–KL and reward–`primary` planes, and the families with no point on
    them."""
    pts, div, plane_xs = means(fams, sft, primary), primary.header, planes(primary)
    if len(pts) < 2:
        return []
    best = "highest" if primary.sign > 0 else "lowest"
    md = [
        "### Pareto fronts (descriptive)",
        "",
        "The configurations (loss at one β, means over their seeds) that no other configuration"
        f" matches or beats in both coordinates: lowest KL for its reward, and {best} {div} for"
        " its reward. Means only: a point's place on a front is not tested (the intervals are"
        " above).",
        "",
    ]
    labels = sorted({label for label, _, _ in pts})
    for plane, (x, higher) in plane_xs.items():
        xs = np.array([m[x] for _, _, m in pts])
        ys = np.array([m[REWARD] for _, _, m in pts])
        front = frontiers.pareto(xs, ys, minimise_x=not higher)
        lines = head(["loss", "β", "seeds", "KL(π‖π_ref) RB", "reward (z in seed)", div])
        for i in front:
            label, beta, m = pts[i]
            b = "—" if beta is None else f"{beta:g}"
            cells = [f"{m[KL]:.2f}", f"{m[REWARD]:.2f}", f"{m[primary.key]:.{primary.decimals}f}"]
            lines.append(row([label, b, str(m["seeds"]), *cells]))
        on = {pts[i][0] for i in front}
        off = ", ".join(lb for lb in labels if lb not in on) or "none"
        md += [f"**{plane}** (by {div if x == primary.key else 'KL'}):", "", *lines, ""]
        md += [f"No point on the {plane} front: {off}.", ""]
    own = (
        "**Each loss's own fronts**: the β whose configuration no other β of the same loss beats"
        " in both coordinates (`all`: the loss trades along its whole β range)."
    )
    md += [own, ""]
    lines = head(["loss", *[f"β on its {plane} front" for plane in plane_xs]])
    for label in [lb for lb in dict.fromkeys(lb for lb, _, _ in pts) if lb != "SFT"]:
        mine = [(b, m) for lb, b, m in pts if lb == label]
        cells = []
        for x, higher in plane_xs.values():
            xs, ys = np.array([m[x] for _, m in mine]), np.array([m[REWARD] for _, m in mine])
            keep = {mine[i][0] for i in frontiers.pareto(xs, ys, minimise_x=not higher)}
            kept = ", ".join(f"{b:g}" for b, _ in mine if b in keep)
            every = "all" if len(keep) == len(mine) else kept
            cells.append(f"{every} (of {len(mine)})")
        lines.append(row([label, *cells]))
    return md + [*lines, ""]
