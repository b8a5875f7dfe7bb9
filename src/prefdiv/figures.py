"""The study's figures (matplotlib, PNG): the only module that draws, and the only one that imports
matplotlib, so that `prefdiv grid` and the statistics never load it.

- the reward–entropy plane, one point per configuration (`replicates.Pooled`) with 95 % CI bars
  and its replicates as faint points, one panel per method level of the grid file (the reference
  study's levels 1/2/3 in `grid.yaml`), and the quadratic trend the reference study fits over the
  f-divergence family (reverse KL = `sigmoid`, `jsd`, `alpha`, `fkl`) in the level-2 panel;
- the reward–KL frontier (the DPO paper's Fig. 2 axes): reward vs KL(π‖π_ref).

Levels come from the grid file only (`grid.Levels`): a configuration in no level of it (an ad hoc
`dvc exp run -S loss=…`) is drawn in a last panel, "no level", and in black on the reward–KL
figure. At paper scale the reward–entropy panels also draw the reference study's published points
beside ours (the caller passes them only there: the values are comparable only at that scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prefdiv import frontiers, reference  # noqa: E402
from prefdiv.grid import Levels  # noqa: E402
from prefdiv.replicates import Pooled  # noqa: E402

F_FAMILY = ("sigmoid", "jsd", "alpha", "fkl")
NO_LEVEL = "no level (not in a level of the grid)"  # the figure panel of such configurations


def _point(ax, e: Pooled, x: str, y: str, label: str, **kw) -> None:
    """A configuration's mean with its CI bars; its replicates as faint points."""
    m = e.metrics
    xerr = [[m[x] - m[f"{x}_ci_low"]], [m[f"{x}_ci_high"] - m[x]]] if f"{x}_ci_low" in m else None
    yerr = [[m[y] - m[f"{y}_ci_low"]], [m[f"{y}_ci_high"] - m[y]]] if f"{y}_ci_low" in m else None
    bars = ax.errorbar(m[x], m[y], xerr=xerr, yerr=yerr, fmt="o", capsize=3, **kw)
    runs = [r for r in e.per_replicate.values() if x in r and y in r]
    if len(runs) > 1:
        ax.scatter(
            [r[x] for r in runs], [r[y] for r in runs], s=10, alpha=0.3, color=bars[0].get_color()
        )
    ax.annotate(label, (m[x], m[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def quadratic_trend(exps: dict[str, Pooled], x: str, y: str) -> np.ndarray | None:
    """Coefficients of y = a·x² + b·x + c over the f-divergence family (≥ 3 points), else None.

    The family: losses of `F_FAMILY` at levels 1–2 (`level` of each record), so annealed DPO
    (level 3) and experiments without a level are left out."""
    pts = [
        (e.metrics[x], e.metrics[y])
        for e in exps.values()
        if e.loss in F_FAMILY and e.level in (1, 2)
    ]
    if len(pts) < 3:
        return None
    xs, ys = np.array(pts).T
    return np.polyfit(xs, ys, 2)


def panels(
    exps: dict[str, Pooled], levels: Levels, points: Sequence[tuple] = ()
) -> dict[int | None, tuple[str, list[str]]]:
    """The reward–entropy figure's panels: level → (title, the records drawn there in colour).

    One panel per level of `levels` that has a record (`exps`) or a reference point (`points`,
    `reference.points`), `level <n>: <title>`, with the records of that level (a level not run
    yet, such as level 4 before its grid, draws no empty panel); then, if any record or reference
    point has no level, the panel `None`, :data:`NO_LEVEL`, with them.
    """
    unplaced = [e.level for e in exps.values()] + [lvl for lvl, *_ in points]
    titles: dict[int | None, str] = {
        n: f"level {n}: {t}" for n, t in levels.titles.items() if n in unplaced
    }
    if not titles or None in unplaced:
        titles[None] = NO_LEVEL
    return {
        lvl: (title, [n for n, e in exps.items() if e.level == lvl])
        for lvl, title in titles.items()
    }


def reward_entropy_figure(
    exps: dict[str, Pooled],
    path: Path,
    levels: Levels,
    ref: dict[tuple, dict] | None = None,
) -> None:
    """The :func:`panels` side by side; level 1's SFT and DPO (`sigmoid`) in grey in every other
    panel; with `ref` (`reference.read`), the reference study's points as hollow diamonds."""
    x, y = "diversity/entropy_unigram", "reward/mean"
    points = reference.points(ref or {}, levels)
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
            elif e.loss in ("sft", "sigmoid") and e.level == 1:
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


def reward_kl_figure(exps: dict[str, Pooled], path: Path) -> None:
    """Reward vs KL, one point per record, coloured by its `level` (black: none). KL: `kl/rb`
    (from samples of π itself) when every record has it, else the older `kl/sequence` (a
    log-ratio on the tempered diversity samples, biased; docs/metrics.md)."""
    rb = bool(exps) and all("kl/rb" in e.metrics for e in exps.values())
    x = "kl/rb" if rb else "kl/sequence"
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in exps.items():
        lvl = e.level
        _point(ax, e, x, "reward/mean", name, color="black" if lvl is None else f"C{lvl}")
    ax.set_xlabel(
        "KL(π‖π_ref), nats per response, from samples of π (Rao–Blackwellised)" if rb
        else "log π − log π_ref on the diversity samples, nats per response (kl/sequence)"
    )  # fmt: skip
    ax.set_ylabel("mean reward (positive logit)")
    ax.set_title("Reward–KL frontier (colour = level)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FRONTIER_ROWS = 2  # reward vs KL, diversity vs KL


def _kl_grid(lo: float, hi: float) -> np.ndarray:
    """Points from `lo` to `hi`, even on the symlog axis: linear below 1 nat, geometric above."""
    below = np.linspace(lo, min(hi, 1.0), 20) if lo < 1.0 else np.array([])
    above = np.geomspace(max(lo, 1.0), hi, 60) if hi > 1.0 else np.array([])
    return np.unique(np.concatenate([below, above]))


def frontier_figure(
    series: dict[int | None, list[tuple[str, list[frontiers.Points], bool]]],
    path: Path,
    levels: Levels,
    ylabels: tuple[str, str],
) -> bool:
    """Reward vs KL (top) and diversity vs KL (bottom), one column per level of the grid.

    `series`: level → [(loss label, [its reward points, its diversity points], start)], each
    `frontiers.Points` (seed → (KL, y) over β; `start`: the SFT policy's runs, black ×). Per loss
    its mean curve over seeds with the seed band (`frontiers.band`: t interval over seeds) over
    the KL range every seed's curve reaches, its runs as faint points; KL on a symlog axis.
    False (and no file) when there is nothing to draw.
    """
    drawn = {lvl: s for lvl, s in series.items() if any(any(p) for _, p, _ in s)}
    if not drawn:
        return False
    order = sorted(drawn, key=lambda lvl: (lvl is None, lvl or 0))
    fig, axes = plt.subplots(
        FRONTIER_ROWS, len(order), figsize=(5 * len(order), 8), sharex=True, sharey="row",
        squeeze=False,
    )  # fmt: skip
    for col, lvl in enumerate(order):
        for r in range(FRONTIER_ROWS):
            ax = axes[r][col]
            for i, (label, per_row, start) in enumerate(drawn[lvl]):
                pts = per_row[r]
                if start:  # the starting point: its runs, no curve
                    xy = np.array([(x[0], y[0]) for x, y in pts.values()]).reshape(-1, 2)
                    ax.scatter(*xy.T, s=25, marker="x", color="black", label=label)
                    continue
                curves = frontiers.curves(pts)
                if not curves:
                    continue
                color = f"C{i}"
                for x_s, y_s in pts.values():
                    ax.scatter(x_s, y_s, s=8, alpha=0.3, color=color)
                # the line and band only where every seed's curve reaches (where the matched
                # comparisons are made): past it a t band over 2 seeds is 12.7 SE wide
                lo = max(c.span[0] for c in curves.values())
                hi = min(c.span[1] for c in curves.values())
                if lo < hi:
                    xs = _kl_grid(lo, hi)
                    mean, low, high = frontiers.band(curves, xs)
                    ax.plot(xs, mean, color=color, label=label)
                    ax.fill_between(xs, low, high, color=color, alpha=0.15)
                else:  # no KL that every seed reached: its runs only
                    ax.scatter([], [], color=color, label=f"{label} (runs only)")
            ax.set_xscale("symlog", linthresh=1.0)  # SFT at 0; KL from < 1 to > 100 nats
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(ylabels[r])
            if r == 0:
                title = f"level {lvl}: {levels.titles.get(lvl, '')}" if lvl else NO_LEVEL
                ax.set_title(title)
                ax.legend(fontsize=7)
            else:
                ax.set_xlabel("KL(π‖π_ref), nats per response")
    fig.suptitle(
        "β frontiers: mean over seeds of each loss's isotonic curve where every seed reaches,"
        " 95 % t band over seeds; faint: runs (one per β and seed); ×: SFT (one per seed)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
