"""Batched sampling of continuations with the reference study's settings.

Differences from the reference study's loop, all deliberate:
- left padding: a decoder-only model continues from the last position of each row, so right-padded
  rows would continue from pad tokens (the study's bug);
- prompts sorted by length so a batch carries little padding;
- `num_return_sequences` samples the k continuations of a prompt in one call (KV cache on).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from prefdiv.config import GenerationParams


def generate_kwargs(gen: GenerationParams, tokenizer) -> dict:
    """`model.generate` sampling arguments of the study (temperature, top-k, no-repeat n-grams)."""
    return dict(
        do_sample=True,
        temperature=gen.temperature,
        top_k=gen.top_k,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        max_new_tokens=gen.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.no_grad()
def sample(
    model, tokenizer, prompts: list[str], *, n: int, gen: GenerationParams, seed: int, desc: str
) -> list[list[dict]]:
    """n continuations of every prompt: `[[{"text", "token_ids"}, …n], …]`, in prompt order.

    `token_ids` are the generated ids up to (excluding) EOS; `text` is their decoding. Nothing is
    filtered here: see :func:`keep`.
    """
    assert tokenizer.padding_side == "left", "decoder-only batches must be left-padded"
    torch.manual_seed(seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[dict]] = [[] for _ in prompts]
    eos = tokenizer.eos_token_id
    bar = tqdm(total=len(prompts) * n, desc=desc, unit="sample")
    for start in range(0, len(order), gen.batch_size):
        idx = order[start : start + gen.batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
        enc = enc.to(model.device)
        seqs = model.generate(**enc, **generate_kwargs(gen, tokenizer), num_return_sequences=n)
        new = seqs[:, enc["input_ids"].shape[1] :].tolist()
        for row, ids in enumerate(new):
            if eos in ids:
                ids = ids[: ids.index(eos)]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            out[idx[row // n]].append({"text": text, "token_ids": ids})
        bar.update(len(new))
    bar.close()
    return out


def keep(responses: list[dict], min_tokens: int) -> list[dict]:
    """Responses with ≥ min_tokens generated tokens (the reference study drops shorter ones)."""
    return [r for r in responses if len(r["token_ids"]) >= min_tokens]
