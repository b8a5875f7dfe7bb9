"""The study's losses at matched KL and matched reward: β frontiers from the experiments, the
claims restated per loss, and their Markdown (issue 19).

A *family* is a loss with its fixed options (cDPO's ε, the α-divergence's α) at every β it ran
with constant β (`grid.load_frontier`, and the levels' own β = 0.1 runs). Per seed its runs are
the points of a curve (`frontiers.monotone`), its runs only (not SFT: :func:`points`). Families
are compared where both curves reach, seed by seed, and a claim part "A > B" becomes "A's family
above B's at matched KL" (per seed, its curve difference averaged over the levels where the two
curves of that seed overlap; `frontiers.levels`). Parts whose two methods are one family (IPO
τ = 0.1 vs 0.3), or that involve SFT or an annealed β, have no matched form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prefdiv import catalogue, frontiers, names, reference, stats
from prefdiv.experiments import Experiment
from prefdiv.grid import Levels
from prefdiv.markdown import head, row
from prefdiv.paired import fmt_cell, fmt_difference
from prefdiv.plan import Plan

# Level 4 (issue 20) is judged against these families, declared before its runs: DPO and every
# f-divergence of the frontier (all of them, Holm-corrected, rather than "the best" one, which
# would be picked on the same data it is then tested on).
LEVEL4 = "L4"  # its claim id in analysis.yaml (primary metric)
LEVEL4_AGAINST = (("sigmoid", ()), ("fkl", ()), ("jsd", ()), ("alpha", (("alpha", 0.5),)))
# Diversity metrics of `evaluate` without a per-prompt column in `catalogue` (one value per run, or
# NaN on prompts that pooled too few tokens): the reports describe them (means with seed intervals,
# the curve differences at matched KL and reward) and never judge them: the analysis plan's
# families of tests were fixed without them, and adding tests after the runs would widen them.
# (Here, not in `catalogue`, which the evaluate stage imports: an analysis-only list there would
# make the pipeline's evaluate stage stale.)
DESCRIBED = (
    catalogue.Metric("", "diversity/entropy_rarefied_32", "rarefied entropy, 32 tokens"),
    catalogue.Metric("", "diversity/entropy_rarefied_64", "rarefied entropy, 64 tokens"),
    catalogue.Metric("", "diversity/entropy_rarefied_96", "rarefied entropy, 96 tokens"),
    catalogue.Metric("", "diversity/across_input_ead", "across-input EAD"),
    catalogue.Metric("", "diversity/across_input_entropy", "across-input entropy"),
)
KL = "kl/rb"  # the frontier's x: KL(π‖π_ref) per response from samples of π (Rao–Blackwellised)
REWARD = "reward/standardised"  # the matched-reward x: reward in its seed's SD units
VIEWS = {"KL": KL, "reward": REWARD}  # "at matched <view>"


@dataclass
class Family:
    """One loss and options over β: `points[seed][β]` = that run's eval metrics (train seeds
    averaged); `label` as tables write it; `level` from the grid (by its configurations)."""

    scale: str | None
    loss: str
    options: tuple
    label: str
    level: int | None = None
    points: dict[int, dict[float, dict]] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return self.scale, self.loss, self.options


def family_key(params: dict) -> tuple | None:
    """(scale, loss, options) of a constant-β trained run; None for SFT or an annealed β."""
    if params.get("loss") in (None, "sft") or params.get("beta_end") is not None:
        return None
    loss, _, options = names.settings_key(params)
    return params.get("scale"), loss, options


def _label(loss: str, options: tuple) -> str:
    """`alpha (α=0.3)`, `cdpo (ε=0.15)`, `sigmoid`: the options as every table writes them."""
    opts = names.describe({"loss": loss, "beta": None, **dict(options)})[1]
    return f"{loss} ({opts})" if opts else loss


def _mean(runs: list[dict]) -> dict:
    keys = set.intersection(*(set(r) for r in runs))
    return {k: float(np.mean([r[k] for r in runs])) for k in keys if isinstance(runs[0][k], float)}


def families(
    exps: dict[str, Experiment], levels: Levels | None = None
) -> tuple[dict[tuple, Family], dict[str | None, dict[int, dict]]]:
    """The families of the usable `exps` (`replicates.standardise`d) by key, and the SFT runs
    per scale and seed (their metrics, train seeds averaged)."""
    grouped: dict[tuple, dict[int, dict[float, list[dict]]]] = {}
    sft: dict[str | None, dict[int, list[dict]]] = {}
    for name, e in sorted(exps.items()):
        if not e.usable:
            continue
        seed = names.replicate(e.params, name)[0]
        if e.params.get("loss") == "sft":
            sft.setdefault(e.params.get("scale"), {}).setdefault(seed, []).append(e.eval)
        elif (key := family_key(e.params)) is not None:
            beta = round(float(e.params["beta"]), 6)
            grouped.setdefault(key, {}).setdefault(seed, {}).setdefault(beta, []).append(e.eval)
    out = {}
    for key, seeds in grouped.items():
        fam = Family(*key, _label(key[1], key[2]))
        fam.points = {s: {b: _mean(r) for b, r in bs.items()} for s, bs in seeds.items()}
        if levels is not None:
            found = [levels.by_settings.get((key[1], b, key[2])) for s in seeds.values() for b in s]
            fam.level = next((lvl for lvl in found if lvl is not None), None)
        out[key] = fam
    return out, {sc: {s: _mean(r) for s, r in ss.items()} for sc, ss in sft.items()}


def points(fam: Family, x: str, y: str) -> frontiers.Points:
    """seed → (x, y) of the family's runs over β; only seeds with runs at two β or more.

    The SFT policy is not a point of any curve. It is every loss's β → ∞ limit in theory, but
    not within reach here: FKL and the α-divergence stay ≥ 3.4 nats from it at every β run, SimPO
    (no reference) ≈ 22, H-DPO α = 1.5 ≥ 11.7, DPO's β = 10 still at reward z 1.0 of SFT's 0.
    A curve anchored at SFT would run straight through a region none of the loss's runs reached,
    and a matched comparison there would be a guess."""
    out = {}
    for seed, by_beta in fam.points.items():
        pts = [(m[x], m[y]) for m in by_beta.values() if x in m and y in m]
        if len(pts) >= 2:
            xs, ys = np.array(pts).T
            out[seed] = (xs, ys)
    return out


def curve_difference(
    a: Family, b: Family, x: str, y: str, sign: int
) -> tuple[stats.Estimate | None, list[float]]:
    """A − B in `y` (`sign` −1: B − A, so > 0 = better) at matched `x`, seed by seed: in each
    seed both ran, the curves' difference averaged over the quartiles of the x range both reach
    in that seed (`frontiers.levels`; a seed where they do not overlap is left out, so a verdict
    may lack seeds); then the t interval over those seeds. Also every level used, sorted (none:
    no seed overlaps). Per-seed levels, not levels common to all seeds: the standardised reward
    of a seed's runs spans ≈ 0.3 SD and shifts between seeds, so a range every seed reaches is
    often empty although each seed's two curves overlap."""
    ca, cb = frontiers.curves(points(a, x, y)), frontiers.curves(points(b, x, y))
    per_seed, used = {}, []
    for s in sorted(ca.keys() & cb.keys()):
        at = frontiers.levels({s: ca[s]}, {s: cb[s]})
        if at:
            per_seed[s, 0] = sign * float(np.mean([ca[s].at(v) - cb[s].at(v) for v in at]))
            used += at
    return (stats.estimate(per_seed) if len(per_seed) >= 2 else None), sorted(used)


