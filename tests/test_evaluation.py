import math
from functools import partial

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


def _perturbed(model, scale: float):
    """A copy of `model` with Gaussian noise of `scale` added to every weight: another policy."""
    import copy

    import torch

    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn_like(p))
    return other


def test_batched_stats_across_prompts_equal_per_prompt_stats(tiny_policy):
    """`rows` > 0 regroups the responses of several prompts into length-sorted forwards: the
    same sums, so the same per-prompt values (float32 on the CPU)."""
    model, tok = tiny_policy
    other = _perturbed(model, 0.1)
    items = [
        (tok("The film was")["input_ids"], [[5, 6, 7, 8], [9, 10, 11]]),
        (tok("A long, long, boring and terrible movie")["input_ids"], [[12, 13], [14] * 9]),
        (tok("Great")["input_ids"], [[15, 16, 17, 18, 19, 20, 21]]),
    ]
    per_prompt = evaluation.sequence_stats(other, model, items, temperature=0.7)
    for rows in (1, 2, 100):
        batched = evaluation.sequence_stats(other, model, items, temperature=0.7, rows=rows)
        assert np.allclose(batched, per_prompt, rtol=1e-5, atol=1e-5), rows


def _every_position_sums(policy, reference, items, temperature):
    """`_token_sums` and `_kl_sums` as they were before the LM head ran on response positions
    only: the head and the log-softmax over every position, zeroed by the mask."""
    import torch
    import torch.nn.functional as F

    out = []
    for chunk in evaluation._chunks(items, 0):  # the caller holds torch.no_grad()
        ids, mask, targets = evaluation._padded(chunk, policy.device)
        pol, ref = (m(input_ids=ids).logits[:, :-1].float() for m in (policy, reference))
        logp, ref_logp = (F.log_softmax(x, -1).gather(-1, targets).squeeze(-1) for x in (pol, ref))
        log_q = F.log_softmax(pol / temperature, -1)
        entropy = -(log_q.exp() * log_q).sum(-1)
        lp, lq = F.log_softmax(pol, -1), F.log_softmax(ref, -1)
        full = (lp.exp() * (lp - lq)).sum(-1).clamp(min=0)
        sums = [((logp - ref_logp) * mask).sum(1), (entropy * mask).sum(1), (full * mask).sum(1)]
        out.append(torch.stack(sums).double().numpy())
    return out


def _rows_keep_their_bits(model, items) -> bool:
    """Whether this host's matrix product gives the LM head's rows over the response positions
    the bits it gives them over every position. Nothing promises it: it depends on how the BLAS
    kernel blocks a product of that many rows. It held on the Xeon (AVX-512) host that wrote
    dvc.lock; on an AMD EPYC Zen 3 (AVX2) the tiny test model's rows differ in the last bit."""
    import torch

    for chunk in evaluation._chunks(items, 0):
        ids, mask, _ = evaluation._padded(chunk, model.device)
        keep = mask.bool()
        every = model(input_ids=ids).logits[:, :-1][keep]
        if not torch.equal(every, evaluation._response_logits(model, ids, keep)):
            return False
    return True


def test_head_on_response_positions_gives_the_same_sums_bit_for_bit(tiny_policy):
    """The evaluation's forwards run the LM head only where a response token is predicted; the
    per-sequence sums (log-ratio, predictive entropy, full-vocabulary KL) equal those of the
    head over every position, which multiplied the other positions by 0: bit for bit where the
    host's matrix product gives a row the same bits whatever the number of rows
    (:func:`_rows_keep_their_bits`), to float32 rounding elsewhere."""
    import torch

    model, tok = tiny_policy
    other = _perturbed(model, 0.1)
    items = [
        (tok("The film was")["input_ids"], [[5, 6, 7, 8], [9, 10, 11], [12] * 9]),
        (tok("A long, long, boring and terrible movie")["input_ids"], [[12, 13], [14] * 9]),
    ]
    with torch.no_grad():  # as sequence_stats and kl_stats run them
        same_bits = all(_rows_keep_their_bits(m, items) for m in (model, other))
        before = _every_position_sums(other, model, items, temperature=0.7)
        chunks = evaluation._chunks(items, 0)
        token_sums = [evaluation._token_sums(other, model, c, 0.7) for c in chunks]
        kl_sums = [evaluation._kl_sums(other, model, c, slice_elements=2**27) for c in chunks]
    same = np.array_equal if same_bits else partial(np.allclose, rtol=1e-6, atol=1e-6)
    for (_, responses), (ratio, entropy, count), (mc, rb, _), old in zip(
        items, token_sums, kl_sums, before, strict=True
    ):
        assert same(ratio, old[0]) and same(mc, old[0])
        assert same(entropy, old[1]) and same(rb, old[2])
        assert count.tolist() == [len(r) for r in responses]


