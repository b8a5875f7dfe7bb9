"""Compare DVC experiments: a Markdown table and the study's figures, from `dvc exp show`.

Figures (matplotlib, PNG):
- the reward–entropy plane, one point per experiment with 95 % CI bars, levels 1/2/3 of the
  reference study as separate panels, and the quadratic trend the reference study fits over the
  f-divergence family (reverse KL = `sigmoid`, `jsd`, `alpha`, `fkl`) in the level-2 panel;
- the reward–KL frontier (the DPO paper's Fig. 2 axes): reward vs KL(π‖π_ref).

At paper scale (the experiments' `scale` is `paper`) the reward–entropy panels also draw the
reference study's published points (`reference/reference_results.csv`) beside ours; their values
are comparable only there (same models, prompts and sampling).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

EVAL = "metrics/eval.json"
F_FAMILY = ("sigmoid", "jsd", "alpha", "fkl")
COLUMNS = [  # (metric, header, decimals)
    ("reward/mean", "reward", 3),
    ("judge/vader_compound", "VADER judge", 3),
    ("kl/sequence", "KL(π‖π_ref)", 2),
    ("diversity/entropy_unigram", "unigram entropy", 3),
    ("diversity/predictive_entropy", "predictive entropy", 3),
    ("diversity/distinct_1", "distinct-1", 3),
    ("diversity/distinct_2", "distinct-2", 3),
    ("diversity/distinct_3", "distinct-3", 3),
    ("diversity/ead", "EAD", 3),
    ("diversity/self_bleu4", "self-BLEU-4 ↓", 1),
    ("diversity/embedding", "embedding div.", 3),
]


def level(p: dict) -> int:
    """The reference study's level of a configuration: 1 classics, 2 f-DPO, 3 IPO/cDPO/annealing."""
    if p.get("beta_end") is not None or p["loss"] in ("ipo", "cdpo"):
        return 3
    return 2 if p["loss"] in ("fkl", "jsd", "alpha") else 1


def describe(p: dict) -> tuple[str, str]:
    """(β, options) of an experiment, as written in tables."""
    if p["loss"] == "sft":
        return "—", ""
    beta = f"{p['beta']}→{p['beta_end']}" if p.get("beta_end") is not None else str(p["beta"])
    opts = {"alpha": f"α={p.get('alpha')}", "cdpo": f"ε={p.get('label_smoothing')}"}
    return beta, opts.get(p["loss"], "")


def _cell(m: dict, key: str, decimals: int) -> str:
    if key not in m:
        return "—"
    lo, hi = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if lo is None or hi is None:
        return f"{m[key]:.{decimals}f}"
    return f"{m[key]:.{decimals}f} ± {(hi - lo) / 2:.{decimals}f}"


