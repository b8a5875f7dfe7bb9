"""Replicates grouped by configuration, and the lines naming the missing ones."""

from prefdiv import names, replicates
from prefdiv.experiments import Experiment


def _exp(seed, loss="sigmoid", state="success", **extra):
    p = {"loss": loss, "beta": 0.1, "beta_end": None, "alpha": 0.5, "label_smoothing": 0.0}
    return Experiment("", state, {**p, "seed": seed, **extra})


def test_replicates_grouped_and_a_failed_one_named():
    ok = {"x-s0": _exp(0), "x-s1": _exp(1), "y-s0": _exp(0, "sft"), "y-s2": _exp(2, "sft")}
    configs, notes = replicates.group(ok)
    assert not notes
    by_label = {c.label: c for c in configs.values()}
    assert by_label["x"].names == {(0, 0): "x-s0", (1, 0): "x-s1"}
    assert by_label["y"].seeds == [0, 2]
    failed = {"x-s2": Experiment("x-s2", "failed")}
    lines = replicates.missing_notes(configs, failed)
    assert "x: seeds 0, 1 of 0, 1, 2 (s2 failed)" in lines
    assert "y: seeds 0, 2 of 0, 1, 2 (s1 missing)" in lines


def test_train_seeds_duplicates_and_wholly_failed_configurations():
    ok = {
        "x-s0-t0": _exp(0, train_seed=0),
        "x-s0-t1": _exp(0, train_seed=1),
        "x-s1-t0": _exp(1, train_seed=0),
        "x-s1": _exp(1),  # the same replicate as x-s1-t0 (train_seed 0)
    }
    configs, notes = replicates.group(ok)
    ((_, c),) = configs.items()
    assert c.names == {(0, 0): "x-s0-t0", (0, 1): "x-s0-t1", (1, 0): "x-s1"} and c.n_train == 2
    assert notes == ["x-s1-t0: same configuration and seeds as x-s1; ignored"]
    failed = {"z-s0": Experiment("z-s0", "failed"), "x-s1-t1": Experiment("x-s1-t1", "failed")}
    lines = replicates.missing_notes(configs, failed)
    assert lines == [
        "x: replicates s0-t0, s0-t1, s1-t0 of s0-t0, s0-t1, s1-t0, s1-t1 (s1-t1 failed)",
        "z: no replicate succeeded (s0 failed)",
    ]
    assert names.replicate({}, "l2-fkl-s3-t2") == (3, 2) and names.replicate({"seed": 1}) == (1, 0)
    assert c.counted() == "2 seeds × 2 train"


def test_rewards_are_standardised_by_their_seeds_reward_scale():
    import pandas as pd
    import pytest

    from prefdiv.experiments import EVAL, PAIRS

    scaled = Experiment(
        "x-s0", params={"seed": 0},
        metrics={
            EVAL: {"reward/mean": 3.0, "reward/mean_ci_low": 2.0, "reward/mean_ci_high": 5.0},
            PAIRS: {"reward_mean": 1.0, "reward_sd": 2.0},
        },
    )  # fmt: skip
    old = Experiment("x-s1", params={"seed": 1}, metrics={EVAL: {"reward/mean": 3.0}})
    tables = {"x-s0": pd.DataFrame({"prompt_id": ["a", "b"], "reward_mean": [1.0, 5.0]})}
    exps, out = replicates.standardise({"x-s0": scaled, "x-s1": old}, tables)
    ev = exps["x-s0"].eval
    assert ev["reward/standardised"] == 1.0 and ev["reward/mean"] == 3.0
    assert (ev["reward/standardised_ci_low"], ev["reward/standardised_ci_high"]) == (0.5, 2.0)
    assert out["x-s0"]["reward_z"].tolist() == pytest.approx([0.0, 2.0])
    assert "reward_z" not in tables["x-s0"]  # the caller's tables are left as they were
    assert exps["x-s1"] is old  # no scale (a run from before pairs.json had one): unchanged
