"""Sampling throughput: `sampling.sample` as the `sample` stage runs it against the reference
study's generation loop, on the same model, prompts and settings, in one process.

The reference loop, re-implemented from its description: prompts in their original order,
batches of 16, right padding, one `generate` call per batch and per sample (k calls per batch),
each batch decoded before the next. Ours: length-sorted batches, left padding, the k samples of a
prompt as k rows of one batch. Throughput = generated tokens (up to EOS) per second.
"""

from __future__ import annotations

import time

import torch

from prefdiv import sampling
from prefdiv.config import GenerationParams


def _new_tokens(ids: list[int], eos: int, pad: int) -> int:
    n = 0
    for t in ids:
        if t in (eos, pad):
            break
        n += 1
    return n


@torch.no_grad()
def reference_loop(model, tokenizer, prompts, *, k: int, gen: GenerationParams, batch_size=16):
    """(new tokens, seconds) of the reference study's generation loop."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"  # the study's (buggy) padding
    try:
        start, n = time.perf_counter(), 0
        for _ in range(k):
            for i in range(0, len(prompts), batch_size):
                enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True)
                out = model.generate(
                    **enc.to(model.device), **sampling.generate_kwargs(gen, tokenizer)
                )
                new = out[:, enc["input_ids"].shape[1] :].tolist()
                tokenizer.batch_decode(new, skip_special_tokens=True)  # per-batch decode
                n += sum(
                    _new_tokens(r, tokenizer.eos_token_id, tokenizer.pad_token_id) for r in new
                )
        return n, time.perf_counter() - start
    finally:
        tokenizer.padding_side = side


def ours(model, tokenizer, prompts, *, k: int, gen: GenerationParams, seed: int, static=False):
    """(new tokens, seconds) of `sampling.sample` as the `sample` stage runs it (`static`:
    the params' `speed.static_decode`)."""
    start = time.perf_counter()
    out = sampling.sample(
        model, tokenizer, prompts, n=k, gen=gen, seed=seed, desc="sample", static=static
    )
    seconds = time.perf_counter() - start
    return sum(len(r["token_ids"]) for rs in out for r in rs), seconds


def compare_throughput(
    model, tokenizer, prompts, *, k: int, gen: GenerationParams, seed: int, static=False
):
    """Both loops on the same inputs; returns tokens/s of each and the ratio."""
    torch.manual_seed(seed)
    ref_tokens, ref_s = reference_loop(model, tokenizer, prompts, k=k, gen=gen)
    our_tokens, our_s = ours(model, tokenizer, prompts, k=k, gen=gen, seed=seed, static=static)
    ref_rate, our_rate = ref_tokens / ref_s, our_tokens / our_s
    return {
        "reference_tokens_per_s": ref_rate,
        "ours_tokens_per_s": our_rate,
        "speedup": our_rate / ref_rate,
        "reference_tokens": ref_tokens,
        "ours_tokens": our_tokens,
    }
