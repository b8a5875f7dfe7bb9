import pytest

from prefdiv import sampling
from prefdiv.config import GenerationParams


def _gen(**kw):
    base = dict(
        max_new_tokens=8,
        temperature=1.0,
        top_k=1,
        no_repeat_ngram_size=0,
        min_tokens=0,
        batch_size=8,
    )
    return GenerationParams(**{**base, **kw})


def test_left_padding_gives_each_prompt_its_own_continuation(tiny_policy):
    """top_k=1 makes sampling greedy: a prompt's continuation must not depend on its batch.

    With right padding (the reference study's bug) the short prompt would continue from pads.
    """
    model, tok = tiny_policy
    short, long = "A terrible film.", "I loved every minute of it; a beautiful, funny and clever"
    alone = sampling.sample(model, tok, [short], n=1, gen=_gen(), seed=0, desc="t")
    batched = sampling.sample(model, tok, [long, short], n=2, gen=_gen(), seed=0, desc="t")
    assert len(batched) == 2 and all(len(s) == 2 for s in batched)
    assert batched[1][0]["token_ids"] == alone[0][0]["token_ids"]
    assert batched[1][0]["text"] == tok.decode(alone[0][0]["token_ids"])


def test_keep_drops_short_responses():
    rs = [{"text": "", "token_ids": [1] * n} for n in (3, 10, 12)]
    assert [len(r["token_ids"]) for r in sampling.keep(rs, 10)] == [10, 12]


def test_sample_rows_are_the_sample_stages_rows_of_kept_responses():
    reviews = [{"id": "r7", "label": 1, "text": "full"}, {"id": "r2", "label": 0, "text": "x"}]
    samples = [
        [
            {"text": "long", "token_ids": [1, 2, 3], "truncated": True, "logp": -4.5},
            {"text": "short", "token_ids": [1], "truncated": False, "logp": -1.0},
        ],
        [{"text": "a", "token_ids": [4], "truncated": False}],
    ]
    rows = sampling.sample_rows(reviews, ["P7", "P2"], samples, min_tokens=2)
    long = {"text": "long", "tokens": 3, "truncated": True, "logp": -4.5}
    assert rows == [
        {"prompt_id": "r7", "label": 1, "prompt": "P7", "responses": [long]},
        {"prompt_id": "r2", "label": 0, "prompt": "P2", "responses": []},
    ]
    assert list(rows[0]) == ["prompt_id", "label", "prompt", "responses"]  # the file's key order


def test_decode_equals_generate_when_greedy(tiny_policy):
    """Same cache, positions, padding and n-gram ban as `generate()`: top_k=1 gives its tokens."""
    import torch

    model, tok = tiny_policy
    gen = _gen(max_new_tokens=20, no_repeat_ngram_size=2, temperature=0.7)
    enc = tok(
        ["A terrible film.", "I loved every minute of it; a beautiful"],
        return_tensors="pt",
        padding=True,
    )
    ours = sampling.decode(
        model, enc["input_ids"], enc["attention_mask"], gen=gen, eos_id=-1, pad_id=0
    )
    hf = model.generate(
        **enc, do_sample=False, no_repeat_ngram_size=2, max_new_tokens=20, pad_token_id=0
    )
    assert torch.equal(ours, hf[:, enc["input_ids"].shape[1] :])


def test_sampled_tokens_come_from_the_top_k(tiny_policy):

    model, tok = tiny_policy
    enc = tok(["The film was"] * 64, return_tensors="pt", padding=True)
    first = sampling.decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        gen=_gen(top_k=3, max_new_tokens=1),
        eos_id=-1,
        pad_id=0,
    )[:, 0]
    top3 = set(model(**enc).logits[0, -1].topk(3).indices.tolist())
    assert set(first.tolist()) <= top3 and len(set(first.tolist())) > 1  # sampled, within top-k


