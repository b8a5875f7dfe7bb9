import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist

from prefdiv import compare


def _exp(loss, reward, entropy, **params):
    m = {"reward/mean": reward, "diversity/entropy_unigram": entropy, "kl/sequence": 1.0}
    for k in list(m):
        m[f"{k}_ci_low"], m[f"{k}_ci_high"] = m[k] - 0.1, m[k] + 0.1
    p = {"loss": loss, "beta": 0.1, "beta_end": None, "alpha": 0.5, "label_smoothing": 0.0}
    return {"state": "success", "params": {**p, **params}, "metrics": {compare.EVAL: m}}


def test_levels_follow_the_reference_study():
    assert compare.level({"loss": "sft"}) == compare.level({"loss": "hinge"}) == 1
    assert compare.level({"loss": "alpha", "alpha": 0.3}) == 2
    assert compare.level({"loss": "ipo"}) == compare.level({"loss": "cdpo"}) == 3
    assert compare.level({"loss": "sigmoid", "beta_end": 1.0}) == 3  # annealing


def test_quadratic_trend_recovers_a_parabola():
    xs = [3.6, 3.8, 4.0, 4.2]
    exps = {
        f"e{i}": _exp(loss, -((x - 3.9) ** 2) + 1, x)
        for i, (loss, x) in enumerate(zip(["sigmoid", "jsd", "alpha", "fkl"], xs, strict=True))
    }
    exps["ipo"] = _exp("ipo", 5.0, 3.0)  # not in the f-family: ignored
    coef = compare.quadratic_trend(exps, "diversity/entropy_unigram", "reward/mean")
    assert coef == pytest.approx([-1.0, 7.8, 1 - 3.9**2], rel=1e-6)
    assert (
        compare.quadratic_trend({"a": exps["e0"]}, "diversity/entropy_unigram", "reward/mean")
        is None
    )


def test_report_skips_failed_and_writes_figures(tmp_path):
    exps = {
        "ok": _exp("sigmoid", 2.0, 4.0),
        "base": _exp("sft", 0.5, 4.2),
        "bad": {**_exp("fkl", 9.0, 9.0), "state": "failed"},
    }
    md = compare.report(exps, tmp_path).read_text()
    assert "| ok | 1 | sigmoid | 0.1 |  | 1 seed |" in md and "| base | 1 | sft | — |" in md
    assert "2.000 [1.900, 2.100]" in md  # one run: its own prompts-only interval
    assert "| bad |" not in md and "Skipped (failed" in md
    assert (tmp_path / "reward_entropy.png").exists() and (tmp_path / "reward_kl.png").exists()
    assert np.isfinite(exps["ok"]["metrics"][compare.EVAL]["reward/mean"])


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
    md = compare.orderings(exps, compare.read_reference(ref))
    assert "reward: Spearman ρ = 1.00" in md and "4 methods" in md
    assert "| anneal | DPO annealing | 2.200 (2) | 2.850 (2) |" in md
    assert "a05" not in md


def test_reference_points_are_drawn_at_paper_scale_only(tmp_path):
    ref_csv = compare.Path(__file__).resolve().parents[1] / "reference" / "reference_results.csv"
    points = compare.reference_points(compare.read_reference(ref_csv))
    assert len(points) == 14
    levels = {method: lvl for lvl, method, _, _ in points}
    assert (
        levels["DPO"] == 1
        and levels["f-DPO FKL"] == 2
        and levels["IPO 0.1"] == levels["DPO annealing"] == 3
    )
    exps = {
        "sft": _exp("sft", 0.4, 5.3),
        "dpo": _exp("sigmoid", 2.8, 4.7),
        "fkl": _exp("fkl", 2.5, 5.1),
    }
    paper = {n: {**e, "params": {**e["params"], "scale": "paper"}} for n, e in exps.items()}
    demo = {n: {**e, "params": {**e["params"], "scale": "demo"}} for n, e in exps.items()}
    assert "Hollow diamonds" in compare.report(paper, tmp_path / "p", ref_csv).read_text()
    md = compare.report(demo, tmp_path / "d", ref_csv).read_text()
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


def test_report_groups_replicates_with_seed_aware_intervals(tmp_path):
    exps, prompts = _replicates("x", "sigmoid", [2.0, 2.2, 2.4], [4.0, 4.1, 4.2])
    more, more_prompts = _replicates("base", "sft", [0.5, 0.6, 0.7], [4.3, 4.5, 4.4])
    exps |= more | {"fkl-s1": {**_exp("fkl", 9.0, 9.0), "state": "failed"}}
    prompts |= more_prompts
    md = compare.report(exps, tmp_path, prompts=prompts).read_text()
    half = t_dist.ppf(0.975, 2) * 0.2 / np.sqrt(3)  # SD of (2.0, 2.2, 2.4) = 0.2
    cell = f"2.200 [{2.2 - half:.3f}, {2.2 + half:.3f}]"
    assert f"| x | 1 | sigmoid | 0.1 |  | 3 seeds | {cell} |" in md
    assert "fkl: no replicate succeeded (s1 failed)" in md
    assert "## Between-seed SD" in md and "| x | 3 seeds | 0.200 |" in md
    # x − base per seed: reward +1.5 +1.6 +1.7 (SD 0.1), all 3 seeds agree
    half = t_dist.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert f"| x | +1.600 [{1.6 - half:+.3f}, {1.6 + half:+.3f}] 3/3 |" in md
    # claim 1 on entropy: SFT − DPO = +0.3 +0.4 +0.2 holds; the hinge parts lack their method
    assert "**inconclusive** 1/0/0/2" in next(ln for ln in md.splitlines() if "| 1 | SFT" in ln)
    assert "## Rank probabilities" in md


def test_report_without_per_prompt_tables_still_tabulates(tmp_path):
    exps, _ = _replicates("x", "sigmoid", [2.0, 2.2, 2.4], [4.0, 4.1, 4.2])
    md = compare.report(exps, tmp_path).read_text()
    assert "| x | 1 | sigmoid | 0.1 |  | 3 seeds | 2.200 [" in md
    assert "No per-prompt tables given" in md and "## Claims" not in md
