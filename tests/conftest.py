import os

import pytest

# Tests never write to the repository's MLflow store (integration tests opt back in).
os.environ["PREFDIV_TRACKING"] = "0"
# No test may reach the Hugging Face Hub (CI has no network): fail at once instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"

TEXTS = [
    "This movie was great, the acting was wonderful and the story moving.",
    "A terrible film. The plot made no sense and the dialogue was awful.",
    "I loved every minute of it; a beautiful, funny and clever picture.",
    "Boring, slow and far too long. I would not watch it again.",
] * 5


REVIEWS = [t.replace("movie", w) for w in ("film", "picture", "movie", "story") for t in TEXTS]


@pytest.fixture(scope="session")
def hub_like(tmp_path_factory):
    """Stand-ins of lvwerra/gpt2-imdb, lvwerra/distilbert-imdb and HF imdb (random weights)."""
    import datasets
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from prefdiv import models

    root = tmp_path_factory.mktemp("hub")
    tok = models.train_policy_tokenizer(REVIEWS, vocab_size=300)
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    )
    gpt2.save_pretrained(root / "gpt2-imdb")
    tok.save_pretrained(root / "gpt2-imdb")
    rtok = models.train_reward_tokenizer(REVIEWS, vocab_size=300)
    bert = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(rtok),
            max_position_embeddings=64,
            n_layers=1,
            n_heads=2,
            dim=32,
            hidden_dim=64,
            id2label=models.ID2LABEL,
            label2id={"NEGATIVE": 0, "POSITIVE": 1},
        )
    )
    bert.save_pretrained(root / "distilbert-imdb")
    rtok.save_pretrained(root / "distilbert-imdb")
    split = lambda: datasets.Dataset.from_dict(  # noqa: E731
        {"text": REVIEWS, "label": [i % 2 for i in range(len(REVIEWS))]}
    )
    datasets.DatasetDict(train=split(), test=split()).save_to_disk(root / "imdb")
    return root


@pytest.fixture(scope="session")
def tiny_policy():
    """A random-weight GPT-2 with a BPE tokenizer trained on a few sentences."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from prefdiv import models

    tok = models.train_policy_tokenizer(TEXTS, vocab_size=300)
    tok.padding_side = "left"
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(cfg).eval()
    return model, tok
