from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import t as t_dist

from prefdiv import config, figures, grid, names, reference, replicates, report, sweep
from prefdiv.config import ParamsError
from prefdiv.experiments import EVAL, Experiment

ROOT = Path(__file__).resolve().parents[1]
LEVELS = grid.load_levels(ROOT / "grid.yaml")  # the study's: l1-… level 1, l2-… 2, l3-… 3
DEFAULTS = (
    "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5, hdpo_alpha: 1.0, "
    "simpo_ratio: 0.5, pair_strategy: all, divpo_rho: 0.3}\n"
)


def _exp(loss, reward, entropy, **params):
    m = {"reward/mean": reward, "diversity/entropy_unigram": entropy, "kl/sequence": 1.0}
    for k in list(m):
        m[f"{k}_ci_low"], m[f"{k}_ci_high"] = m[k] - 0.1, m[k] + 0.1
    p = {"loss": loss, "beta": 0.1, "beta_end": None, "alpha": 0.5, "label_smoothing": 0.0}
    return Experiment("", "success", {**p, **params}, {EVAL: m})


def _pool(exps, levels):
    """`prefdiv compare`'s per-configuration records (its table rows and figure points)."""
    return replicates.pool(replicates.group(exps)[0], exps, levels)


def _panels(png) -> int:
    """Panels of a reward–entropy figure, from its width (5 in each, 120 dpi)."""
    return matplotlib.image.imread(png).shape[1] // (5 * 120)


def test_levels_come_from_the_grid_by_configuration_name():
    exps = {
        "l1-sft-s0": _exp("sft", 0.4, 4.2, seed=0),
        "l2-alpha-03-s1-t1": _exp("alpha", 2.0, 4.3, alpha=0.3, seed=1, train_seed=1),
        "l3-dpo-anneal": _exp("sigmoid", 2.2, 4.1, beta=0.0, beta_end=1.0),  # a bare name
    }
    pool = _pool(exps, LEVELS)
    found = {n: e.level for n, e in pool.items()}
    assert found == {"l1-sft": 1, "l2-alpha-03": 2, "l3-dpo-anneal": 3}
    md = report.configurations(pool)
    assert "| l2-alpha-03 | 2 | alpha |" in md and "| l3-dpo-anneal | 3 | sigmoid |" in md
    titles = {lvl: title for lvl, (title, _) in figures.panels(pool, LEVELS).items()}
    assert titles == {
        1: "level 1: SFT, SLiC-HF, DPO",
        2: "level 2: f-DPO",
        3: "level 3: IPO, cDPO, β anneal",
    }


def test_an_experiment_missing_from_the_grid_gets_no_level(tmp_path):
    """An ad hoc `dvc exp run -S loss=fkl -S beta=0.2` is not level 2's f-DPO configuration,
    nor level 1 (the old fallback): level `—`, last in the table, a panel of its own, no part
    in the f-family trend."""
    exps = {
        "l1-sft-s0": _exp("sft", 0.4, 4.2),
        "l1-sigmoid-s0": _exp("sigmoid", 2.4, 3.6),
        "l2-fkl-s0": _exp("fkl", 2.0, 4.0),
        "hoary-tabs": _exp("fkl", 1.8, 4.1, beta=0.2),
    }
    pool = _pool(exps, LEVELS)
    assert pool["hoary-tabs"].level is None and pool["l2-fkl"].level == 2
    rows = [ln for ln in report.configurations(pool).splitlines() if ln.startswith("| ")]
    assert rows[-1].startswith("| hoary-tabs | — | fkl | 0.2 |")
    drawn = figures.panels(pool, LEVELS)
    assert drawn[None] == (figures.NO_LEVEL, ["hoary-tabs"])
    assert all("hoary-tabs" not in names for lvl, (_, names) in drawn.items() if lvl)
    # the f-family trend takes levels 1–2 only: 2 points, so none (3 if it were counted)
    assert figures.quadratic_trend(pool, "diversity/entropy_unigram", "reward/mean") is None
    md = report.compare(exps, tmp_path, LEVELS).read_text()
    assert "| hoary-tabs | — | fkl |" in md
    # levels 1, 2 and "no level": levels 3 and 4 of the grid have no record, so no empty panel
    assert _panels(tmp_path / "reward_entropy.png") == 3
    del exps["hoary-tabs"]
    report.compare(exps, tmp_path / "all", LEVELS)
    assert _panels(tmp_path / "all" / "reward_entropy.png") == 2


