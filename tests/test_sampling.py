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
        [{"text": "long", "token_ids": [1, 2, 3]}, {"text": "short", "token_ids": [1]}],
        [{"text": "a", "token_ids": [4]}],
    ]
    rows = sampling.sample_rows(reviews, ["P7", "P2"], samples, min_tokens=2)
    assert rows == [
        {"prompt_id": "r7", "label": 1, "prompt": "P7", "responses": ["long"]},
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
