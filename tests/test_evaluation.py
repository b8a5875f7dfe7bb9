import math

import numpy as np
import pandas as pd
import pytest

from prefdiv import evaluation, rewards


def test_kl_is_zero_when_policy_is_reference(tiny_policy):
    model, tok = tiny_policy
    prompt = tok("The film was")["input_ids"]
    responses = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]
    pred_h, kl = evaluation.sequence_stats(model, model, prompt, responses, temperature=0.7)
    assert kl == 0.0
    assert 0.0 < pred_h <= math.log(len(tok)) + 1e-6  # entropy of a distribution over V tokens


def test_kl_is_positive_for_another_policy(tiny_policy):
    import copy

    import torch

    model, tok = tiny_policy
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5 * torch.randn_like(p))
    prompt = tok("The film was")["input_ids"]
    responses = [[5, 6, 7, 8], [9, 10, 11]]
    # KL estimate on samples not drawn from `other` can be of either sign; its magnitude moves
    _, kl = evaluation.sequence_stats(other, model, prompt, responses, temperature=1.0)
    assert kl != 0.0 and math.isfinite(kl)


def test_predictive_entropy_padding_does_not_leak(tiny_policy):
    """A response's stats must not change when a longer response shares its batch."""
    model, tok = tiny_policy
    prompt = tok("The film was")["input_ids"]
    alone = evaluation.sequence_stats(model, model, prompt, [[5, 6, 7]], temperature=0.7)
    both = evaluation.sequence_stats(model, model, prompt, [[5, 6, 7], [5, 6, 7]], temperature=0.7)
    assert both[0] == pytest.approx(alone[0], rel=1e-5)


def test_vader_judge_orders_sentiment():
    pos, neg = rewards.vader_compound(["A wonderful, brilliant film!", "Awful. I hated it."])
    assert pos > 0.5 and neg < -0.5


def test_summarise_names_cis_and_label_split():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.normal(size=40) for c in evaluation.HEADLINE})
    df["label"] = ["negative", "positive"] * 20
    df["n_kept"], df["mean_tokens"], df["tokens_pooled"] = 8, 40.0, 320
    m = evaluation.summarise(df, n=8, bootstrap=200, seed=0)
    for name in evaluation.HEADLINE.values():
        assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"], name
        assert f"{name}_negative" in m and f"{name}_positive" in m
    assert m["kept_fraction"] == 1.0
    assert m["reward/mean_negative"] == pytest.approx(df["reward_mean"][::2].mean())
