"""The two models the study starts from: an SFT policy (causal LM) and a sentiment reward model.

Demo scale trains both from scratch on IMDB reviews with HF `tokenizers` + `transformers.Trainer`.
Paper scale resolves `lvwerra/gpt2-imdb` and `lvwerra/distilbert-imdb` (or any Hub id or local
directory) with :func:`resolve_pretrained`. Either way the stage writes an ordinary Hugging Face
model directory (a DVC output, so cached and pushed; complete or absent, see
`files.atomic_dir`), and every later stage loads it the same way (`prefdiv.load`).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tokenizers import ByteLevelBPETokenizer, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

from prefdiv.config import RewardParams, SFTParams
from prefdiv.errors import UserError
from prefdiv.files import atomic_dir
from prefdiv.load import fuse_gelu

EOS = "<|endoftext|>"
# lvwerra/distilbert-imdb's label order; the reward is the POSITIVE logit.
ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _trainer_args(out_dir: Path, p, seed: int, **extra) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out_dir / "trainer"),
        max_steps=p.max_steps,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=4 * p.batch_size,
        learning_rate=p.learning_rate,
        warmup_steps=p.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        logging_steps=max(1, p.max_steps // 20),
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        **extra,
    )


# --- SFT policy -----------------------------------------------------------------------------------


def train_policy_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2's scheme) trained on the SFT pool; EOS doubles as padding, as GPT-2."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS
    )


def pack_blocks(tokenizer, texts: list[str], block_size: int) -> np.ndarray:
    """Concatenate `text + EOS` for every review and cut into (n_blocks, block_size) token ids."""
    ids = tokenizer([t + EOS for t in texts], add_special_tokens=False)["input_ids"]
    flat = np.fromiter((i for seq in ids for i in seq), dtype=np.int64)
    n = len(flat) // block_size
    return flat[: n * block_size].reshape(n, block_size)


def train_sft(
    train_texts: list[str], val_texts: list[str], p: SFTParams, out_dir: str | Path, seed: int
) -> dict:
    """Train tokenizer + small GPT-2 on reviews, save to `out_dir`; return held-out metrics."""
    torch.manual_seed(seed)
    tokenizer = train_policy_tokenizer(train_texts, p.vocab_size)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=p.block_size,
        n_embd=p.n_embd,
        n_layer=p.n_layer,
        n_head=p.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = fuse_gelu(GPT2LMHeadModel(config))
    train = pack_blocks(tokenizer, train_texts, p.block_size)
    val = pack_blocks(tokenizer, val_texts, p.block_size)
    to_ds = lambda a: Dataset.from_dict({"input_ids": a, "labels": a})  # noqa: E731
    with atomic_dir(out_dir) as tmp:  # complete or absent, never half-written
        trainer = Trainer(
            model=model,
            args=_trainer_args(tmp, p, seed),
            train_dataset=to_ds(train),
            eval_dataset=to_ds(val),
        )
        trainer.train()
        val_loss = trainer.evaluate()["eval_loss"]
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {
        "val_perplexity": math.exp(val_loss),
        "val_loss": val_loss,
        "train_tokens": int(p.max_steps * p.batch_size * p.block_size),
        "n_params": sum(t.numel() for t in model.parameters()),
    }


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], block_size: int, batch_size: int = 16) -> dict:
    """Held-out perplexity of a causal LM on `texts` packed into blocks of ≤ block_size tokens."""
    block_size = min(block_size, model.config.max_position_embeddings)
    blocks = torch.from_numpy(pack_blocks(tokenizer, texts, block_size))
    total, n = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        ids = blocks[start : start + batch_size].to(model.device)
        total += float(model(input_ids=ids, labels=ids).loss) * len(ids)
        n += len(ids)
    return {"val_perplexity": math.exp(total / n), "val_loss": total / n}


# --- pretrained models (paper scale) --------------------------------------------------------------


def resolve_pretrained(name: str, out_dir: str | Path, kind: str) -> dict:
    """Load model + tokenizer `name` (Hub id or local directory) and save them to `out_dir`.

    `kind` is "policy" (causal LM) or "reward" (sequence classifier). Saving a local copy makes
    the model a DVC output: cached, pushed to the remote, and pinned by its hash in `dvc.lock`.
    """
    auto, key = {  # key: the param that names the model
        "policy": (AutoModelForCausalLM, "sft.model"),
        "reward": (AutoModelForSequenceClassification, "reward.model"),
    }[kind]
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = auto.from_pretrained(name)
    except (OSError, ValueError) as e:  # ValueError: a directory of another kind of model
        cannot = f"cannot load {kind} model {name!r}"
        if Path(name).is_dir():
            first = str(e).splitlines()[0].rstrip(": ") if str(e) else type(e).__name__
            raise UserError(
                f"{cannot}: the directory holds no loadable {auto.__name__} and tokenizer "
                f"({first}); point {key} at a directory written by `save_pretrained`"
            ) from None
        raise UserError(
            f"{cannot}: it is not a local directory and the Hugging Face Hub did not serve it "
            f"(offline, or a wrong id?); point {key} at a local copy (a directory written by "
            "`save_pretrained`)"
        ) from None
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {
        "model": name,
        "n_params": sum(t.numel() for t in model.parameters()),
    }


# --- reward model ---------------------------------------------------------------------------------


def train_reward_tokenizer(texts: list[str], vocab_size: int) -> DistilBertTokenizerFast:
    """Lower-cased word-level vocabulary of the most frequent words, `[CLS] text [SEP]` framing.

    Word-level because a sentiment classifier lives on words, and because it can be chosen
    deterministically: the `tokenizers` trainers (WordPiece, BPE) break count ties in Rust
    hash-map order, which changes per process and made the reward model differ between runs.
    Here ties break alphabetically. [CLS] first, as lvwerra/distilbert-imdb: the classifier
    reads that position.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    words = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[: vocab_size - len(_SPECIALS)]
    vocab = {t: i for i, t in enumerate([*_SPECIALS, *(w for w, _ in words)])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    return DistilBertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def train_reward(
    train_rows: list[dict], val_rows: list[dict], p: RewardParams, out_dir: str | Path, seed: int
) -> dict:
    """Train a small DistilBERT sentiment classifier on labelled reviews; return val accuracy.

    It is trained on the *last* `max_tokens` tokens of each review: endings carry the verdict
    ("…a must-see. 9/10"), which lifts held-out accuracy by ~4 points over openings at this size.
    """
    torch.manual_seed(seed)
    tokenizer = train_reward_tokenizer([r["text"] for r in train_rows], p.vocab_size)
    tokenizer.truncation_side = "left"
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=p.max_tokens,
        n_layers=p.n_layer,
        n_heads=p.n_head,
        dim=p.dim,
        hidden_dim=4 * p.dim,
        num_labels=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    model = DistilBertForSequenceClassification(config)

    def to_dataset(rows):
        enc = tokenizer(
            [r["text"] for r in rows],
            truncation=True,
            max_length=p.max_tokens,
            padding="max_length",
        )
        return Dataset.from_dict({**enc, "labels": [r["label"] for r in rows]})

    def val_accuracy(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    with atomic_dir(out_dir) as tmp:  # complete or absent, never half-written
        trainer = Trainer(
            model=model,
            args=_trainer_args(tmp, p, seed),
            train_dataset=to_dataset(train_rows),
            eval_dataset=to_dataset(val_rows),
            compute_metrics=val_accuracy,
        )
        trainer.train()
        metrics = trainer.evaluate()
        tokenizer.truncation_side = "right"  # responses are short; scoring keeps their start
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {
        "val_accuracy": metrics["eval_accuracy"],
        "val_loss": metrics["eval_loss"],
        "n_val": len(val_rows),
        "n_params": sum(t.numel() for t in model.parameters()),
    }