def test_text_metrics_in_worker_processes_equal_in_process():
    kept = [
        [
            {"token_ids": [1, 2, 3, 4], "text": "A wonderful film"},
            {"token_ids": [1, 5], "text": "Awful."},
        ],
        [],
        [{"token_ids": [7, 7, 8], "text": "Boring, boring."}],
    ]
    seeds = [evaluation.draw_seed(0, f"p{i}") for i in range(3)]
    inline, pooled = (
        evaluation._TextMetrics(kept, 50, 2, workers, rarefied=(3, 4), seeds=seeds).result()
        for workers in (0, 2)
    )
    assert len(inline) == 2 and pd.DataFrame(pooled).equals(pd.DataFrame(inline))  # NaN-aware
    assert inline[0]["entropy_rarefied_3"] >= 0 and math.isnan(inline[1]["entropy_rarefied_4"])


def test_vader_judge_orders_sentiment():
    pos, neg = rewards.vader_compound(["A wonderful, brilliant film!", "Awful. I hated it."])
    assert pos > 0.5 and neg < -0.5


def test_summarise_names_cis_and_label_split():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.normal(size=40) for c in evaluation.HEADLINE})
    df["entropy_rarefied_64"] = rng.normal(size=40)
    df.loc[:2, "entropy_rarefied_64"] = np.nan  # three prompts pooled fewer than 64 tokens
    df["label"] = ["negative", "positive"] * 20
    df["n_kept"], df["mean_tokens"], df["tokens_pooled"] = 8, 40.0, 320
    df["n_truncated"] = [2] * 20 + [0] * 20
    whole = {"diversity/across_input_distinct_2": 0.5}
    m = evaluation.summarise(df, n=8, bootstrap=200, seed=0, run_metrics=whole)
    for name in [*evaluation.HEADLINE.values(), "diversity/entropy_rarefied_64"]:
        assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"], name
        assert f"{name}_negative" in m and f"{name}_positive" in m
    assert m["kept_fraction"] == 1.0
    assert m["length/truncated_fraction"] == 40 / 320  # of all kept samples
    assert m["diversity/entropy_rarefied_64_short"] == 3
    assert m["diversity/entropy_rarefied_64"] == pytest.approx(df["entropy_rarefied_64"].mean())
    assert m["diversity/across_input_distinct_2"] == 0.5  # a whole-run number, as it is
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
    samples = [  # kept (≥ 3 tokens): 3, 2, 1 and 0 samples; one of 8 tokens hit the cap
        _prompt_samples([5, 3, 8], 20),
        _prompt_samples([4, 2, 6], 50),
        _prompt_samples([6, 1], 80),
        _prompt_samples([2, 2], 110),
    ]

    def evaluate(at, whole=None):
        return evaluation.per_prompt(
            policy, tok, policy, reward, reward_tok, None, [prompts[i] for i in at],
            n=3, gen=gen, seed=0, entropy_tokens=3, speed=SpeedParams(), kl_samples=2,
            rarefied=(4, 12), samples=[samples[i] for i in at], run_metrics=whole,
        )  # fmt: skip

    whole = {}
    df, per_sample = evaluate(range(4), whole)
    measured, _ = evaluate(range(2))
    assert df["n_kept"].tolist() == [3, 2, 1, 0]
    assert df["n_truncated"].tolist() == [1, 0, 0, 0]
    assert per_sample["truncated"].tolist() == [False, False, True, False, False, False]
    assert per_sample["tokens"].tolist() == [5, 3, 8, 4, 6, 6]
    # the KL of samples of π = π_ref: 0 for the measured prompts, none for the dropped ones
    kl_cols = ["kl_mc", "kl_mc_per_token", "kl_rb", "kl_rb_per_token"]
    assert (df.loc[:1, kl_cols] == 0).all().all() and df.loc[2:, kl_cols].isna().all().all()
    # pooled tokens 16 and 10: the 12-token budget is short for the second prompt
    assert df["entropy_rarefied_12"].notna().tolist() == [True, False, False, False]
    first = [samples[0][0]["token_ids"], samples[1][0]["token_ids"]]  # measured prompts only
    expected = evaluation.across_input(first, len(tok))
    assert whole == expected and set(whole) >= {"diversity/across_input_distinct_2"}
    # the measured prompts' rows are what they are without the dropped ones (NaN-aware) …
    assert df.iloc[:2].equals(measured)
    assert df.loc[:1, "distinct_2"].notna().all() and df.loc[:1, "reward_mean"].notna().all()
    # … and a dropped prompt has no metric, though its one kept sample has a reward
    assert df.loc[2:, list(evaluation.HEADLINE)].isna().all().all()
    assert per_sample["prompt_id"].tolist().count("p2") == 1

    m = evaluation.summarise(df, n=3, bootstrap=50, seed=0)
    alone = evaluation.summarise(measured, n=3, bootstrap=50, seed=0)
    assert (m["n_prompts"], m["n_prompts_used"], m["n_prompts_dropped"]) == (4, 2, 2)
    assert m["diversity/entropy_rarefied_12_short"] == 1  # of the measured prompts
    assert m["length/truncated_fraction"] == 1 / 6
    assert (alone["n_prompts_used"], alone["n_prompts_dropped"]) == (2, 0)
    for name in evaluation.HEADLINE.values():
        for key in (name, f"{name}_ci_low", f"{name}_negative", f"{name}_positive"):
            assert m[key] == alone[key] or math.isnan(m[key]) and math.isnan(alone[key]), key
    assert m["kept_fraction"] == 6 / 12  # the sampling statistics still see every prompt
    warning = evaluation.dropped_warning(m, gen.min_tokens)
    assert warning.startswith("prefdiv: warning: 2 of 4 test prompts") and "\n" not in warning
    assert "n_prompts_dropped" in warning and "other 2" in warning
    assert evaluation.dropped_warning(alone, gen.min_tokens) is None


