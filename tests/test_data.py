from collections import Counter

import pytest

from prefdiv import data


@pytest.fixture(scope="module")
def reviews():
    return data.load_imdb_train()


def test_corpus_is_the_imdb_train_split(reviews):
    assert len(reviews) == 25_000
    assert Counter(r["label"] for r in reviews) == {0: 12_500, 1: 12_500}
    assert not any("<br" in r["text"].lower() for r in reviews)


def test_clean_strips_markup():
    assert data.clean("Good.<br /><br />Very  good.<BR>End") == "Good. Very good. End"


def test_pools_are_disjoint_balanced_and_seeded(reviews):
    kw = dict(n_train=300, n_test=100, n_model_train=20_000, n_model_val=1000, seed=0)
    pools = data.split_pools(reviews, **kw)
    ids = {name: {r["id"] for r in rows} for name, rows in pools.items()}
    assert ids["train"].isdisjoint(ids["test"])  # no test prompt is ever trained on
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert ids[a].isdisjoint(ids[b]), (a, b)
    # text-level too: duplicate reviews under two ids must not straddle train and test
    assert not {r["text"] for r in pools["train"]} & {r["text"] for r in pools["test"]}
    assert Counter(r["label"] for r in pools["test"]) == {0: 50, 1: 50}
    assert Counter(r["label"] for r in pools["train"]) == {0: 150, 1: 150}
    assert data.split_pools(reviews, **kw)["test"] == pools["test"]
    # more prompts must not change the models' data (it would retrain them)
    more = data.split_pools(reviews, **{**kw, "n_train": 600})
    assert more["model_train"] == pools["model_train"]


def test_pools_larger_than_the_data_are_one_line_user_errors():
    from prefdiv.errors import UserError

    rows = [{"id": str(i), "text": f"review {i}", "label": int(i < 6)} for i in range(10)]
    kw = dict(n_train=2, n_test=2, n_model_train=0, n_model_val=0, seed=0)
    with pytest.raises(UserError, match=r"7 \+ 4 is more than the 10 reviews"):
        data.split_pools(rows, **{**kw, "n_model_val": 7, "n_model_train": 4})
    with pytest.raises(UserError) as e:  # 4 negative reviews: 1 to test, 3 of 4 for train
        data.split_pools(rows, **{**kw, "n_train": 8})
    assert "not enough reviews for 8 prompts balanced by label (1 more negative needed)" in str(
        e.value
    )


def test_truncate_prompt(tiny_policy):
    _, tok = tiny_policy
    text = "This movie was great, the acting was wonderful and the story moving."
    cut = data.truncate_prompt(tok, text, 5)
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) == 5
    assert text.startswith(cut)
    assert data.truncate_prompt(tok, "Short.", 32) == "Short."


def test_reward_tokenizer_is_deterministic_and_frames_with_cls_sep():
    from prefdiv import models

    texts = [r["text"] for r in data.load_imdb_train()[:1500]]
    a = models.train_reward_tokenizer(texts, vocab_size=2000)
    b = models.train_reward_tokenizer(texts, vocab_size=2000)
    assert a.get_vocab() == b.get_vocab()  # same ids every run: reproducible reward model
    ids = a("This movie was great")["input_ids"]
    assert (
        a.convert_ids_to_tokens(ids)[0] == "[CLS]" and a.convert_ids_to_tokens(ids)[-1] == "[SEP]"
    )
    a.truncation_side = "left"  # the reward model trains on review endings
    cut = a.convert_ids_to_tokens(
        a("one two three four five six", truncation=True, max_length=4)["input_ids"]
    )
    assert cut == ["[CLS]", "five", "six", "[SEP]"]
    assert a.convert_ids_to_tokens(a("zzqxv")["input_ids"])[1] == "[UNK]"