def method_family(method: str, scale: str | None) -> tuple | None:
    """The family key of a claim method (`reference.METHODS`) at `scale`; None for SFT and the
    annealed methods."""
    loss, beta, options = reference.METHODS[method]
    if "beta_end" in options:
        return None
    return family_key({"loss": loss, "beta": beta, "beta_end": None, "scale": scale, **options})


def claims_at(view: str, fams: dict[tuple, Family], scale, plan: Plan) -> list[dict]:
    """The claims at matched `view` ("KL" or "reward"), judged as the claims at β = 0.1 are
    (`reference.judge`, one family of cells). Parts become family comparisons, merged when two
    parts name the same pair; at matched reward the reward claims have no meaning and are left
    out."""
    x = VIEWS[view]
    cells = []
    for cid, text, kind, parts in reference.CLAIMS:
        if kind == "reward" and view == "reward":
            continue
        pairs = []
        for a, rel, b in parts:
            fa, fb = method_family(a, scale), method_family(b, scale)
            if fa is None or fb is None or fa == fb or (fa, rel, fb) in pairs:
                continue
            pairs.append((fa, rel, fb))
        if not pairs:
            continue
        for m in catalogue.DIVERSITY if kind == "diversity" else catalogue.REWARD:
            found = []
            for fa, rel, fb in pairs:
                if fa in fams and fb in fams:
                    d, _ = curve_difference(fams[fa], fams[fb], x, m.key, m.sign)
                else:
                    d = None
                la = fams[fa].label if fa in fams else fa[1]
                lb = fams[fb].label if fb in fams else fb[1]
                found.append(reference.Part(la, rel, lb, d))
            if all(q.estimate is None for q in found):
                continue
            cell = dict(claim=cid, text=text, column=m.column, key=m.key, metric=m.header)
            cells.append(cell | dict(parts=found))
    return reference.judge(cells, plan)


