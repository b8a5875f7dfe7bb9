import math

import numpy as np
import pandas as pd
import pytest

from prefdiv import evaluation, rewards


def test_kl_is_zero_when_policy_is_reference(tiny_policy):
    model, tok = tiny_policy
    prompt = tok("The film was")["input_ids"]
    responses = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]
    [(pred_h, kl)] = evaluation.sequence_stats(model, model, [(prompt, responses)], temperature=0.7)
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
    [(_, kl)] = evaluation.sequence_stats(other, model, [(prompt, responses)], temperature=1.0)
    assert kl != 0.0 and math.isfinite(kl)


def test_predictive_entropy_padding_does_not_leak(tiny_policy):
    """A response's stats must not change when a longer response shares its batch."""
    model, tok = tiny_policy
    prompt = tok("The film was")["input_ids"]
    [alone] = evaluation.sequence_stats(model, model, [(prompt, [[5, 6, 7]])], temperature=0.7)
    [both] = evaluation.sequence_stats(
        model, model, [(prompt, [[5, 6, 7], [5, 6, 7, 8, 9, 10]])], temperature=0.7
    )
    assert both[0] != pytest.approx(alone[0], rel=1e-5)  # the longer response's positions count
    [same] = evaluation.sequence_stats(
        model, model, [(prompt, [[5, 6, 7], [5, 6, 7]])], temperature=0.7
    )
    assert same[0] == pytest.approx(alone[0], rel=1e-5)


def test_batched_stats_across_prompts_equal_per_prompt_stats(tiny_policy):
    """`rows` > 0 regroups the responses of several prompts into length-sorted forwards: the
    same sums, so the same per-prompt values (float32 on the CPU)."""
    import copy

    import torch

    model, tok = tiny_policy
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    items = [
        (tok("The film was")["input_ids"], [[5, 6, 7, 8], [9, 10, 11]]),
        (tok("A long, long, boring and terrible movie")["input_ids"], [[12, 13], [14] * 9]),
        (tok("Great")["input_ids"], [[15, 16, 17, 18, 19, 20, 21]]),
    ]
    per_prompt = evaluation.sequence_stats(other, model, items, temperature=0.7)
    for rows in (1, 2, 100):
        batched = evaluation.sequence_stats(other, model, items, temperature=0.7, rows=rows)
        assert np.allclose(batched, per_prompt, rtol=1e-5, atol=1e-5), rows


def test_text_metrics_in_worker_processes_equal_in_process():
    kept = [
        [
            {"token_ids": [1, 2, 3, 4], "text": "A wonderful film"},
            {"token_ids": [1, 5], "text": "Awful."},
        ],
        [],
        [{"token_ids": [7, 7, 8], "text": "Boring, boring."}],
    ]
    inline = evaluation._TextMetrics(kept, vocab=50, entropy_tokens=2, workers=0).result()
    pooled = evaluation._TextMetrics(kept, vocab=50, entropy_tokens=2, workers=2).result()
    assert len(inline) == 2 and pd.DataFrame(pooled).equals(pd.DataFrame(inline))  # NaN-aware


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


def _prompt_samples(lengths: list[int], first: int) -> list[dict]:
    """Samples of one prompt with these token counts (distinct ids, texts naming them)."""
    ids = [list(range(first + 10 * i, first + 10 * i + n)) for i, n in enumerate(lengths)]
    return [{"token_ids": t, "text": f"sample {t[0]} of {len(t)} tokens"} for t in ids]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # embedder None: NaN embedding, empty mean
def test_prompts_with_fewer_than_two_kept_samples_are_dropped_and_counted(tiny_policy, hub_like):
    from prefdiv import load
    from prefdiv.config import GenerationParams, SpeedParams

    policy, tok = tiny_policy
    reward, reward_tok = load.load_reward(hub_like / "distilbert-imdb")
    gen = GenerationParams(
        max_new_tokens=8, temperature=0.7, top_k=0, no_repeat_ngram_size=0, min_tokens=3,
        batch_size=4,
    )  # fmt: skip
    texts = ["The film was", "A long story", "Great", "Awful"]
    prompts = [{"prompt_id": f"p{i}", "prompt": t, "label": i % 2} for i, t in enumerate(texts)]
    samples = [  # kept (≥ 3 tokens): 3, 2, 1 and 0 samples
        _prompt_samples([5, 3, 7], 20),
        _prompt_samples([4, 2, 6], 50),
        _prompt_samples([6, 1], 80),
        _prompt_samples([2, 2], 110),
    ]

    def evaluate(at):
        return evaluation.per_prompt(
            policy, tok, policy, reward, reward_tok, None, [prompts[i] for i in at],
            n=3, gen=gen, seed=0, entropy_tokens=3, speed=SpeedParams(),
            samples=[samples[i] for i in at],
        )  # fmt: skip

    df, per_sample = evaluate(range(4))
    measured, _ = evaluate(range(2))
    assert df["n_kept"].tolist() == [3, 2, 1, 0]
    # the measured prompts' rows are what they are without the dropped ones (NaN-aware) …
    assert df.iloc[:2].equals(measured)
    assert df.loc[:1, "distinct_2"].notna().all() and df.loc[:1, "reward_mean"].notna().all()
    # … and a dropped prompt has no metric, though its one kept sample has a reward
    assert df.loc[2:, list(evaluation.HEADLINE)].isna().all().all()
    assert per_sample["prompt_id"].tolist().count("p2") == 1

    m = evaluation.summarise(df, n=3, bootstrap=50, seed=0)
    alone = evaluation.summarise(measured, n=3, bootstrap=50, seed=0)
    assert (m["n_prompts"], m["n_prompts_used"], m["n_prompts_dropped"]) == (4, 2, 2)
    assert (alone["n_prompts_used"], alone["n_prompts_dropped"]) == (2, 0)
    for name in evaluation.HEADLINE.values():
        for key in (name, f"{name}_ci_low", f"{name}_negative", f"{name}_positive"):
            assert m[key] == alone[key] or math.isnan(m[key]) and math.isnan(alone[key]), key
    assert m["kept_fraction"] == 6 / 12  # the sampling statistics still see every prompt
    warning = evaluation.dropped_warning(m, gen.min_tokens)
    assert warning.startswith("prefdiv: warning: 2 of 4 test prompts") and "\n" not in warning
    assert "n_prompts_dropped" in warning and "other 2" in warning
    assert evaluation.dropped_warning(alone, gen.min_tokens) is None