def test_a_registered_loss_is_compared_at_its_grid_level(tmp_path, monkeypatch):
    """README "Adding a loss": the function, its registry entry, its grid entry."""
    from prefdiv import losses

    def toy(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, beta, **options):
        rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
        return (beta * (rho_w - rho_l) - 1) ** 2, beta * rho_w.detach(), beta * rho_l.detach()

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(ParamsError, match="loss = 'toy' is not allowed"):
        config.validate({**raw, "loss": "toy"})
    monkeypatch.setitem(losses.LOSSES, "toy", toy)
    assert config.validate({**raw, "loss": "toy", "beta": 0.2}).loss == "toy"
    assert losses.get_loss("toy") is toy

    path = tmp_path / "grid.yaml"
    path.write_text(
        DEFAULTS + "levels:\n"
        "  1: {title: baselines, experiments: {b-sft: {loss: sft}}}\n"
        "  4: {title: toy losses, experiments: {l4-toy: {loss: toy, beta: 0.2}}}\n"
    )
    cmds = sweep.queue_commands(grid.load_grid(path))
    assert "loss=toy" in cmds[1] and "beta=0.2" in cmds[1] and cmds[1][5] == "l4-toy-s0"
    levels = grid.load_levels(path)
    exps = {
        "b-sft-s0": _exp("sft", 0.4, 4.2, seed=0),
        "l4-toy-s0": _exp("toy", 1.5, 4.4, beta=0.2, seed=0),
        "l4-toy-s1": _exp("toy", 1.7, 4.6, beta=0.2, seed=1),
    }
    md = report.compare(exps, tmp_path / "out", levels).read_text()
    assert "| l4-toy | 4 | toy | 0.2 |  | 2 seeds |" in md
    drawn = figures.panels(_pool(exps, levels), levels)
    assert drawn[4] == ("level 4: toy losses", ["l4-toy"]) and None not in drawn
    assert _panels(tmp_path / "out" / "reward_entropy.png") == 2


def test_quadratic_trend_recovers_a_parabola():
    xs = [3.6, 3.8, 4.0, 4.2]

    def pooled(name, e, level):
        (p,) = _pool({name: e}, None).values()
        return replace(p, level=level)

    exps = {
        f"e{i}": pooled(f"e{i}", _exp(loss, -((x - 3.9) ** 2) + 1, x), 1 if i == 0 else 2)
        for i, (loss, x) in enumerate(zip(["sigmoid", "jsd", "alpha", "fkl"], xs, strict=True))
    }
    exps["ipo"] = pooled("ipo", _exp("ipo", 5.0, 3.0), 3)  # not in the f-family: ignored
    exps["anneal"] = pooled("anneal", _exp("sigmoid", 5.0, 3.0, beta_end=1.0), 3)  # level 3
    coef = figures.quadratic_trend(exps, "diversity/entropy_unigram", "reward/mean")
    assert coef == pytest.approx([-1.0, 7.8, 1 - 3.9**2], rel=1e-6)
    assert (
        figures.quadratic_trend({"a": exps["e0"]}, "diversity/entropy_unigram", "reward/mean")
        is None
    )


def test_report_skips_failed_and_writes_figures(tmp_path):
    exps = {
        "l1-sigmoid": _exp("sigmoid", 2.0, 4.0),
        "l1-sft": _exp("sft", 0.5, 4.2),
        "l2-fkl": replace(_exp("fkl", 9.0, 9.0), state="failed"),
    }
    md = report.compare(exps, tmp_path, LEVELS).read_text()
    assert "| l1-sigmoid | 1 | sigmoid | 0.1 |  | 1 seed |" in md
    assert "| l1-sft | 1 | sft | — |" in md
    assert "2.000 [1.900, 2.100]" in md  # one run: its own prompts-only interval
    assert "| l2-fkl |" not in md and "Skipped (failed" in md
    assert (tmp_path / "reward_entropy.png").exists() and (tmp_path / "reward_kl.png").exists()
    assert np.isfinite(exps["l1-sigmoid"].eval["reward/mean"])


