"""The paper's architectures at random weights, so that `study --random-init` needs no Hub and
no model directory; and real IMDB continuation lengths, since a random-weight policy never stops.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

GPT2_VOCAB, BERT_VOCAB = 50257, 30522  # GPT-2's byte-level BPE, BERT's uncased WordPiece
# `--tiny` (CPU tests): the same code on 1-layer, 32-wide models with 300-token vocabularies
TINY = {
    "vocab": (300, 300),
    "gpt2": dict(n_layer=1, n_embd=32, n_head=2),
    "distilbert": dict(n_layers=1, dim=32, hidden_dim=64, n_heads=2),
}


def random_init_models(
    out_dir,
    texts: list[str],
    *,
    seed: int,
    vocab=(GPT2_VOCAB, BERT_VOCAB),
    gpt2=None,
    distilbert=None,
) -> tuple[Path, Path]:
    """(policy dir, reward dir): GPT-2 small (124 M) and DistilBERT base (67 M) at random weights,
    each with a tokenizer of its real vocabulary size trained on `texts` (a BPE short of 50,257
    tokens on a small corpus is filled up with unused tokens, so the LM head keeps its size).
    `gpt2`, `distilbert`: config overrides (see :data:`TINY`)."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from prefdiv import models

    out = Path(out_dir)
    torch.manual_seed(seed)
    tok = models.train_policy_tokenizer(texts, vocab_size=vocab[0])
    tok.add_tokens([f"<unused{i}>" for i in range(vocab[0] - len(tok))])
    eos = tok.eos_token_id
    config = GPT2Config(
        vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **(gpt2 or {})
    )
    policy = GPT2LMHeadModel(config)
    policy.save_pretrained(out / "policy")
    tok.save_pretrained(out / "policy")
    rtok = models.train_reward_tokenizer(texts, vocab_size=vocab[1])
    labels = models.ID2LABEL
    reward = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(rtok),
            id2label=labels,
            label2id={v: k for k, v in labels.items()},
            pad_token_id=rtok.pad_token_id,
            **(distilbert or {}),
        )
    )
    reward.save_pretrained(out / "reward")
    rtok.save_pretrained(out / "reward")
    return out / "policy", out / "reward"


def continuation_lengths(tokenizer, texts: list[str], prompt_tokens: int, max_new: int):
    """Token lengths of real IMDB continuations: each review's tokens after its first
    `prompt_tokens` (the prompt), capped at `max_new` (reviews no longer than a prompt skipped).

    A trained policy stops at lengths like these; a random-weight one never emits EOS.
    """
    lengths = [len(ids) - prompt_tokens for ids in tokenizer(texts)["input_ids"]]
    return [min(n, max_new) for n in lengths if n > 0]


def cut(samples: list[list[dict]], tokenizer, lengths: list[int], *, seed: int):
    """`samples` with every response cut to a length drawn from `lengths` (seeded); a response
    the cut shortened ends there as if it had emitted EOS (IMDB reviews end), so it is truncated
    only if it was and stays as long."""
    rng = random.Random(seed)
    out = []
    for responses in samples:
        kept = []
        for r in responses:
            ids = r["token_ids"][: rng.choice(lengths)]
            truncated = r["truncated"] and len(ids) == len(r["token_ids"])
            text = tokenizer.decode(ids, skip_special_tokens=True)
            kept.append({"token_ids": ids, "text": text, "truncated": truncated})
        out.append(kept)
    return out
