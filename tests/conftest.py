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
