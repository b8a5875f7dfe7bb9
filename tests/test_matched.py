"""The frontier study end to end on synthetic experiments: families over β, the claims at
matched KL and reward, the frontier figure and its report section."""

import matplotlib.image
import numpy as np
import pytest

from prefdiv import catalogue, frontiers, fronts, grid, matched, replicates, report
from prefdiv.experiments import EVAL, PAIRS, Experiment
from prefdiv.plan import Plan

EAD = catalogue.BY_KEY["diversity/ead"]  # the plan's primary diversity metric

LEVELS = grid.Levels(
    {1: "classics", 3: "IPO"},
    {"l1-sft": 1, "l1-sigmoid": 1, "l3-ipo-01": 3},
    {("sigmoid", 0.1, ()): 1, ("ipo", 0.1, ()): 3},
)
PLAN = Plan(0.05, 5, {"3": "ead", "1": "ead"}, {"ead": 0.01})


def _run(name, loss, beta, seed, kl, ead, reward):
    m = {"kl/rb": kl, "kl/sequence": 2 * kl, "diversity/ead": ead, "reward/mean": reward}
    m["diversity/entropy_unigram"] = 4 * ead  # the reward–entropy figure's axis
    p = {"loss": loss, "beta": beta, "beta_end": None, "alpha": 0.5, "label_smoothing": 0.0}
    p |= {"scale": "demo", "seed": seed, "train_seed": 0}
    pairs = {"reward_mean": 0.0, "reward_sd": 2.0}
    return name, Experiment(name, "success", p, {EVAL: m, PAIRS: pairs}, f"r-{name}")


def study(seeds=range(5)):
    """DPO goes far (KL ∝ 1/β), IPO moves little; at equal KL, IPO is 0.02 EAD *less* diverse,
    though at β = τ = 0.1 it looks more diverse because it moved less."""
    rng = np.random.default_rng(0)
    exps = dict(_run(f"l1-sft-s{s}", "sft", 0.1, s, 0.0, 0.85, 0.3) for s in seeds)
    for s in seeds:
        for beta in (0.03, 0.1, 0.3, 1.0, 3.0):
            kl = 3.0 / beta * (1 + 0.05 * s)
            name = "l1-sigmoid" if beta == 0.1 else f"fr-sigmoid-b{beta:g}"
            exps |= [_run(f"{name}-s{s}", "sigmoid", beta, s, kl, 0.85 - 0.003 * kl
                          + rng.normal(0, 1e-4), 0.3 + 0.08 * kl)]  # fmt: skip
            kl = 0.6 / beta * (1 + 0.05 * s)
            name = "l3-ipo-01" if beta == 0.1 else f"fr-ipo-b{beta:g}"
            exps |= [_run(f"{name}-s{s}", "ipo", beta, s, kl, 0.83 - 0.003 * kl
                          + rng.normal(0, 1e-4), 0.3 + 0.08 * kl)]  # fmt: skip
    return exps


def test_families_group_runs_over_beta_with_their_level():
    fams, sft = matched.families(study(), LEVELS)
    assert set(fams) == {("demo", "sigmoid", ()), ("demo", "ipo", ())}
    ipo = fams["demo", "ipo", ()]
    assert ipo.level == 3 and sorted(ipo.points[0]) == [0.03, 0.1, 0.3, 1.0, 3.0]
    assert sorted(sft["demo"]) == list(range(5)) and matched.has_frontier(fams)
    pts = matched.points(ipo, matched.KL, "diversity/ead")
    assert len(pts[0][0]) == 5  # five β; SFT is no point of a curve
    drawn = matched.series(fams, sft, "diversity/ead")  # the figure: SFT as its own markers
    assert [(label, start) for label, _, start in drawn[3]] == [("ipo", False), ("SFT", True)]
    _, (_, sft_ead), _ = drawn[3][1]
    assert [len(xs) for xs, _ in sft_ead.values()] == [1] * 5  # one run per seed


