from math import comb

import numpy as np
import pytest

from prefdiv import pairs


def _prompt(pid, rewards):
    return {
        "prompt_id": pid,
        "prompt": f"p{pid}",
        "label": 1,
        "responses": [{"text": f"{pid}-{i}", "reward": r} for i, r in enumerate(rewards)],
    }


def test_every_pair_once_ties_dropped_chosen_higher():
    rows = [_prompt("a", [0.5, 2.0, 0.5, -1.0]), _prompt("b", [1.0, 1.0004]), _prompt("c", [3.0])]
    out, counts = pairs.make_pairs(rows, min_margin=1e-3)
    candidates = comb(4, 2) + comb(2, 2) + comb(1, 2)
    assert counts["n_candidates"] == candidates == 7
    assert counts["n_ties"] == 2  # a: 0.5 vs 0.5, b: |Δ| = 4e-4 < 1e-3
    assert counts["n_pairs"] == len(out) == candidates - 2
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in out)
    every = [0.5, 2.0, 0.5, -1.0, 1.0, 1.0004, 3.0]  # the scale a seed's rewards are judged on
    assert counts["reward_mean"] == pytest.approx(np.mean(every))
    assert counts["reward_sd"] == pytest.approx(np.std(every, ddof=1))
    assert {(p["chosen"], p["rejected"]) for p in out} == {
        ("a-1", "a-0"),
        ("a-0", "a-3"),
        ("a-1", "a-2"),
        ("a-1", "a-3"),
        ("a-2", "a-3"),
    }


def test_split_by_prompt_keeps_a_prompt_on_one_side():
    rows = [_prompt(str(i), [0.0, 1.0, 2.0]) for i in range(20)]
    out, _ = pairs.make_pairs(rows, min_margin=0.0)
    train, val = pairs.split_by_prompt(out, 0.25, seed=0)
    assert len(train) + len(val) == len(out)
    assert {p["prompt_id"] for p in val} & {p["prompt_id"] for p in train} == set()
    assert len({p["prompt_id"] for p in val}) == 5
