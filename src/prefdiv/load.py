"""Loading the models the pipeline wrote: the device, the policy (with its tokenizer), the reward.

Kept apart from `models.py` (which builds the models) so that the stages that only load a model
(`sample`, `score`, `train`, `evaluate`) do not depend on how it was built.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.activations import GELUTanh, NewGELUActivation

from prefdiv.files import model_dir


def on_gpu() -> bool:
    """Whether the pipeline computes on a GPU: the one place that decides (models are loaded
    there, training runs there in bf16). The GPU when there is one (paper scale), else the CPU."""
    return torch.cuda.is_available()


def device() -> torch.device:
    """Where every loaded model goes (:func:`on_gpu`)."""
    return torch.device("cuda" if on_gpu() else "cpu")


def use_threads(n: int) -> None:
    """Run torch's CPU operations on `n` threads (`speed.threads`; 0 leaves torch's default, one
    per core). Float reductions split by thread, so the thread count is part of what a stage
    computes: fixed, a stage's bits no longer depend on how many cores the machine has."""
    if n:
        torch.set_num_threads(n)


def fuse_gelu(model):
    """`model` with GPT-2's GELU (`gelu_new`) computed by one fused kernel; returns it.

    transformers computes `gelu_new`, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), as 8 elementwise
    operations in Python, each a pass over the (tokens × 4·n_embd) MLP activations, and autograd
    saves their intermediates for the backward. `gelu_pytorch_tanh` (`GELUTanh`) is the same
    formula in one kernel (`F.gelu(x, approximate="tanh")`, equal up to float rounding, tested),
    as nanoGPT uses: fewer passes over memory, fewer saved tensors. The config is left as is, so
    saved models are unchanged; every GPT-2 that prefdiv builds or loads goes through here.
    """
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, GELUTanh())
    return model


def policy_tokenizer(path: str | Path):
    """The tokenizer of a causal-LM directory, with a pad token (training and generation pad)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir(path))
    if tokenizer.pad_token is None:  # GPT-2 has no pad token: pad with EOS, masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(path: str | Path):
    """(model, tokenizer) of a causal-LM directory, tokenizer set up for batched generation."""
    tokenizer = policy_tokenizer(path)
    tokenizer.padding_side = "left"  # decoder-only batches must be left-padded to generate
    model = fuse_gelu(AutoModelForCausalLM.from_pretrained(path)).to(device())
    model.eval()
    return model, tokenizer


def load_reward(path: str | Path):
    """(model, tokenizer) of a sequence-classification directory whose label 1 is POSITIVE."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir(path))
    model = AutoModelForSequenceClassification.from_pretrained(path).to(device())
    model.eval()
    return model, tokenizer