def test_claim_3_reverses_at_matched_kl_although_ipo_looks_more_diverse_at_its_beta():
    exps = study()
    fams, sft = matched.families(exps, LEVELS)
    rows = matched.claims_at("KL", fams, "demo", PLAN)
    (three,) = [r for r in rows if r["claim"] == "3" and r["column"] == "ead"]
    part, cdpo = three["parts"]  # IPO 0.1, 0.3, 0.5 > DPO: one comparison, ipo > sigmoid
    assert (part.a, part.b) == ("ipo", "sigmoid") and cdpo.verdict == "missing"  # not run
    assert part.estimate.mean == pytest.approx(-0.02, abs=0.002)
    assert three["verdict"] == "reversed"
    at_beta = (
        exps["l3-ipo-01-s0"].eval["diversity/ead"] - exps["l1-sigmoid-s0"].eval["diversity/ead"]
    )
    assert at_beta > 0.04  # what a single-β comparison would report
    # SFT > DPO has no matched form (SFT is every curve's KL = 0 end): claim 1 keeps none
    assert not [r for r in rows if r["claim"] == "1"]


def test_the_report_draws_the_frontiers_and_states_both_views(tmp_path):
    md = report.compare(study(), tmp_path, LEVELS, analysis=PLAN).read_text()
    assert "## At matched KL and matched reward (scale `demo`)" in md
    assert "### vs DPO at matched KL" in md and "### vs DPO at matched reward" in md
    assert "![β frontiers](frontiers.png)" in md
    png = matplotlib.image.imread(tmp_path / "frontiers.png")
    assert png.shape[1] // (5 * 120) == 2  # a column per level that has a family: 1 and 3
    ipo = next(ln for ln in md.splitlines() if ln.startswith("| ipo | 3 |"))
    assert "−" in ipo or "-0.0" in ipo
    assert "| EAD p (Holm) |" in md and ipo.endswith("| 0.000 |")  # −0.02, noise 1e-4: p ≈ 0


def test_no_frontier_no_section(tmp_path):
    exps = {n: e for n, e in study().items() if "fr-" not in n}  # β = 0.1 only
    md = report.compare(exps, tmp_path, LEVELS, analysis=PLAN).read_text()
    assert "matched KL" not in md and not (tmp_path / "frontiers.png").exists()


def _level4(seeds, gain):
    """DPO and an H-DPO family (level 4) over β: H-DPO `gain` EAD above DPO at every KL, with the
    same reward at equal KL."""
    rng = np.random.default_rng(1)
    exps = dict(_run(f"l1-sft-s{s}", "sft", 0.1, s, 0.0, 0.85, 0.3) for s in seeds)
    for s in seeds:
        for beta in (0.03, 0.1, 0.3, 1.0, 3.0):
            kl = 3.0 / beta * (1 + 0.05 * s)
            for loss, extra in (("sigmoid", 0.0), ("hdpo", gain)):
                ead = 0.85 - 0.003 * kl + extra + rng.normal(0, 1e-4)
                name, e = _run(f"{loss}-b{beta:g}-s{s}", loss, beta, s, kl, ead, 0.3 + 0.08 * kl)
                if loss == "hdpo":
                    e.params["hdpo_alpha"] = 1.2
                exps[name] = e
    return exps


LEVELS4 = grid.Levels(
    {1: "classics", 4: "diversity-aware"},
    {},
    {("sigmoid", 0.1, ()): 1, ("hdpo", 0.1, (("hdpo_alpha", 1.2),)): 4},
)


