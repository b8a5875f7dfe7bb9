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