def markdown(exps: dict[str, dict]) -> str:
    """Table: experiment, loss, β, options, every headline metric as mean ± half the 95 % CI."""
    head = ["experiment", "level", "loss", "β", "options", *[h for _, h, _ in COLUMNS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in sorted(exps.items(), key=lambda kv: (level(kv[1]["params"]), kv[0])):
        p, m = e["params"], e["metrics"][EVAL]
        beta, opts = describe(p)
        cells = [_cell(m, k, d) for k, _, d in COLUMNS]
        lines.append("| " + " | ".join([name, str(level(p)), p["loss"], beta, opts, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _point(ax, m, x, y, label, **kw):
    xerr = [[m[x] - m[f"{x}_ci_low"]], [m[f"{x}_ci_high"] - m[x]]] if f"{x}_ci_low" in m else None
    yerr = [[m[y] - m[f"{y}_ci_low"]], [m[f"{y}_ci_high"] - m[y]]] if f"{y}_ci_low" in m else None
    ax.errorbar(m[x], m[y], xerr=xerr, yerr=yerr, fmt="o", capsize=3, **kw)
    ax.annotate(label, (m[x], m[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def quadratic_trend(exps: dict[str, dict], x: str, y: str) -> np.ndarray | None:
    """Coefficients of y = a·x² + b·x + c over the f-divergence family (≥ 3 points), else None."""
    pts = [
        (e["metrics"][EVAL][x], e["metrics"][EVAL][y])
        for e in exps.values()
        if e["params"]["loss"] in F_FAMILY and level(e["params"]) in (1, 2)
    ]
    if len(pts) < 3:
        return None
    xs, ys = np.array(pts).T
    return np.polyfit(xs, ys, 2)


def reference_points(reference: dict[tuple, dict]) -> list[tuple[int, str, float, float]]:
    """(level, method, reward, entropy) of every configuration of the reference study."""
    out = []
    for (loss, _, option), row in reference.items():
        lvl = level({"loss": loss, "beta_end": dict(option).get("beta_end")})
        out.append((lvl, row["method"], float(row["reward_all"]), float(row["entropy_all"])))
    return out


def is_paper_scale(exps: dict[str, dict]) -> bool:
    return bool(exps) and all(e["params"].get("scale") == "paper" for e in exps.values())


def reward_entropy_figure(
    exps: dict[str, dict], path: Path, reference: dict[tuple, dict] | None = None
) -> None:
    """One panel per level; with `reference`, the reference study's points as hollow diamonds."""
    x, y = "diversity/entropy_unigram", "reward/mean"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True, sharey=True)
    titles = {
        1: "level 1: SFT, SLiC-HF, DPO",
        2: "level 2: f-DPO",
        3: "level 3: IPO, cDPO, β anneal",
    }
    for lvl, ax in zip((1, 2, 3), axes, strict=True):
        for name, e in exps.items():
            p, m = e["params"], e["metrics"][EVAL]
            if level(p) == lvl:
                _point(ax, m, x, y, name)
            elif p["loss"] in ("sft", "sigmoid") and level(p) == 1:  # baselines in every panel
                _point(ax, m, x, y, name, color="lightgray")
        for lvl_ref, method, reward, entropy in reference_points(reference or {}):
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
        ax.set_title(titles[lvl])
        ax.set_xlabel("unigram entropy (nats) → more diverse")
        ax.grid(alpha=0.3)
    coef = quadratic_trend(exps, x, y)
    if coef is not None:
        xs = np.linspace(*axes[1].get_xlim(), 100)
        axes[1].plot(xs, np.polyval(coef, xs), "--", color="tab:red", label="quadratic fit")
        axes[1].legend(fontsize=8)
    axes[0].set_ylabel("mean reward (positive logit)")
    fig.suptitle("Reward vs diversity on held-out prompts (mean, 95 % bootstrap CI over prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reward_kl_figure(exps: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in exps.items():
        _point(
            ax,
            e["metrics"][EVAL],
            "kl/sequence",
            "reward/mean",
            name,
            color=f"C{level(e['params'])}",
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


def orderings(exps: dict[str, dict], reference: dict[tuple, dict]) -> str:
    """Markdown: our and the reference study's reward and entropy with ranks, and Spearman ρ.

    Absolute values differ across scales; whether the methods come in the same *order* is the
    question this table answers.
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
        "reward": ("reward/mean", "reward_all"),
        "entropy": ("diversity/entropy_unigram", "entropy_all"),
    }
    ranks, lines = {}, []
    for what, (ours, theirs) in cols.items():
        a = np.array([m[ours] for _, _, m in rows])
        b = np.array([float(r[theirs]) for _, r, _ in rows])
        ranks[what] = (np.argsort(np.argsort(-a)) + 1, np.argsort(np.argsort(-b)) + 1)
        rho, pval = spearmanr(a, b)
        lines.append(f"- {what}: Spearman ρ = {rho:.2f} (p = {pval:.3f}, {len(rows)} methods)")
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


def report(exps: dict[str, dict], out_dir: str | Path, reference: str | Path | None = None) -> Path:
    """Write `compare.md` and its figures into `out_dir`; return the Markdown path.

    With `reference` (the reference study's CSV), add the table of method orderings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    usable = {n: e for n, e in exps.items() if e["state"] != "failed" and EVAL in e["metrics"]}
    ref = read_reference(reference) if reference and Path(reference).exists() else None
    drawn = ref if is_paper_scale(usable) else None  # comparable at paper scale only
    reward_entropy_figure(usable, out / "reward_entropy.png", drawn)
    reward_kl_figure(usable, out / "reward_kl.png")
    skipped = sorted(set(exps) - set(usable))
    md = [
        "# Experiment comparison",
        "",
        "Generated by `prefdiv compare` from `dvc exp show --json`. Values: mean over test prompts"
        " ± half the 95 % bootstrap CI. Self-BLEU: lower = more diverse.",
        "",
        markdown(usable),
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
    if ref:
        md.append(orderings(usable, ref))
    if skipped:
        md.append(f"Skipped (failed or without `{EVAL}`): {', '.join(skipped)}\n")
    path = out / "compare.md"
    path.write_text("\n".join(md))
    return path
