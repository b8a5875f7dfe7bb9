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