def level4_at(view: str, fams: dict[tuple, Family], scale, plan: Plan) -> list[dict]:
    """Level 4 at matched `view`: every level-4 family against each of :data:`LEVEL4_AGAINST`,
    "more diverse" on every diversity metric (and, at matched KL, "higher reward"), one part per
    cell, judged as one family of cells (`reference.judge`: Holm across all of them). The
    question of issue 20: which buys diversity at equal reward (the "reward" view)."""
    x = VIEWS[view]
    metrics = list(catalogue.DIVERSITY) + (list(catalogue.REWARD) if view == "KL" else [])
    cells = []
    for fam in sorted(fams.values(), key=lambda f: f.label):
        if fam.level != 4:
            continue
        for loss, options in LEVEL4_AGAINST:
            base = fams.get((scale, loss, options))
            if base is None:
                continue
            for m in metrics:
                d, _ = curve_difference(fam, base, x, m.key, m.sign)
                what = "more diverse" if m in catalogue.DIVERSITY else "higher reward"
                text = f"{fam.label} {what} than {base.label}"
                part = reference.Part(fam.label, ">", base.label, d)
                cell = dict(claim=LEVEL4, text=text, column=m.column, key=m.key, metric=m.header)
                cells.append(cell | dict(parts=[part]))
    return reference.judge(cells, plan)


def series(
    fams: dict[tuple, Family], sft: dict[str | None, dict[int, dict]], diversity: str
) -> dict[int | None, list[tuple[str, list[frontiers.Points], bool]]]:
    """What `figures.frontier_figure` draws: level → [(family label, [reward points, `diversity`
    points], False)] vs KL, families that ran at two β or more, then ("SFT", its runs: one point
    per seed, True: the starting point, drawn but no curve) in every level that has one."""
    out: dict[int | None, list] = {}
    several = len({k[0] for k in fams}) > 1
    for fam in sorted(fams.values(), key=lambda f: (str(f.scale), f.label)):
        rows = [points(fam, KL, y) for y in (REWARD, diversity)]
        if any(rows):
            label = f"{fam.label} ({fam.scale})" if several else fam.label
            out.setdefault(fam.level, []).append((label, rows, False))
    for scale, runs in sft.items():
        rows = [
            {
                s: (np.array([m[KL]]), np.array([m[y]]))
                for s, m in runs.items()
                if KL in m and y in m
            }
            for y in (REWARD, diversity)
        ]
        for entries in out.values():
            entries.append((f"SFT ({scale})" if several else "SFT", rows, True))
    return out


def has_frontier(fams: dict[tuple, Family]) -> bool:
    """Whether some family ran at two β or more in some seed."""
    return any(len(bs) >= 2 for f in fams.values() for bs in f.points.values())


def views(fams: dict[tuple, Family], plan: Plan) -> dict[str | None, dict[str, list[dict]]]:
    """scale → view ("KL", "reward") → the claims judged at matched KL / reward
    (:func:`claims_at`), then level 4's (:func:`level4_at`, a family of cells of its own)."""
    out = {}
    for scale in sorted({k[0] for k in fams}, key=str):
        mine = {k: f for k, f in fams.items() if k[0] == scale}
        out[scale] = {
            v: claims_at(v, mine, scale, plan) + level4_at(v, mine, scale, plan) for v in VIEWS
        }
    return out


def section(
    fams: dict[tuple, Family],
    judged: dict[str | None, dict[str, list[dict]]],
    primary: catalogue.Metric,
) -> str:
    """Markdown: each family against DPO (`sigmoid`) at matched KL and at matched reward, with
    the Holm-adjusted p of the `primary` diversity metric (the plan's), then the claims in both
    views (`judged`, :func:`views`; primary metrics)."""
    md = []
    for scale in sorted({k[0] for k in fams}, key=str):
        mine = {k: f for k, f in fams.items() if k[0] == scale}
        base = mine.get((scale, "sigmoid", ()))
        if base is None:
            continue
        md += [f"## At matched KL and matched reward (scale `{scale}`)", "", INTRO, ""]
        md += _against(base, mine, primary)
        for view, rows in judged.get(scale, {}).items():
            md += _claims(view, rows)
    return "\n".join(md)