def test_static_decoder_equals_dynamic_decode_when_greedy(tiny_policy):
    """The static-cache step (the path a CUDA graph replays on GPU) gives `decode`'s tokens: same
    prefill, attention over written slots only, same ban; a short batch is filled and trimmed."""
    import torch

    from prefdiv import decoding

    model, tok = tiny_policy
    gen = _gen(max_new_tokens=20, no_repeat_ngram_size=2, temperature=0.7)
    enc = tok(
        ["A terrible film.", "I loved every minute of it; a beautiful", "Boring"],
        return_tensors="pt",
        padding=True,
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    plain = sampling.decode(model, ids, mask, gen=gen, eos_id=-1, pad_id=0)
    cap = ids.shape[1] + gen.max_new_tokens
    decoder = decoding.StaticDecoder(model, rows=5, capacity=cap, gen=gen, eos=-1, pad=0)
    static = decoding.run_padded(decoder, ids, mask)
    assert torch.equal(static, plain)
    # the buffers are reused for the next batch: stale cache slots must not leak into it
    again = decoding.run_padded(decoder, ids[:2, 2:], mask[:2, 2:])
    assert torch.equal(
        again, sampling.decode(model, ids[:2, 2:], mask[:2, 2:], gen=gen, eos_id=-1, pad_id=0)
    )


def test_static_decoder_stops_rows_at_eos_like_decode(tiny_policy):
    """Rows that emit EOS continue with padding; the sampled text of `sample(static=True)` is
    `sample()`'s when greedy."""
    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute", "Boring and slow", "The plot"]
    gen = _gen(max_new_tokens=30, no_repeat_ngram_size=2, batch_size=3)
    plain = sampling.sample(model, tok, prompts, n=2, gen=gen, seed=0, desc="t")
    static = sampling.sample(model, tok, prompts, n=2, gen=gen, seed=0, desc="t", static=True)
    assert static == plain


def test_static_ban_equals_transformers_ban():
    """`decoding.ban_ngrams` on a fixed-size history = NoRepeatNGramLogitsProcessor on a prefix."""
    import torch
    from transformers import NoRepeatNGramLogitsProcessor

    from prefdiv import decoding

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 3):
        for length in (n - 1, n, 7, 19):
            hist = torch.randint(0, 6, (4, 24), generator=g)  # small vocab: many repeats
            logits = torch.randn(4, 9, generator=g)
            ours = decoding.ban_ngrams(logits, hist, torch.tensor(length), n)
            theirs = NoRepeatNGramLogitsProcessor(n)(hist[:, :length], logits.clone())
            assert torch.equal(ours, theirs), (n, length)


def test_static_sampling_draws_from_the_same_distribution(tiny_policy):
    """Sampled (T = 0.7, top-k 3) first tokens of the two paths: same support, similar
    frequencies over 2,000 draws (the paths share the distribution, not the random stream)."""
    from collections import Counter

    import torch

    from prefdiv import decoding

    model, tok = tiny_policy
    gen = _gen(top_k=3, temperature=0.7, max_new_tokens=2, no_repeat_ngram_size=2)
    enc = tok(["The film was"] * 2000, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    plain = sampling.decode(
        model, enc["input_ids"], enc["attention_mask"], gen=gen, eos_id=-1, pad_id=0
    )
    torch.manual_seed(1)
    decoder = decoding.StaticDecoder(model, rows=2000, capacity=8, gen=gen, eos=-1, pad=0)
    static = decoder.run(enc["input_ids"], enc["attention_mask"])
    for col in (0, 1):
        a, b = Counter(plain[:, col].tolist()), Counter(static[:, col].tolist())
        assert set(a) == set(b)
        assert all(abs(a[t] - b[t]) / 2000 < 0.05 for t in a)


def test_static_path_draws_the_same_samples_on_the_cpu(tiny_policy):
    """Same logits (float32, CPU) and one draw per step in the same order: the same random
    samples, not only the same distribution (a batch stopping early consumes extra draws, so
    this holds within a batch)."""
    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute", "Boring and slow", "The plot"]
    gen = _gen(max_new_tokens=16, no_repeat_ngram_size=2, top_k=3, temperature=0.7)
    plain = sampling.sample(model, tok, prompts, n=3, gen=gen, seed=7, desc="t")
    static = sampling.sample(model, tok, prompts, n=3, gen=gen, seed=7, desc="t", static=True)
    assert static == plain and len({r["text"] for rs in plain for r in rs}) > 3  # sampled


def test_truncated_marks_samples_without_eos_and_logp_is_the_models_own(tiny_policy):
    """`truncated` = no EOS within the cap; `logp` = log π(y|x) at T = 1 without top-k or the
    n-gram ban (EOS included when emitted), whatever the sampler's temperature and top-k."""
    import torch

    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute of it; a beautiful"]
    gen = _gen(max_new_tokens=6, top_k=5, temperature=0.7, no_repeat_ngram_size=2)
    out = sampling.sample(model, tok, prompts, n=3, gen=gen, seed=1, desc="t", logp=True)
    eos = tok.eos_token_id
    for prompt, samples in zip(prompts, out, strict=True):
        for s in samples:
            assert s["truncated"] == (len(s["token_ids"]) == gen.max_new_tokens)
            ids = tok(prompt)["input_ids"]
            seq = ids + s["token_ids"] + ([] if s["truncated"] else [eos])
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, len(ids) - 1 : -1].float()
            want = logits.log_softmax(-1).gather(-1, torch.tensor(seq[len(ids) :])[:, None]).sum()
            assert s["logp"] == pytest.approx(want.item(), abs=1e-4)


