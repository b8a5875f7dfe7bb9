"""The reference study's claims, judged on constructed replicates; its catalogue of methods."""

import numpy as np
import pandas as pd
import pytest

from prefdiv import catalogue, evaluation, names, reference


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
    # Per-seed offsets of each method's entropy (3 seeds; prompts shared within a seed).
    dpo = np.array([0.0, 0.1, -0.1])
    offsets = {
        "DPO": dpo,
        "SFT": dpo + 1.0,  # claim 1: SFT > DPO holds …
        "hinge": dpo + 1.0 + np.array([0.9, -0.9, 0.05]),  # … SFT > hinge, hinge ≈ DPO: unclear
        "IPO 0.1": dpo + 1.0,  # claim 3 holds
        "IPO 0.3": dpo + 1.2,
        "IPO 0.5": dpo + 1.1,
        "cDPO": dpo + 0.5,
        "DPO anneal": dpo + 2.0,  # claim 4 (IPO anneal > DPO anneal) reversed
        "IPO anneal": dpo + 1.0,
    }
    rng = np.random.default_rng(0)
    runs = {}
    for m, off in offsets.items():
        runs[m] = _runs(_by_seed(off), rng=rng, noise=0.05)
        for df in runs[m].values():
            df["self_bleu"] = 30 - 5 * df["entropy"]  # lower = more diverse: same verdicts
    rows = reference.claims(runs, n_boot=200)
    verdicts = {(r["claim"], r["column"]): r["verdict"] for r in rows}
    for col in ("entropy", "self_bleu"):
        assert verdicts["1", col] == "inconclusive"
        assert verdicts["3", col] == "holds"
        assert verdicts["4", col] == "reversed"
        assert verdicts["2a", col] == "missing"  # FKL, JSD, α not run
    assert {r["column"] for r in rows} == {"entropy", "self_bleu"}  # no reward: claim 5 skipped
    (one,) = [r for r in rows if r["claim"] == "1" and r["column"] == "entropy"]
    assert [v for *_, v in one["parts"]] == ["holds", "inconclusive", "inconclusive"]
    (four,) = [r for r in rows if r["claim"] == "4" and r["column"] == "self_bleu"]
    # self-BLEU rises by 5 per entropy unit lost; oriented so that > 0 = more diverse
    assert four["parts"][0][3].mean == pytest.approx(-5.0, abs=0.25)


def test_every_claim_method_names_one_configuration():
    keys = reference.method_keys()
    assert len(keys) == len(reference.METHODS) == 14
    assert keys[names.config_key("cdpo", 0.1, {"label_smoothing": 0.15})] == "cDPO"
    parts = {x for *_, ps in reference.CLAIMS for a, _, b in ps for x in (a, b)}
    assert parts <= set(reference.METHODS)


def test_the_catalogue_is_what_the_evaluation_writes():
    """One catalogue: the evaluate stage's columns and names are derived from it, and each
    name, column and claim metric is there once."""
    assert evaluation.HEADLINE == {m.column: m.key for m in catalogue.METRICS}
    assert len(catalogue.BY_KEY) == len(catalogue.BY_COLUMN) == len(catalogue.METRICS)
    assert [m.column for m in catalogue.REWARD] == ["reward_mean"]
    signs = {m.column: m.sign for m in catalogue.DIVERSITY}
    assert signs == {
        "entropy": 1, "entropy_fair": 1, "distinct_2": 1, "self_bleu": -1, "embedding": 1,
    }  # fmt: skip