INTRO = (
    "Each loss at every β it ran is a curve per seed (isotonic in KL, or in the standardised"
    " reward), through its runs only (SFT is not a point of any curve: no loss's runs reach it)."
    " A − DPO is, per seed, the curves' difference averaged over the quartiles of the range both"
    " reach in that seed, then the t interval over the seeds where they overlap (k/n: seeds"
    " agreeing in sign / seeds compared); no level outside a curve's points is used (no"
    " extrapolation). `range`: the lowest and highest level used. `—`: the curves overlap in"
    " fewer than two seeds. p (Holm): the two-sided t test of the difference in the plan's"
    " primary diversity metric, Holm over every loss against DPO in both views (the family"
    " behind any such statement outside the claims). Self-BLEU: sign flipped, > 0 = more"
    " diverse."
)


def _against(base: Family, fams: dict[tuple, Family], primary: catalogue.Metric) -> list[str]:
    adjusted = _holm_against(base, fams, primary)
    p_header = f"{primary.header} p (Holm)"
    md = []
    for view, x in VIEWS.items():
        md += _against_table(
            base, fams, view, x, list(catalogue.DIVERSITY), "", (p_header, adjusted)
        )
        md += _against_table(
            base, fams, view, x, list(DESCRIBED), ", described metrics (not judged)", None
        )
    return md


def _holm_against(
    base: Family, fams: dict[tuple, Family], primary: catalogue.Metric
) -> dict[tuple, float]:
    """(view, family key) → Holm-adjusted p (two-sided t over seeds) of family − DPO in the
    `primary` metric, the family of tests being every family against DPO in both views: the
    correction behind any "X differs from DPO at matched KL / reward" said outside the claims."""
    found = {}
    for view, x in VIEWS.items():
        for key, fam in fams.items():
            if fam is base:
                continue
            d, _ = curve_difference(fam, base, x, primary.key, primary.sign)
            if d is not None and len(d.units) >= 2:
                found[view, key] = stats.part_test(d, ">")[0]
    return dict(zip(found, stats.holm(list(found.values())), strict=True)) if found else {}


def _against_table(
    base, fams, view: str, x: str, cols: list, title: str, adjusted: tuple[str, dict] | None
) -> list[str]:
    """One table of :func:`_against`: each family − DPO in those of `cols` some run has, at
    matched `view`, and, when `adjusted` = (header, (view, family key) → p) is given, the
    Holm-adjusted p of its primary metric; [] when no run has any of `cols`."""
    runs = [m for f in fams.values() for bs in f.points.values() for m in bs.values()]
    cols = [m for m in cols if any(m.key in r for r in runs)]
    if not cols:
        return []
    extra = [adjusted[0]] if adjusted else []
    lines = head(["loss", "level", "range", *[m.header for m in cols], *extra])
    for key, fam in sorted(fams.items(), key=lambda kf: (kf[1].level or 99, kf[1].label)):
        if fam is base:
            continue
        cells, span = [], "—"
        for m in cols:
            d, at = curve_difference(fam, base, x, m.key, m.sign)
            cells.append(fmt_difference(d, m.decimals))
            span = f"{at[0]:.2f}–{at[-1]:.2f}" if at else span
        if adjusted:
            p = adjusted[1].get((view, key))
            cells.append("—" if p is None else f"{p:.3f}")
        lvl = "—" if fam.level is None else str(fam.level)
        lines.append(row([fam.label, lvl, span, *cells]))
    return [f"### vs DPO at matched {view}{title}", "", *lines, ""]


def _claims(view: str, rows: list[dict]) -> list[str]:
    md = []
    for title, mine in (
        (f"The claims at matched {view}", [r for r in rows if r["claim"] != LEVEL4]),
        (f"Level 4 vs DPO and the f-divergences at matched {view}",
         [r for r in rows if r["claim"] == LEVEL4]),
    ):  # fmt: skip
        lines = head(["claim", "statement", "metric", "verdict", "parts"])
        for r in mine:
            if not r["primary"]:
                continue
            parts = "; ".join(f"{q.a} {q.rel} {q.b}" for q in r["parts"])
            lines.append(row([r["claim"], r["text"], r["metric"], fmt_cell(r), parts]))
        if len(lines) > 2:
            md += [f"### {title} (primary metrics)", "", *lines, ""]
    return md