def test_orderings_match_configurations_and_rank(tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "method,loss,beta,option,reward_all,entropy_all\n"
        "SFT,sft,,,0.3,5.3\nDPO,sigmoid,0.1,,2.9,4.7\n"
        "f-DPO alpha 0.3,alpha,0.1,alpha=0.3,2.8,5.1\n"
        "DPO annealing,sigmoid,0.0,beta_end=1.0,2.85,4.8\n"
    )
    exps = {
        "sft": _exp("sft", 0.4, 4.2),
        "dpo": _exp("sigmoid", 2.4, 4.0),
        "a03": _exp("alpha", 2.1, 4.3, alpha=0.3),
        "a05": _exp("alpha", 2.0, 4.3, alpha=0.5),  # not in the reference: left out
        "anneal": _exp("sigmoid", 2.2, 4.1, beta=0.0, beta_end=1.0),
    }
    md = report.orderings(_pool(exps, LEVELS), reference.read(ref))
    assert "reward: Spearman ρ = 1.00" in md and "4 methods" in md
    assert "| anneal | DPO annealing | 2.200 (2) | 2.850 (2) |" in md
    assert "a05" not in md


def test_reference_points_take_their_level_from_the_grid_by_settings():
    ref = reference.read(ROOT / "reference" / "reference_results.csv")
    points = reference.points(ref, LEVELS)
    assert len(points) == 14
    levels = {method: lvl for lvl, method, _, _ in points}
    assert levels["SFT"] == levels["DPO"] == levels["SLiC-HF hinge"] == 1
    assert levels["f-DPO FKL"] == levels["f-DPO alpha 0.3"] == 2
    assert levels["IPO 0.1"] == levels["cDPO"] == levels["DPO annealing"] == 3
    # a grid without the configuration: no level (the figure's "no level" panel)
    dpo = names.config_key("sigmoid", 0.1, {})
    only_dpo = grid.Levels({1: "DPO"}, {"l1-sigmoid": 1}, {dpo: 1})
    placed = {method: lvl for lvl, method, _, _ in reference.points(ref, only_dpo)}
    assert placed["DPO"] == 1 and placed["DPO annealing"] is None and placed["SFT"] is None
    drawn = figures.panels({}, only_dpo, reference.points(ref, only_dpo))
    assert list(drawn) == [1, None]


def test_reference_points_are_drawn_at_paper_scale_only(tmp_path):
    ref_csv = ROOT / "reference" / "reference_results.csv"
    exps = {
        "sft": _exp("sft", 0.4, 5.3),
        "dpo": _exp("sigmoid", 2.8, 4.7),
        "fkl": _exp("fkl", 2.5, 5.1),
    }
    paper = {n: replace(e, params={**e.params, "scale": "paper"}) for n, e in exps.items()}
    demo = {n: replace(e, params={**e.params, "scale": "demo"}) for n, e in exps.items()}
    assert "Hollow diamonds" in report.compare(paper, tmp_path / "p", LEVELS, ref_csv).read_text()
    md = report.compare(demo, tmp_path / "d", LEVELS, ref_csv).read_text()
    assert "Hollow diamonds" not in md and "Orderings vs the reference study" in md


def _replicates(name, loss, rewards, entropies, **params):
    """Runs `<name>-s<seed>` and their per-prompt tables (run means = the given values)."""
    exps, prompts = {}, {}
    for seed, (r, h) in enumerate(zip(rewards, entropies, strict=True)):
        run = f"{name}-s{seed}"
        exps[run] = _exp(loss, r, h, seed=seed, **params)
        wiggle = np.linspace(-0.2, 0.2, 10)  # mean 0: the run's mean stays r, h
        prompts[run] = pd.DataFrame(
            {
                "prompt_id": [f"s{seed}-p{i}" for i in range(10)],
                "reward_mean": r + wiggle,
                "entropy": h + wiggle[::-1],
            }
        )
    return exps, prompts


X_LEVELS = grid.Levels({1: "classics"}, {"x": 1, "base": 1}, {})  # as a grid file would give