def test_truncated_is_false_when_eos_comes_first(tiny_policy):
    model, tok = tiny_policy
    # EOS as the only candidate: every sample ends at once, none is truncated
    gen = _gen(max_new_tokens=4, top_k=0)
    model_eos = _always(model, tok.eos_token_id)
    out = sampling.sample(model_eos, tok, ["x"], n=2, gen=gen, seed=0, desc="t")
    assert [s["truncated"] for s in out[0]] == [False, False]
    assert [s["token_ids"] for s in out[0]] == [[], []]


class _always:  # noqa: N801 (used like a function)
    """`model` whose logits put all mass on `token`; every other attribute is the model's."""

    def __init__(self, model, token: int):
        self._model, self._token = model, token

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        out.logits = out.logits.new_full(out.logits.shape, -1e9)
        out.logits[..., self._token] = 0.0
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_response_logps_in_row_chunks_equal_one_forward(tiny_policy):
    import torch

    model, tok = tiny_policy
    enc = tok(["A terrible film.", "I loved it", "Well"], return_tensors="pt", padding=True)
    gen = _gen(max_new_tokens=5, top_k=0)
    torch.manual_seed(0)
    new = sampling.decode(
        model, enc["input_ids"], enc["attention_mask"], gen=gen, eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
    )  # fmt: skip
    args = (model, enc["input_ids"], enc["attention_mask"], new, tok.eos_token_id)
    whole = sampling.response_logps(*args)
    one_row = sampling.response_logps(*args, max_elements=1)  # one row per forward
    assert one_row == pytest.approx(whole, abs=1e-5)


def test_inverse_cdf_draws_each_row_from_its_probabilities():
    """The full-vocabulary draw (T = 1, no top-k: the KL samples of `evaluate`): frequencies over
    200,000 draws per row within 5 standard errors of each row's probabilities, and a token of
    probability 0 (here most of the vocabulary, and the first and last ids) never drawn."""
    import torch

    from prefdiv.decoding import inverse_cdf

    torch.manual_seed(0)
    probs = torch.zeros(3, 50)
    probs[0, [1, 7, 8, 30]] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    probs[1, 10:20] = 0.1
    probs[2, [3, 48]] = torch.tensor([0.999, 0.001])
    n = 200_000
    draws = inverse_cdf(probs.repeat_interleave(n, 0)).view(3, n)
    freq = torch.stack([torch.bincount(row, minlength=50) for row in draws]).double() / n
    se = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert ((freq - probs.double()).abs() <= 5 * se + 1e-12).all()
    assert (freq[probs == 0] == 0).all()
