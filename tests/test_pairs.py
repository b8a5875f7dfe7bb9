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


def _divpo_prompt(rewards, logps, truncated=None):
    row = _prompt("d", rewards)
    for r, lp, t in zip(row["responses"], logps, truncated or [False] * len(logps), strict=True):
        r |= {"logp": lp, "truncated": t}
    return row


def test_divpo_pairs_the_most_diverse_of_the_top_with_the_least_diverse_of_the_bottom():
    # k = 6, ρ = 0.3: pools of ceil(1.8) = 2. Top by reward: d-0 (3.0), d-1 (2.5); bottom:
    # d-4 (-1.0), d-5 (-2.0). D = −logp: the top's most diverse is d-1 (logp −40), the bottom's
    # least diverse d-4 (logp −5). The middle (d-2, d-3) and the likeliest top sample never pair.
    row = _divpo_prompt([3.0, 2.5, 1.0, 0.0, -1.0, -2.0], [-10, -40, -90, -1, -5, -20])
    out, counts = pairs.make_pairs([row], min_margin=1e-3, strategy="divpo", rho=0.3)
    assert [(p["chosen"], p["rejected"]) for p in out] == [("d-1", "d-4")]
    assert counts["n_candidates"] == counts["n_pairs"] == 1
    # with ρ small enough for pools of one, it is best vs worst by reward, whatever D says
    out, _ = pairs.make_pairs([row], min_margin=1e-3, strategy="divpo", rho=0.1)
    assert [(p["chosen"], p["rejected"]) for p in out] == [("d-0", "d-5")]


def test_divpo_at_k4_uses_pools_of_two_and_a_tie_is_dropped():
    row = _divpo_prompt([1.0, 1.0, 0.0, 0.0], [-3, -9, -2, -8])
    out, counts = pairs.make_pairs([row], min_margin=1e-3, strategy="divpo", rho=0.3)
    assert [(p["chosen"], p["rejected"]) for p in out] == [("d-1", "d-2")]
    tied = _divpo_prompt([1.0, 1.0, 1.0, 1.0], [-3, -9, -2, -8])
    out, counts = pairs.make_pairs([tied], min_margin=1e-3, strategy="divpo", rho=0.3)
    assert out == [] and counts["n_ties"] == 1
    assert pairs.make_pairs([_divpo_prompt([1.0], [-1])], 0.0, "divpo")[1]["n_candidates"] == 0


def test_pairs_carry_the_truncation_of_each_response():
    row = _divpo_prompt([2.0, 1.0, 0.0], [-1, -2, -3], truncated=[True, False, True])
    out, _ = pairs.make_pairs([row], min_margin=0.0)
    got = {
        (p["chosen"], p["rejected"]): (p["chosen_truncated"], p["rejected_truncated"]) for p in out
    }
    assert got == {
        ("d-0", "d-1"): (True, False),
        ("d-0", "d-2"): (True, True),
        ("d-1", "d-2"): (False, True),
    }
    with pytest.raises(ValueError, match="allowed: all, divpo"):
        pairs.make_pairs([row], 0.0, strategy="best-vs-worst")