def test_report_groups_replicates_with_seed_aware_intervals(tmp_path):
    exps, prompts = _replicates("x", "sigmoid", [2.0, 2.2, 2.4], [4.0, 4.1, 4.2])
    more, more_prompts = _replicates("base", "sft", [0.5, 0.6, 0.7], [4.3, 4.5, 4.4])
    exps |= more | {"fkl-s1": replace(_exp("fkl", 9.0, 9.0), state="failed")}
    prompts |= more_prompts
    md = report.compare(exps, tmp_path, X_LEVELS, prompts=prompts).read_text()
    half = t_dist.ppf(0.975, 2) * 0.2 / np.sqrt(3)  # SD of (2.0, 2.2, 2.4) = 0.2
    cell = f"2.200 [{2.2 - half:.3f}, {2.2 + half:.3f}]"
    assert f"| x | 1 | sigmoid | 0.1 |  | 3 seeds | {cell} |" in md
    assert "fkl: no replicate succeeded (s1 failed)" in md
    assert "## Between-seed SD" in md and "| x | 3 seeds | 0.200 |" in md
    # x − base per seed: reward +1.5 +1.6 +1.7 (SD 0.1), all 3 seeds agree
    half = t_dist.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert f"| x | +1.600 [{1.6 - half:+.3f}, {1.6 + half:+.3f}] 3/3 |" in md
    # claim 1 on entropy: 3 seeds are fewer than a verdict needs; the hinge parts lack their method
    line = next(ln for ln in md.splitlines() if "| 1 | SFT" in ln)
    assert "**too few seeds** 0/0/0/1/2" in line
    assert "## Rank probabilities" in md


def test_report_without_per_prompt_tables_still_tabulates(tmp_path):
    exps, _ = _replicates("x", "sigmoid", [2.0, 2.2, 2.4], [4.0, 4.1, 4.2])
    md = report.compare(exps, tmp_path, X_LEVELS).read_text()
    assert "| x | 1 | sigmoid | 0.1 |  | 3 seeds | 2.200 [" in md
    assert "No per-prompt tables given" in md and "## Claims" not in md


def test_results_table_groups_replicates_in_the_compare_format(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        DEFAULTS + "experiments:\n  g-dpo: {loss: sigmoid}\n  g-fkl: {loss: fkl}\n"
        "  g-sft: {loss: sft}\n"
    )
    base = {"beta": 0.1, "beta_end": None, "label_smoothing": 0.0, "alpha": 0.5}

    def run(loss, seed, reward):
        m = {"reward/mean": reward, "diversity/entropy_unigram": 4.0, "length/mean_tokens": 40.0}
        # a percentile-bootstrap interval need not be symmetric about the mean
        m |= {"reward/mean_ci_low": reward - 0.1, "reward/mean_ci_high": reward + 0.2}
        params = {**base, "loss": loss, "seed": seed}
        return Experiment("", "success", params, {EVAL: m})

    exps = {f"g-dpo-s{s}": run("sigmoid", s, r) for s, r in enumerate([2.0, 2.2, 2.4])}
    exps["g-fkl-s0"] = run("fkl", 0, 1.0)
    exps["g-fkl-s1"] = Experiment("g-fkl-s1", "failed")
    text = report.table(grid.load_grid(tmp_path / "grid.yaml"), exps)
    (dpo,) = [ln for ln in text.splitlines() if ln.startswith("| g-dpo ")]
    lo, hi = (2.2 + s * t_dist.ppf(0.975, 2) * 0.2 / 3**0.5 for s in (-1, 1))
    assert f"| sigmoid | 0.1 |  | 3 seeds | 2.200 [{lo:.3f}, {hi:.3f}] |" in dpo
    (fkl,) = [ln for ln in text.splitlines() if ln.startswith("| g-fkl ")]
    assert "| 1 seed | 1.000 [0.900, 1.200] |" in fkl  # one run: its prompts-only interval
    assert "not run / failed" in next(ln for ln in text.splitlines() if ln.startswith("| g-sft"))
    assert "g-fkl: seeds 0 of 0, 1, 2 (s1 failed, s2 missing)" in text
    # `prefdiv compare` writes the same cells
    md = report.configurations(report.results(exps).pooled)
    assert f"| 3 seeds | 2.200 [{lo:.3f}, {hi:.3f}] |" in md
    assert "| 1 seed | 1.000 [0.900, 1.200] |" in md
