"""Compare DVC experiments: Markdown tables and the study's figures, from `dvc exp show`.

Replicates of a configuration (`prefdiv grid --seeds`, names `<grid name>-s<seed>[-t<t>]`) are
grouped: every value is the mean over replicates with a seed-aware 95 % interval, and with the
runs' per-prompt tables (`plots/eval_prompts.csv` of each experiment's commit) the report adds
paired differences vs SFT and DPO, the reference study's claims with verdicts, rank
probabilities and the Spearman interval vs the reference (src/prefdiv/stats.py,
docs/statistics.md).

Figures (matplotlib, PNG):
- the reward–entropy plane, one point per configuration with 95 % CI bars and its replicates as
  faint points, one panel per method level of the grid file (the reference study's levels 1/2/3
  in `grid.yaml`), and the quadratic trend the reference study fits over the f-divergence family
  (reverse KL = `sigmoid`, `jsd`, `alpha`, `fkl`) in the level-2 panel;
- the reward–KL frontier (the DPO paper's Fig. 2 axes): reward vs KL(π‖π_ref).

Levels come from the grid file only (`grid.Levels`, by configuration name): an experiment whose
configuration is in no level of it (an ad hoc `dvc exp run -S loss=…`) has no level. Tables
write its level `—` and list it after the levels; the reward–entropy figure draws it in a last
panel, "no level", and the reward–KL figure in black.

At paper scale (the experiments' `scale` is `paper`) the reward–entropy panels also draw the
reference study's published points (`reference/reference_results.csv`) beside ours; their values
are comparable only there (same models, prompts and sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prefdiv import stats  # noqa: E402

if TYPE_CHECKING:
    from prefdiv.grid import Levels  # grid imports this module

EVAL = "metrics/eval.json"
PROMPTS = "plots/eval_prompts.csv"  # per-prompt values, committed with each experiment
F_FAMILY = ("sigmoid", "jsd", "alpha", "fkl")
COLUMNS = [  # (metric, header, decimals)
    ("reward/mean", "reward", 3),
    ("judge/vader_compound", "VADER judge", 3),
    ("kl/sequence", "KL(π‖π_ref)", 2),
    ("diversity/entropy_unigram", "unigram entropy", 3),
    ("diversity/entropy_unigram_fair", "length-fair entropy", 3),
    ("diversity/predictive_entropy", "predictive entropy", 3),
    ("diversity/distinct_1", "distinct-1", 3),
    ("diversity/distinct_2", "distinct-2", 3),
    ("diversity/distinct_3", "distinct-3", 3),
    ("diversity/ead", "EAD", 3),
    ("diversity/self_bleu4", "self-BLEU-4 ↓", 1),
    ("diversity/embedding", "embedding div.", 3),
]


NO_LEVEL = "no level (not in a level of the grid)"  # the figure panel of such experiments


def config_level(c: stats.Config, levels: Levels) -> int | None:
    """Level of a configuration in the grid: that of its first run (by name) whose configuration
    name the grid places in a level; None if there is none."""
    found = (levels.of(name) for name in sorted(c.runs.values()))
    return next((lvl for lvl in found if lvl is not None), None)


def _rank(lvl: int | None) -> tuple:
    """Sort key of a level: ascending, no level last."""
    return (lvl is None, lvl or 0)


def describe(p: dict) -> tuple[str, str]:
    """(β, options) of an experiment, as written in tables."""
    if p["loss"] == "sft":
        return "—", ""
    beta = f"{p['beta']}→{p['beta_end']}" if p.get("beta_end") is not None else str(p["beta"])
    opts = {"alpha": f"α={p.get('alpha')}", "cdpo": f"ε={p.get('label_smoothing')}"}
    return beta, opts.get(p["loss"], "")


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


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(cells) -> list[str]:
    return [_row(cells), "|" + "---|" * len(cells)]


def _order(item: tuple[str, dict]) -> tuple:
    return _rank(item[1].get("level")), item[0]


def _present(exps: dict[str, dict], columns=COLUMNS) -> list[tuple]:
    """The columns some experiment has (the length-fair entropy only in newer runs)."""
    return [c for c in columns if any(c[0] in e["metrics"][EVAL] for e in exps.values())]


def seeds(e: dict) -> str:
    """Replicates of a pooled configuration: `1 seed`, `3 seeds`, `3 seeds × 2 train`."""
    c = e.get("config")
    if c is None or len(c.runs) == 1:
        return "1 seed"
    n = len(c.seeds)
    return f"{n} seed{'s' * (n > 1)}" + (f" × {c.n_train} train" if c.n_train > 1 else "")


def markdown(exps: dict[str, dict]) -> str:
    """Table: configuration, level (`—` for none), loss, β, options, seeds, every headline
    metric as mean [low, high] of its 95 % CI (:func:`cell`)."""
    cols = _present(exps)
    lines = _head(
        ["experiment", "level", "loss", "β", "options", "seeds", *[h for _, h, _ in cols]]
    )
    for name, e in sorted(exps.items(), key=_order):
        p, m = e["params"], e["metrics"][EVAL]
        cells = [cell(m, k, d) for k, _, d in cols]
        lvl = "—" if e.get("level") is None else str(e["level"])
        lines.append(_row([name, lvl, p["loss"], *describe(p), seeds(e), *cells]))
    return "\n".join(lines) + "\n"


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


def pooled(
    configs: dict[tuple, stats.Config], exps: dict[str, dict], levels: Levels | None = None
) -> dict[str, dict]:
    """Per configuration label, an experiment-like record: every metric is the mean over its
    replicates with the seed-aware 95 % interval (`stats.estimate`) as `<metric>_ci_low/high`;
    a single run keeps its own values and prompts-only CI. Also `config` (`stats.Config`),
    `runs` (replicate → its metrics), `estimates` (metric → `stats.Estimate`) and `level`
    (:func:`config_level` in `levels`; None without)."""
    out = {}
    for c in configs.values():
        runs = {rep: exps[name]["metrics"][EVAL] for rep, name in c.runs.items()}
        first = next(iter(runs.values()))
        metrics, estimates = {}, {}
        for key in _numeric_keys(runs):
            ci = _nan(first.get(f"{key}_ci_low")), _nan(first.get(f"{key}_ci_high"))
            e = estimates[key] = stats.estimate({r: m[key] for r, m in runs.items()}, ci)
            metrics[key] = e.mean
            if np.isfinite([e.low, e.high]).all():
                metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = e.low, e.high
        out[c.label] = dict(
            state="success",
            params=c.params,
            metrics={EVAL: metrics},
            config=c,
            runs=runs,
            estimates=estimates,
            level=None if levels is None else config_level(c, levels),
        )
    return out


def sd_table(pool: dict[str, dict]) -> str:
    """Between-seed SD of every headline metric, for configurations with replicates."""
    multi = {n: e for n, e in pool.items() if len(e["config"].runs) > 1}
    if not multi:
        return ""
    cols = _present(multi)
    lines = _head(["configuration", "seeds", *[h for _, h, _ in cols]])
    for name, e in sorted(multi.items(), key=_order):
        est = e["estimates"]
        cells = [f"{est[k].sd:.{d}f}" if k in est else "—" for k, _, d in cols]
        lines.append(_row([name, seeds(e), *cells]))
    intro = (
        "SD of the per-seed means (a seed's train-seed runs averaged; with one seed: SD over its"
        " train-seed runs). It includes the prompt sampling of each seed's own test prompts."
    )
    return "\n".join(["## Between-seed SD", "", intro, "", *lines, ""])


def _point(ax, e: dict, x: str, y: str, label: str, **kw) -> None:
    """A configuration's mean with its CI bars; its replicates as faint points."""
    m = e["metrics"][EVAL]
    xerr = [[m[x] - m[f"{x}_ci_low"]], [m[f"{x}_ci_high"] - m[x]]] if f"{x}_ci_low" in m else None
    yerr = [[m[y] - m[f"{y}_ci_low"]], [m[f"{y}_ci_high"] - m[y]]] if f"{y}_ci_low" in m else None
    bars = ax.errorbar(m[x], m[y], xerr=xerr, yerr=yerr, fmt="o", capsize=3, **kw)
    runs = [r for r in e.get("runs", {}).values() if x in r and y in r]
    if len(runs) > 1:
        ax.scatter(
            [r[x] for r in runs], [r[y] for r in runs], s=10, alpha=0.3, color=bars[0].get_color()
        )
    ax.annotate(label, (m[x], m[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def quadratic_trend(exps: dict[str, dict], x: str, y: str) -> np.ndarray | None:
    """Coefficients of y = a·x² + b·x + c over the f-divergence family (≥ 3 points), else None.

    The family: losses of `F_FAMILY` at levels 1–2 (`level` of each record), so annealed DPO
    (level 3) and experiments without a level are left out."""
    pts = [
        (e["metrics"][EVAL][x], e["metrics"][EVAL][y])
        for e in exps.values()
        if e["params"]["loss"] in F_FAMILY and e.get("level") in (1, 2)
    ]
    if len(pts) < 3:
        return None
    xs, ys = np.array(pts).T
    return np.polyfit(xs, ys, 2)


def reference_points(
    reference: dict[tuple, dict], levels: Levels
) -> list[tuple[int | None, str, float, float]]:
    """(level, method, reward, entropy) of every configuration of the reference study; its level
    is that of the grid configuration with the same loss, β and options (`_exp_key`), None if
    no level of the grid has one."""
    return [
        (levels.by_settings.get(key), r["method"], float(r["reward_all"]), float(r["entropy_all"]))
        for key, r in reference.items()
    ]


def is_paper_scale(exps: dict[str, dict]) -> bool:
    return bool(exps) and all(e["params"].get("scale") == "paper" for e in exps.values())


def panels(
    exps: dict[str, dict], levels: Levels, points: Sequence[tuple] = ()
) -> dict[int | None, tuple[str, list[str]]]:
    """The reward–entropy figure's panels: level → (title, the records drawn there in colour).

    One panel per level of `levels`, `level <n>: <title>`, with the records (`exps`, each with
    its `level`) of that level; then, if any record or reference point (`points`,
    :func:`reference_points`) has no level, the panel `None`, :data:`NO_LEVEL`, with them.
    """
    titles: dict[int | None, str] = {n: f"level {n}: {t}" for n, t in levels.titles.items()}
    unplaced = [e.get("level") for e in exps.values()] + [lvl for lvl, *_ in points]
    if not titles or None in unplaced:
        titles[None] = NO_LEVEL
    return {
        lvl: (title, [n for n, e in exps.items() if e.get("level") == lvl])
        for lvl, title in titles.items()
    }


def reward_entropy_figure(
    exps: dict[str, dict],
    path: Path,
    levels: Levels,
    reference: dict[tuple, dict] | None = None,
) -> None:
    """The :func:`panels` side by side; level 1's SFT and DPO (`sigmoid`) in grey in every other
    panel; with `reference`, the reference study's points as hollow diamonds."""
    x, y = "diversity/entropy_unigram", "reward/mean"
    points = reference_points(reference or {}, levels)
    drawn = panels(exps, levels, points)
    fig, axes = plt.subplots(
        1, len(drawn), figsize=(5 * len(drawn), 4.5), sharex=True, sharey=True, squeeze=False
    )
    ax_of = dict(zip(drawn, axes[0], strict=True))
    for lvl, ax in ax_of.items():
        title, members = drawn[lvl]
        for name, e in exps.items():
            if name in members:
                _point(ax, e, x, y, name)
            elif e["params"]["loss"] in ("sft", "sigmoid") and e.get("level") == 1:
                _point(ax, e, x, y, name, color="lightgray")  # baselines in every panel
        for lvl_ref, method, reward, entropy in points:
            if lvl_ref == lvl:
                ax.plot(entropy, reward, "D", mfc="none", color="black")
                ax.annotate(
                    f"ref: {method}",
                    (entropy, reward),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=6,
                    color="dimgray",
                )
        ax.set_title(title)
        ax.set_xlabel("unigram entropy (nats) → more diverse")
        ax.grid(alpha=0.3)
    coef = quadratic_trend(exps, x, y)
    if coef is not None and 2 in ax_of:
        xs = np.linspace(*ax_of[2].get_xlim(), 100)
        ax_of[2].plot(xs, np.polyval(coef, xs), "--", color="tab:red", label="quadratic fit")
        ax_of[2].legend(fontsize=8)
    axes[0][0].set_ylabel("mean reward (positive logit)")
    fig.suptitle(
        "Reward vs diversity on held-out prompts: mean over replicates, 95 % CI (t over seeds;"
        " prompts bootstrap for 1 seed); faint: replicates"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reward_kl_figure(exps: dict[str, dict], path: Path) -> None:
    """Reward vs KL, one point per record, coloured by its `level` (black: none)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in exps.items():
        lvl = e.get("level")
        _point(
            ax, e, "kl/sequence", "reward/mean", name, color="black" if lvl is None else f"C{lvl}"
        )
    ax.set_xlabel("KL(π‖π_ref), nats per response (sequence-level estimate)")
    ax.set_ylabel("mean reward (positive logit)")
    ax.set_title("Reward–KL frontier (colour = level)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def config_key(loss, beta, option: dict) -> tuple:
    """Identity of a configuration: loss, β (None for sft) and its options, as floats."""
    beta = None if loss == "sft" or beta is None else round(float(beta), 6)
    return loss, beta, tuple(sorted((k, round(float(v), 6)) for k, v in option.items()))


def _exp_key(p: dict) -> tuple:
    option = {}
    if p["loss"] == "alpha":
        option["alpha"] = p["alpha"]
    if p["loss"] == "cdpo":
        option["label_smoothing"] = p["label_smoothing"]
    if p.get("beta_end") is not None and p["loss"] != "sft":
        option["beta_end"] = p["beta_end"]
    return config_key(p["loss"], p["beta"], option)


def read_reference(path: str | Path) -> dict[tuple, dict]:
    """The reference study's results (`reference/reference_results.csv`), by configuration."""
    import csv

    out = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            option = dict(kv.split("=") for kv in row["option"].split(";") if kv)
            out[config_key(row["loss"], row["beta"] or None, option)] = row
    return out


def orderings(
    exps: dict[str, dict],
    reference: dict[tuple, dict],
    runs: dict[str, dict[tuple, pd.DataFrame]] | None = None,
) -> str:
    """Markdown: our and the reference study's reward and entropy with ranks, and Spearman ρ.

    Absolute values differ across scales; whether the methods come in the same *order* is the
    question this table answers. With `runs` (per-prompt tables by label), ρ gets a 95 %
    two-level bootstrap interval over seeds and prompts (`stats.spearman_interval`).
    """
    from scipy.stats import spearmanr

    rows = [
        (name, reference[_exp_key(e["params"])], e["metrics"][EVAL])
        for name, e in sorted(exps.items())
        if _exp_key(e["params"]) in reference
    ]
    if len(rows) < 3:
        return ""
    cols = {
        "reward": ("reward/mean", "reward_all", "reward_mean"),
        "entropy": ("diversity/entropy_unigram", "entropy_all", "entropy"),
    }
    ranks, lines = {}, []
    for what, (ours, theirs, col) in cols.items():
        a = np.array([m[ours] for _, _, m in rows])
        b = np.array([float(r[theirs]) for _, r, _ in rows])
        ranks[what] = (np.argsort(np.argsort(-a)) + 1, np.argsort(np.argsort(-b)) + 1)
        rho, pval = spearmanr(a, b)
        line = f"- {what}: Spearman ρ = {rho:.2f} (p = {pval:.3f}, {len(rows)} methods)"
        lines.append(line + _spearman_interval(rows, runs or {}, theirs, col))
    table = [
        "| experiment | reference method | reward: ours (rank) | reference (rank) "
        "| entropy: ours (rank) | reference (rank) |",
        "|---|---|---|---|---|---|",
    ]
    for i, (name, ref, m) in enumerate(rows):
        (ra, rb), (ea, eb) = ranks["reward"], ranks["entropy"]
        table.append(
            f"| {name} | {ref['method']} | {m['reward/mean']:.3f} ({ra[i]}) "
            f"| {float(ref['reward_all']):.3f} ({rb[i]}) | {m['diversity/entropy_unigram']:.3f} "
            f"({ea[i]}) | {float(ref['entropy_all']):.3f} ({eb[i]}) |"
        )
    return "\n".join(["## Orderings vs the reference study", "", *lines, "", *table, ""])


def _spearman_interval(rows, runs, theirs: str, col: str) -> str:
    tables = {name: stats.column(runs.get(name), col) for name, _, _ in rows}
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


# --- paired statistics on the per-prompt tables ---------------------------------------------------

PAIRED = {**stats.REWARD, "kl": ("kl/sequence", "KL(π‖π_ref)", 1), **stats.DIVERSITY}
DECIMALS = {key: d for key, _, d in COLUMNS}


def prompt_runs(
    configs: dict[tuple, stats.Config], prompts: dict[str, pd.DataFrame], levels: Levels
) -> dict:
    """Per configuration label (level order, no level last), its runs' per-prompt tables,
    index prompt_id."""
    out = {}
    for c in sorted(configs.values(), key=lambda c: (_rank(config_level(c, levels)), c.label)):
        runs = {r: prompts[n].set_index("prompt_id") for r, n in c.runs.items() if n in prompts}
        if runs:
            out[c.label] = runs
    return out


def _diff(d: stats.Estimate | None, decimals: int) -> str:
    """`+Δ [low, high] k/S`: k of S seeds agree in sign with Δ."""
    if d is None:
        return "—"
    tail = {"seeds": f"{d.agree}/{len(d.units)}", "train seeds": f"{d.agree}/{len(d.units)} t"}
    return (
        f"{d.mean:+.{decimals}f} [{d.low:+.{decimals}f}, {d.high:+.{decimals}f}] "
        f"{tail.get(d.unit, '1 seed')}"
    )


def _columns(runs: dict) -> dict:
    return {c: spec for c, spec in PAIRED.items() if any(stats.column(r, c) for r in runs.values())}


def difference_table(runs: dict, baseline: str | None, what: str) -> str:
    """Every configuration minus `baseline` (a label), paired per prompt within seeds."""
    if baseline not in runs:
        return f"No {what} run with per-prompt tables: no differences against it.\n"
    cols = _columns(runs)
    lines = _head(["configuration", *[h for _, h, _ in cols.values()]])
    for name, r in runs.items():
        if name == baseline:
            continue
        cells = [
            _diff(
                stats.paired_difference(stats.column(r, c), stats.column(runs[baseline], c)),
                DECIMALS.get(metric, 3),
            )
            for c, (metric, _, _) in cols.items()
        ]
        lines.append(_row([name, *cells]))
    return "\n".join([f"### vs {what} (`{baseline}`)", "", *lines, ""])


def variance_table(runs: dict) -> str:
    """Shares of a run mean's variance, for configurations with seeds × train seeds."""
    cols = _columns(runs)
    lines = []
    for name, r in runs.items():
        shares = {c: stats.variance_components(stats.column(r, c)) for c in cols}
        if not any(shares.values()):
            continue
        # no variance at all (SFT's KL is 0 in every run): no shares to give
        cells = [
            "/".join(f"{100 * v:.0f}" for v in s.values()) if s and np.isfinite(sum(s.values()))
            else "—"
            for s in shares.values()
        ]  # fmt: skip
        lines.append(_row([name, *cells]))
    if not lines:
        return ""
    intro = (
        "Share (%) of one run's mean variance from the upstream `seed` / the `train_seed` within"
        " it / the residual prompt sampling (nested random effects, docs/statistics.md)."
    )
    head = _head(["configuration", *[h for _, h, _ in cols.values()]])
    return "\n".join(["## Variance components", "", intro, "", *head, *lines, ""])


MARK = {"holds": "✓", "reversed": "✗", "inconclusive": "?", "missing": "—"}
CLAIMS_INTRO = (
    "Each claim is split into pairwise parts A > B (A more diverse, or higher reward), each a"
    " paired difference A − B with its 95 % interval, oriented so that > 0 = more diverse"
    " (self-BLEU's sign flipped). A part holds when its interval lies above 0 and is reversed"
    " when it lies below; A ≈ B holds when it lies within ±"
    f"{stats.CLOSE:.0%} of |SFT − DPO| and is reversed when it lies wholly outside. A claim"
    " holds when all its parts hold, is reversed when any part is reversed, else inconclusive."
    " Counts: parts holding / reversed / inconclusive / missing (a method not run). Parts: ✓"
    " holds, ✗ reversed, ? inconclusive, — missing."
)


def claims_section(runs_by_method: dict) -> str:
    """The reference study's claims: a verdict per claim and metric, then every part."""
    rows = stats.claims(runs_by_method)
    if not rows:
        return ""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    ids = list(dict.fromkeys(r["claim"] for r in rows))
    lines = _head(["claim", "statement", *metrics])
    for cid in ids:
        mine = {r["metric"]: r for r in rows if r["claim"] == cid}
        cells = [_verdict(mine[m]) if m in mine else "" for m in metrics]
        lines.append(_row([cid, next(iter(mine.values()))["text"], *cells]))
    md = ["## Claims of the reference study", "", CLAIMS_INTRO, "", *lines, ""]
    for cid in ids:
        mine = [r for r in rows if r["claim"] == cid]
        md += [f"### Claim {cid}: parts", "", *_head(["part", *[r["metric"] for r in mine]])]
        for i, (a, rel, b, *_) in enumerate(mine[0]["parts"]):
            cells = [_part(r["parts"][i], DECIMALS[r["key"]]) for r in mine]
            md.append(_row([f"{a} {rel} {b}", *cells]))
        md.append("")
    return "\n".join(md)


def _part(part: tuple, decimals: int) -> str:
    *_, d, verdict = part
    return f"{_diff(d, decimals)} {MARK[verdict]}"


def _verdict(row: dict) -> str:
    """`**holds** 3/0/1/0`: the verdict, then its parts holding / reversed / inconclusive /
    missing."""
    counts = [sum(v == k for *_, v in row["parts"]) for k in stats.VERDICTS]
    return f"**{row['verdict']}** {'/'.join(map(str, counts))}"


def rank_section(runs: dict) -> str:
    """Per diversity metric, P(row more diverse than column) and each method's rank."""
    md = []
    for col, (_, header, sign) in stats.DIVERSITY.items():
        tables = {n: t for n, r in runs.items() if (t := stats.column(r, col))}
        found = stats.rank_probabilities(tables, sign) if len(tables) > 1 else None
        if found is None:
            continue
        p, ranks, used = found
        order = list(ranks.sort_values("mean rank").index)
        lines = _head(["#", "configuration", "rank [95 %]", *map(str, range(1, len(order) + 1))])
        for i, n in enumerate(order, 1):
            rank = f"{ranks.loc[n, 'mean rank']:.1f} [{ranks.loc[n, 'low']:.0f}, "
            rank += f"{ranks.loc[n, 'high']:.0f}]"
            cells = ["" if a == n else f"{100 * p.loc[n, a]:.0f}" for a in order]
            lines.append(_row([str(i), n, rank, *cells]))
        seeds_used = ", ".join(map(str, used))
        md += [f"### {header} (seeds {seeds_used})", "", *lines, ""]
    if not md:
        return ""
    intro = (
        "P(row more diverse than column), %, from the two-level bootstrap (seeds, then prompts"
        " within each drawn seed, paired across methods); rank 1 = most diverse. Only seeds every"
        " method ran are used. With few seeds these probabilities are overconfident"
        " (docs/statistics.md)."
    )
    return "\n".join(["## Rank probabilities", "", intro, "", *md])


def paired_sections(
    configs: dict[tuple, stats.Config], prompts: dict[str, pd.DataFrame], levels: Levels
) -> str:
    """Differences vs SFT and DPO, variance components, claims and ranks, per scale."""
    md = []
    scales = sorted({key[0] for key in configs}, key=str)
    names = stats.method_keys()
    for scale in scales:
        part = {k: c for k, c in configs.items() if k[0] == scale}
        runs = prompt_runs(part, prompts, levels)
        methods = {names[k[1:]]: c.label for k, c in part.items() if k[1:] in names}
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
            claims_section(by_method),
            rank_section(runs),
        ]
    return "\n".join(md)


INTRO = (
    "Generated by `prefdiv compare` from `dvc exp show --json` and each experiment's"
    f" `{PROMPTS}`. One row per configuration: the mean over its replicates of each run's"
    " mean over test prompts with its 95 % interval [low, high]. With ≥ 2 seeds the interval is a t"
    " interval on the seed means (S − 1 degrees of freedom; a seed's train-seed runs averaged"
    ' first), so it carries seed-to-seed variance; a single run ("1 seed") keeps its'
    " bootstrap interval over test prompts, which does not (docs/statistics.md)."
    " Self-BLEU: lower = more diverse."
)


def report(
    exps: dict[str, dict],
    out_dir: str | Path,
    levels: Levels,
    reference: str | Path | None = None,
    prompts: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write `compare.md` and its figures into `out_dir`; return the Markdown path.

    Replicates are grouped by configuration, and configurations by their level in `levels`
    (`grid.load_levels` of the grid file). With `reference` (the reference study's CSV), add
    the table of method orderings; with `prompts` (experiment name → its per-prompt table), the
    paired differences, claims, rank probabilities and Spearman intervals.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    usable = {n: e for n, e in exps.items() if e["state"] != "failed" and EVAL in e["metrics"]}
    configs, duplicates = stats.group(usable)
    failed = {n: e for n, e in exps.items() if n not in usable}
    pool = pooled(configs, usable, levels)
    ref = read_reference(reference) if reference and Path(reference).exists() else None
    drawn = ref if is_paper_scale(pool) else None  # comparable at paper scale only
    reward_entropy_figure(pool, out / "reward_entropy.png", levels, drawn)
    reward_kl_figure(pool, out / "reward_kl.png")
    notes = stats.replicate_notes(configs, failed) + duplicates
    md = [
        "# Experiment comparison",
        "",
        INTRO,
        "",
        *(["Missing or failed replicates:", "", *[f"- {n}" for n in notes], ""] if notes else []),
        markdown(pool),
        sd_table(pool),
        *(
            ["Hollow diamonds: the reference study's published points (paper scale).\n"]
            if drawn
            else []
        ),
        "![reward vs entropy](reward_entropy.png)",
        "",
        "![reward vs KL](reward_kl.png)",
        "",
    ]
    if prompts is None:
        md.append("No per-prompt tables given: no paired differences, claims or ranks.\n")
    else:
        if no_table := ", ".join(sorted(set(usable) - set(prompts))):
            md.append(f"Without `{PROMPTS}` (left out of the paired statistics): {no_table}\n")
        md.append(paired_sections(configs, prompts, levels))
    if ref:
        md.append(orderings(pool, ref, prompt_runs(configs, prompts or {}, levels)))
    skipped = sorted(failed)
    if skipped:
        md.append(f"Skipped (failed or without `{EVAL}`): {', '.join(skipped)}\n")
    path = out / "compare.md"
    path.write_text("\n".join(md))
    return path