@pytest.mark.parametrize(("seeds", "gain", "verdict"), [
    (range(5), 0.01, "holds"), (range(5), 0.0, "inconclusive"), (range(3), 0.01, "too few seeds"),
])  # fmt: skip
def test_level4_is_judged_against_dpo_at_matched_reward(seeds, gain, verdict):
    exps, _ = replicates.standardise(_level4(seeds, gain))  # as `prefdiv compare` does
    fams, sft = matched.families(exps, LEVELS4)
    plan = Plan(0.05, 5, {matched.LEVEL4: "ead"}, {"ead": 0.01})
    rows = matched.level4_at("reward", fams, "demo", plan)
    (ead,) = [r for r in rows if r["column"] == "ead"]
    assert ead["claim"] == matched.LEVEL4 and ead["primary"]
    assert ead["text"] == "hdpo (α_H=1.2) more diverse than sigmoid"
    # only DPO ran of LEVEL4_AGAINST: one comparison per metric, no f-divergence invented
    assert {(q.a, q.b) for r in rows for q in r["parts"]} == {("hdpo (α_H=1.2)", "sigmoid")}
    if seeds == range(5):
        assert ead["parts"][0].estimate.mean == pytest.approx(gain, abs=0.002)
    assert ead["verdict"] == verdict


def test_pareto_fronts_of_the_configuration_means():
    """DPO is 0.02 EAD above IPO at every KL and both buy reward with KL alike, so in the
    reward–KL plane every configuration is on the front, and in the reward–EAD plane IPO keeps
    only the one point (τ = 0.03, KL ≈ 22) that no DPO point matches in both reward and EAD."""
    exps = study()
    for e in exps.values():  # self-BLEU falls as EAD rises: the same fronts, lower is better
        e.eval["diversity/self_bleu4"] = 100 * (1 - e.eval["diversity/ead"])
    fams, sft = matched.families(replicates.standardise(exps)[0], LEVELS)
    pts = fronts.means(fams, sft["demo"], EAD)
    assert pts[0][:2] == ("SFT", None) and all(m["seeds"] == 5 for _, _, m in pts)
    md = fronts.section(fams, sft, EAD)
    kl, ead = md.split("**reward–KL**")[1].split("**Each loss")[0].split("**reward–EAD**")
    rows = sum(ln.startswith("| ") for ln in kl.splitlines())
    assert rows == 1 + 1 + 5 + 5  # header, SFT, 5 DPO, 5 IPO
    assert "No point on the reward–KL front: none." in kl
    front = [ln.split(" | ")[:2] for ln in ead.splitlines() if ln.startswith("| ")][1:]
    assert ["| ipo", "0.03"] in front and sum(r[0] == "| ipo" for r in front) == 1
    assert ["| SFT", "—"] in front and sum(r[0] == "| sigmoid" for r in front) == 5
    # the second plane is the plan's primary metric, whichever it is (self-BLEU: lower is better)
    bleu = fronts.section(fams, sft, catalogue.BY_KEY["diversity/self_bleu4"])
    assert "**reward–self-BLEU-4 ↓** (by self-BLEU-4 ↓)" in bleu and "lowest self-BLEU-4" in bleu
    by_bleu = bleu.split("**reward–self-BLEU-4 ↓**")[1].split("**Each loss")[0]
    same = [ln.split(" | ")[:2] for ln in by_bleu.splitlines() if ln.startswith("| ")][1:]
    assert sorted(same) == sorted(front)


def test_described_metrics_are_tabled_and_compared_at_matched_kl_but_not_judged(tmp_path):
    exps = study()
    for e in exps.values():  # a rarefied entropy that tracks EAD: IPO 0.02 below DPO at equal KL
        e.eval["diversity/entropy_rarefied_64"] = 3.0 + e.eval["diversity/ead"]
    md = report.compare(exps, tmp_path, LEVELS, analysis=PLAN).read_text()
    table = md.split("### vs DPO at matched KL, described metrics (not judged)")[1]
    ipo = next(ln for ln in table.splitlines() if ln.startswith("| ipo | 3 |"))
    assert ipo.endswith("| -0.020 [-0.020, -0.020] 5/5 |")  # the only column: the one present
    assert "rarefied entropy, 64 tokens" in table.split("| ipo")[0]
    assert "| l1-sft | 5 seeds | 3.850 [" in md  # the configuration table of described metrics
    fams, sft = matched.families(replicates.standardise(exps)[0], LEVELS)
    judged = matched.claims_at("KL", fams, "demo", PLAN)
    assert not [r for r in judged if "rarefied" in r["key"]]


