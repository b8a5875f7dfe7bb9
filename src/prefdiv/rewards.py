"""Reward of a text = the sentiment classifier's positive-class logit on the response alone.

Identical at both scales: `lvwerra/distilbert-imdb` (paper) and the demo's own DistilBERT.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from tqdm.auto import tqdm


def positive_index(model) -> int:
    """Index of the POSITIVE label (1 in lvwerra/distilbert-imdb; read from the config if named)."""
    label2id = {k.upper(): v for k, v in (model.config.label2id or {}).items()}
    return int(label2id.get("POSITIVE", 1))


def encode(model, tokenizer, texts: list[str]):
    """A padded batch of `texts` on the model's device, truncated to the classifier's context."""
    max_len = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_len)
    return enc.to(model.device)


@torch.no_grad()
def score(model, tokenizer, texts: list[str], *, batch_size: int = 64, desc: str = "score"):
    """Positive-class logit of every text, as a float array in input order.

    Texts are scored in length-sorted batches (little padding), truncated to the model's context.
    """
    pos = positive_index(model)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty(len(texts), dtype=np.float64)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        enc = encode(model, tokenizer, [texts[i] for i in idx])
        out[idx] = model(**enc).logits[:, pos].double().cpu().numpy()
    return out


def score_rows(model, tokenizer, rows: list[dict]) -> int:
    """Score rows as the `sample` stage writes them, in place: each response `{"text", …}` gains
    its `reward`. Returns the number of texts scored."""
    texts = [r["text"] for row in rows for r in row["responses"]]
    scores = iter(score(model, tokenizer, texts).tolist())
    for row in rows:
        row["responses"] = [r | {"reward": next(scores)} for r in row["responses"]]
    return len(texts)


@torch.no_grad()
def accuracy(model, tokenizer, rows: list[dict], batch_size: int = 64) -> dict:
    """Held-out accuracy of a sentiment classifier on labelled reviews (label 1 = positive)."""
    correct = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        pred = model(**encode(model, tokenizer, [r["text"] for r in batch])).logits.argmax(-1).cpu()
        correct += int((pred == torch.tensor([r["label"] for r in batch])).sum())
    return {"val_accuracy": correct / len(rows), "n_val": len(rows)}


def vader_compound(texts: list[str]) -> np.ndarray:
    """VADER compound sentiment (−1…1) of every text: an independent judge, never trained on.

    A lexicon-and-rules scorer (Hutto & Gilbert 2014) that ships its lexicon, so it runs
    offline. If the policy games the reward model, the reward rises while this stays flat.
    """
    analyzer = _vader()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


@functools.cache
def _vader():
    """One analyzer per process: building one reads its lexicon files (evaluation calls VADER
    once per test prompt)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()