# --- KL(π‖π_ref) from samples of π, against the exact KL of a model small enough to enumerate -

EOS, VOCAB, CAP = 0, 5, 3  # token 0 is EOS; sequences of ≤ 3 new tokens


@pytest.fixture(scope="module")
def five_token_models():
    """Two random GPT-2s over a 5-token vocabulary (policy, reference) and a word tokenizer."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = {"<eos>": EOS, "a": 1, "b": 2, "c": 3, "d": 4}
    backend = Tokenizer(WordLevel(words, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    tok.padding_side = "left"

    def model(seed):
        torch.manual_seed(seed)
        # initializer_range 0.2: the two models differ by 0.57 nats; P(cap) = 0.56
        cfg = GPT2Config(
            vocab_size=VOCAB, n_positions=8, n_embd=8, n_layer=1, n_head=2, initializer_range=0.2,
            eos_token_id=EOS, bos_token_id=EOS,
        )  # fmt: skip
        return GPT2LMHeadModel(cfg).eval()

    return model(1), model(2), tok


def _exact_kl(policy, reference, prompt: list[int]) -> tuple[float, float]:
    """(KL(π‖π_ref) over every sequence of ≤ CAP tokens that ends at EOS or the cap, P(cap)),
    by enumeration: log π(y) from plain forwards of all of them (right-padded: causal)."""
    import itertools

    import torch

    words = range(1, VOCAB)
    seqs = [[EOS]]
    seqs += [[*w, EOS] for k in range(1, CAP) for w in itertools.product(words, repeat=k)]
    seqs += [list(w) for w in itertools.product(words, repeat=CAP)]  # capped: no EOS
    ids = torch.tensor([prompt + y + [EOS] * (CAP - len(y)) for y in seqs])

    def logp(model):
        with torch.no_grad():
            out = model(input_ids=ids).logits.log_softmax(-1).double()
        at = len(prompt) - 1
        return np.array(
            [sum(float(out[i, at + t, tok]) for t, tok in enumerate(y)) for i, y in enumerate(seqs)]
        )

    lp, lq = logp(policy), logp(reference)
    p = np.exp(lp)
    assert p.sum() == pytest.approx(1.0, abs=1e-6)  # every sequence the sampler can end with
    capped = np.array([len(y) == CAP and EOS not in y for y in seqs])
    return float((p * (lp - lq)).sum()), float(p[capped].sum())


def _kl_samples(policy, tok, n: int, seed: int):
    from prefdiv import sampling
    from prefdiv.config import GenerationParams

    gen = GenerationParams(
        max_new_tokens=CAP,
        temperature=0.7,
        top_k=2,
        no_repeat_ngram_size=2,
        min_tokens=2,
        batch_size=1,
    )  # fmt: skip — the study's sampler, which kl_generation must undo
    kl_gen = evaluation.kl_generation(gen)
    assert (kl_gen.temperature, kl_gen.top_k, kl_gen.no_repeat_ngram_size) == (1.0, 0, 0)
    assert (kl_gen.min_tokens, kl_gen.max_new_tokens) == (0, CAP)
    [drawn] = sampling.sample(policy, tok, ["a b"], n=n, gen=kl_gen, seed=seed, desc="t")
    return [evaluation.kl_sequence(r["token_ids"], eos=EOS, cap=CAP) for r in drawn]


def test_kl_estimates_from_samples_of_the_policy_converge_to_the_exact_kl(five_token_models):
    policy, reference, tok = five_token_models
    prompt = tok("a b")["input_ids"]
    exact, p_capped = _exact_kl(policy, reference, prompt)
    assert exact > 0.3  # a KL worth estimating
    drawn = _kl_samples(policy, tok, 4000, seed=0)
    # every sample its own item: per-sample values, in one forward of 4000 rows
    items = [(prompt, [s]) for s, _ in drawn]
    stats = np.array(evaluation.kl_stats(policy, reference, items, rows=4000))
    mc, rb, tokens = stats.T
    se = lambda x: x.std(ddof=1) / math.sqrt(len(x))  # noqa: E731
    assert abs(mc.mean() - exact) < 4 * se(mc), (mc.mean(), exact, se(mc))
    assert abs(rb.mean() - exact) < 4 * se(rb), (rb.mean(), exact, se(rb))
    assert se(rb) < se(mc)  # Rao-Blackwellised: the draw of each token integrated out
    assert (rb >= 0).all() and (mc < 0).any()  # a single MC term can be negative, RB never
    # EOS is counted, the truncated samples are exactly those of CAP tokens without EOS
    truncated = np.array([t for _, t in drawn])
    lengths = np.array([len(s) for s, _ in drawn])
    assert (tokens == lengths).all() and (lengths[truncated] == CAP).all()
    assert all(s[-1] == EOS for s, t in drawn if not t) and all(EOS not in s for s, t in drawn if t)
    assert abs(truncated.mean() - p_capped) < 4 * math.sqrt(p_capped * (1 - p_capped) / 4000)
    # one item of all the samples: the means, regrouped (rows = 0: one forward per item) …
    [whole] = evaluation.kl_stats(policy, reference, [(prompt, [s for s, _ in drawn])])
    assert whole == pytest.approx((mc.mean(), rb.mean(), lengths.mean()))
    # … and the full-vocabulary sums taken one sequence at a time: the same values
    one_by_one = evaluation.kl_stats(policy, reference, items[:50], rows=50, slice_elements=1)
    assert np.allclose(one_by_one, stats[:50], rtol=1e-6, atol=1e-7)


def test_kl_estimates_are_zero_when_the_policy_is_the_reference(five_token_models):
    import copy

    policy, _, tok = five_token_models
    prompt = tok("a b")["input_ids"]
    seqs = [s for s, _ in _kl_samples(policy, tok, 64, seed=1)]
    for reference in (policy, copy.deepcopy(policy)):  # the same object, or equal weights
        [(mc, rb, tokens)] = evaluation.kl_stats(policy, reference, [(prompt, seqs)])
        assert (mc, rb) == (0.0, 0.0) and 1 <= tokens <= CAP


def test_kl_seed_is_a_stream_of_its_own():
    from prefdiv import seeds

    assert evaluation.kl_seed(0) == evaluation.kl_seed(0) != 0
    others = {seeds.replicate_seed(s, t) for s in range(4) for t in range(4)}
    assert not {evaluation.kl_seed(s) for s in others} & others


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # embedder None: NaN embedding, empty mean
def test_kl_samples_leave_the_diversity_samples_and_every_other_column_as_they_were(
    tiny_policy, hub_like
):
    """The KL samples are drawn on their own seed after the diversity samples: with or without
    them, every other per-prompt value and per-sample reward is bit-identical."""
    import copy

    import torch

    from prefdiv import load
    from prefdiv.config import GenerationParams, SpeedParams

    policy, tok = tiny_policy
    reference = copy.deepcopy(policy)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.2 * torch.randn_like(p))
    reward, reward_tok = load.load_reward(hub_like / "distilbert-imdb")
    gen = GenerationParams(
        max_new_tokens=6, temperature=0.7, top_k=40, no_repeat_ngram_size=2, min_tokens=2,
        batch_size=2,
    )  # fmt: skip
    texts = ["The film was", "A long story", "Great acting"]
    prompts = [{"prompt_id": f"p{i}", "prompt": t, "label": i % 2} for i, t in enumerate(texts)]

    def evaluate(kl_samples):
        return evaluation.per_prompt(
            policy, tok, reference, reward, reward_tok, None, prompts, n=3, gen=gen, seed=5,
            entropy_tokens=2, speed=SpeedParams(), kl_samples=kl_samples, rarefied=(6,),
        )  # fmt: skip

    (without, s0), (with_kl, s1) = evaluate(0), evaluate(4)
    assert s0.equals(s1)
    assert with_kl[["kl_mc", "kl_rb"]].notna().all().all() and (with_kl["kl_rb"] > 0).all()
    assert without[["kl_mc", "kl_rb"]].isna().all().all()
    others = [c for c in without if not c.startswith("kl_")]
    assert with_kl[others].equals(without[others])  # NaN-aware, exact