def test_each_loss_front_drops_a_beta_that_moved_further_for_less_reward():
    exps = study()
    for s in range(5):  # DPO β = 3 moves further than β = 1 for less reward: off its front
        exps[f"fr-sigmoid-b3-s{s}"].eval["kl/rb"] = 5.0
    fams, sft = matched.families(replicates.standardise(exps)[0], LEVELS)
    md = fronts.section(fams, sft, EAD).split("own fronts")[1]
    assert "| sigmoid | 0.03, 0.1, 0.3, 1 (of 5) | all (of 5) |" in md
    assert "| ipo | all (of 5) | all (of 5) |" in md


def test_no_curve_is_anchored_at_sft():
    """H-DPO with α = 1.5 stays ≥ 11.3 nats from π_ref (KL = 11 + 1/β) and is 0.05 EAD below DPO
    at every KL. Anchored at SFT, its curve would run straight from SFT to its nearest run and
    the comparison would use levels no H-DPO run reached; unanchored, it is made where both ran."""
    exps = dict(_run(f"l1-sft-s{s}", "sft", 0.1, s, 0.0, 0.85, 0.3) for s in range(5))
    for s in range(5):
        for beta in (0.03, 0.1, 0.3, 1.0, 3.0):
            for loss, kl, gap in (("sigmoid", 3.0 / beta, 0.0), ("hdpo", 11 + 1 / beta, 0.05)):
                kl *= 1 + 0.01 * s
                ead = 0.85 - 0.003 * kl - gap
                name, e = _run(f"{loss}-b{beta:g}-s{s}", loss, beta, s, kl, ead, 0.3 + 0.08 * kl)
                e.params["hdpo_alpha"] = 1.5
                exps[name] = e
    fams, _ = matched.families(replicates.standardise(exps)[0], LEVELS4)
    hdpo, dpo = fams["demo", "hdpo", (("hdpo_alpha", 1.5),)], fams["demo", "sigmoid", ()]
    assert 0.0 not in matched.points(hdpo, matched.KL, "diversity/ead")[0][0]
    nearest = 11 + 1 / 3.0  # H-DPO's smallest KL (seed 0's; the other seeds' are larger)
    for view, reached in (("KL", nearest), ("reward", (0.3 + 0.08 * nearest) / 2)):  # z: SD 2
        d, at = matched.curve_difference(hdpo, dpo, matched.VIEWS[view], "diversity/ead", 1)
        assert d.mean == pytest.approx(-0.05, abs=1e-3), view
        assert min(at) >= reached, view  # only levels H-DPO's runs reached


def test_matched_levels_are_each_seeds_own_overlap():
    """Each seed's two curves overlap (KL 10s + 2 … 10s + 5), but no KL is reached in every seed:
    the comparison is made per seed, where that seed's curves overlap, and IPO's 0.02 deficit is
    found in all five."""
    exps = {}
    for s in range(5):
        for i, beta in enumerate((0.03, 0.1, 0.3, 1.0, 3.0)):
            for loss, kl, gap in (
                ("sigmoid", 10.0 * s + 5 - i, 0.0),
                ("ipo", 10.0 * s + 6 - i, 0.02),
            ):
                ead = 0.85 - 0.003 * kl - gap
                name, e = _run(f"{loss}-b{beta:g}-s{s}", loss, beta, s, kl, ead, 0.3 + 0.08 * kl)
                exps[name] = e
    fams, _ = matched.families(exps, LEVELS)
    ipo, dpo = fams["demo", "ipo", ()], fams["demo", "sigmoid", ()]
    curves = [frontiers.curves(matched.points(f, matched.KL, "diversity/ead")) for f in (ipo, dpo)]
    assert frontiers.levels(*curves) == []  # no level common to every seed
    d, at = matched.curve_difference(ipo, dpo, matched.KL, "diversity/ead", 1)
    assert d.n_seeds == 5 and d.mean == pytest.approx(-0.02, abs=1e-9)
    assert at[0] == pytest.approx(2.75) and at[-1] == pytest.approx(44.25)  # seeds 0 and 4
