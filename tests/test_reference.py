"""The reference study's claims, judged on constructed replicates; its catalogue of methods."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefdiv import catalogue, evaluation, matched, names, plan, reference
from prefdiv.errors import UserError
from prefdiv.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def _runs(offsets: dict, *, n=40, col="entropy", noise=0.1, rng=None):
    """Per-prompt tables {(seed, train_seed): DataFrame}: value = offset + shared prompt effect
    of the seed + noise."""
    rng = rng or np.random.default_rng(0)
    out = {}
    for (seed, t), off in offsets.items():
        effect = np.random.default_rng(100 + seed).normal(0, 0.3, n)  # same prompts per seed
        index = pd.Index([f"s{seed}-p{i}" for i in range(n)], name="prompt_id")
        out[seed, t] = pd.DataFrame({col: off + effect + rng.normal(0, noise, n)}, index=index)
    return out


def _by_seed(values, t=0):
    return {(s, t): v for s, v in enumerate(values)}


def test_claims_come_out_as_constructed():
    # Per-seed offsets of each method's entropy (6 seeds; prompts shared within a seed).
    dpo = np.array([0.0, 0.1, -0.1, 0.05, -0.05, 0.02])
    offsets = {
        "DPO": dpo,
        "SFT": dpo + 1.0,  # claim 1: SFT > DPO and SFT > hinge hold, hinge ≈ DPO holds
        "hinge": dpo + np.array([0.02, -0.02, 0.01, -0.01, 0.0, 0.01]),
        "IPO 0.1": dpo + 1.0,  # claim 3 holds
        "IPO 0.3": dpo + 1.2,
        "IPO 0.5": dpo + 1.1,
        "cDPO": dpo + 0.5,
        "DPO anneal": dpo + 2.0,  # claim 4 (IPO anneal > DPO anneal) reversed
        "IPO anneal": dpo + 1.0,
        "JSD": dpo[:3] + 1.0,  # 3 seeds only: claim 2b's parts need 5
    }
    rng = np.random.default_rng(0)
    runs = {}
    for m, off in offsets.items():
        runs[m] = _runs(_by_seed(off), rng=rng, noise=0.05)
        for df in runs[m].values():
            df["self_bleu"] = 30 - 5 * df["entropy"]  # lower = more diverse: same verdicts
    plan = Plan(0.05, 5, {"1": "entropy"}, {"entropy": 0.2, "self_bleu": 1.0})
    rows = reference.claims(runs, plan, n_boot=200)
    verdicts = {(r["claim"], r["column"]): r["verdict"] for r in rows}
    for col in ("entropy", "self_bleu"):
        assert verdicts["1", col] == "holds"
        assert verdicts["3", col] == "holds"
        assert verdicts["4", col] == "reversed"
        assert verdicts["2a", col] == "missing"  # FKL, α not run
        assert verdicts["2b", col] == "too few seeds"  # JSD has 3 seeds, the others none
    assert {r["column"] for r in rows} == {"entropy", "self_bleu"}  # no reward: claim 5 skipped
    (one,) = [r for r in rows if r["claim"] == "1" and r["column"] == "entropy"]
    assert one["primary"] and [q.verdict for q in one["parts"]] == ["holds"] * 3
    assert one["p_adjusted"] < 0.05 and one["p"] <= one["p_adjusted"]
    (four,) = [r for r in rows if r["claim"] == "4" and r["column"] == "self_bleu"]
    # self-BLEU rises by 5 per entropy unit lost; oriented so that > 0 = more diverse
    assert four["parts"][0].estimate.mean == pytest.approx(-5.0, abs=0.25)
    # too narrow a margin for "hinge ≈ DPO": not shown close, so claim 1 cannot hold
    tight = reference.claims(runs, replace(plan, margins={"entropy": 1e-4}), n_boot=200)
    (one,) = [r for r in tight if r["claim"] == "1" and r["column"] == "entropy"]
    assert one["verdict"] != "holds" and one["parts"][2].verdict != "holds"


def test_the_plan_file_is_checked(tmp_path):
    ids = [cid for cid, *_ in reference.CLAIMS] + [matched.LEVEL4]
    found = plan.load(ROOT / "analysis.yaml", ids)
    assert found.min_seeds == 5 and found.alpha == 0.05 and set(found.primary) == set(ids)
    assert set(found.primary.values()) <= set(catalogue.BY_COLUMN)
    bad = tmp_path / "plan.yaml"
    for text, says in [
        ("alpha: 0.05\nmin_seeds: 5\nprimary: {}\n", "expected exactly the keys"),
        ("alpha: 0.05\nmin_seeds: 1\nprimary: {}\nmargins: {}\n", "min_seeds = 1"),
        ("alpha: 0.05\nmin_seeds: 5\nprimary: {'1': nope}\nmargins: {}\n", "'nope' is not"),
        ("alpha: 0.05\nmin_seeds: 5\nprimary: {}\nmargins: {ead: -1}\n", "margins.ead = -1"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserError, match=says):
            plan.load(bad)
    bad.write_text("alpha: 0.05\nmin_seeds: 5\nprimary: {'1': ead}\nmargins: {}\n")
    with pytest.raises(UserError, match="no metric for claim '2a'"):
        plan.load(bad, ids)


def test_every_claim_method_names_one_configuration():
    keys = reference.method_keys()
    assert len(keys) == len(reference.METHODS) == 14
    assert keys[names.config_key("cdpo", 0.1, {"label_smoothing": 0.15})] == "cDPO"
    parts = {x for *_, ps in reference.CLAIMS for a, _, b in ps for x in (a, b)}
    assert parts <= set(reference.METHODS)


def test_the_catalogue_is_what_the_evaluation_writes():
    """One catalogue: the evaluate stage's columns and names are derived from it, and each
    name, column and claim metric is there once."""
    assert evaluation.HEADLINE == {m.column: m.key for m in catalogue.METRICS if not m.derived}
    assert len(catalogue.BY_KEY) == len(catalogue.BY_COLUMN) == len(catalogue.METRICS)
    assert [m.column for m in catalogue.REWARD] == ["reward_z"]
    signs = {m.column: m.sign for m in catalogue.DIVERSITY}
    assert signs == {
        "entropy": 1, "entropy_fair": 1, "distinct_2": 1, "ead": 1, "self_bleu": -1,
        "embedding": 1, "entropy_gap": 1, "vendi": 1,
    }  # fmt: skip
