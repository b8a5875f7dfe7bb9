"""Batched sampling of continuations with the reference study's settings.

Differences from the reference study's loop, all deliberate:
- left padding: a decoder-only model continues from the last position of each row, so right-padded
  rows would continue from pad tokens (the study's bug);
- prompts sorted by length so a batch carries little padding;
- the k continuations of a prompt are k rows of one batch (KV cache on);
- the next token is drawn among the top-k candidates only. `generate()` draws it with
  `torch.multinomial` over the whole vocabulary, where all but top_k probabilities are zero, a
  large share of the sampling time on a CPU (docs/speed.md). The distribution is the same: HF's
  no-repeat-n-gram ban, then temperature, then top-k, in `generate()`'s order, with HF's own
  processors.
- bf16 autocast on GPU, and no cuDNN attention: it builds a kernel plan on the first pass over
  every new cache length, which made the first decode steps several times slower than later ones.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm
from transformers import DynamicCache, NoRepeatNGramLogitsProcessor

from prefdiv import decoding
from prefdiv.config import GenerationParams

# Attention kernels for decoding: every one but cuDNN (see the module docstring).
_DECODE_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def generate_kwargs(gen: GenerationParams, tokenizer) -> dict:
    """`model.generate` arguments of the study (temperature, top-k, no-repeat n-grams).

    The reference loop of `benchmarks/sampling.py` samples with these; :func:`decode` implements
    the same.
    """
    return dict(
        do_sample=True,
        temperature=gen.temperature,
        top_k=gen.top_k,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        max_new_tokens=gen.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.no_grad()
def decode(model, input_ids, attention_mask, *, gen: GenerationParams, eos_id: int, pad_id: int):
    """Sample ≤ gen.max_new_tokens tokens after each left-padded row: (B, T_new) token ids.

    Rows that emitted EOS are continued with `pad_id` (as `generate()` does); the loop stops when
    every row is done. `top_k=0` samples from the whole vocabulary.
    """
    ban = (
        NoRepeatNGramLogitsProcessor(gen.no_repeat_ngram_size) if gen.no_repeat_ngram_size else None
    )
    # Positions count real tokens only, so a left-padded prompt sees the positions it would alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache, ids, step_ids = DynamicCache(), input_ids, input_ids
    done = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
    new = []
    for _ in range(gen.max_new_tokens):
        logits = decoding.next_logits(model, step_ids, attention_mask, position_ids, cache)
        if ban is not None:
            logits = ban(ids, logits)
        token = decoding.draw(logits, gen=gen).masked_fill(done, pad_id)
        new.append(token)
        done |= token == eos_id
        if done.all():
            break
        step_ids = token[:, None]
        if ban is not None:  # only the n-gram ban reads the history
            ids = torch.cat([ids, step_ids], dim=1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(step_ids)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return torch.stack(new, dim=1)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    *,
    n: int,
    gen: GenerationParams,
    seed: int,
    desc: str,
    static: bool = False,
    logp: bool = False,
) -> list[list[dict]]:
    """n continuations of every prompt: `[[{"text", "token_ids", "truncated"}, …n], …]`, in
    prompt order.

    `token_ids` are the generated ids up to (excluding) EOS; `text` is their decoding;
    `truncated`: the sample reached `gen.max_new_tokens` without EOS (its length is censored).
    Nothing is filtered here: see :func:`keep`. `static`: decode GPT-2 on a static KV cache, one
    CUDA graph per step on GPU (`prefdiv.decoding`; same distribution); other models ignore it.
    `logp`: each sample also gets `logp`, log π(y | x) under the model itself (T = 1, no top-k,
    no n-gram ban; EOS included unless truncated), from :func:`response_logps`.
    """
    assert tokenizer.padding_side == "left", "decoder-only batches must be left-padded"
    torch.manual_seed(seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[dict]] = [[] for _ in prompts]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    on_gpu = model.device.type == "cuda"
    decoder = None
    if static and decoding.supported(model):
        # One set of buffers (and one CUDA graph) for every batch: the longest prompt + new tokens.
        longest = max(map(len, tokenizer(prompts)["input_ids"]))
        rows = min(gen.batch_size, len(prompts)) * n
        decoder = decoding.StaticDecoder(model, rows, longest + gen.max_new_tokens, gen, eos, pad)
    bar = tqdm(total=len(prompts) * n, desc=desc, unit="sample")
    for start in range(0, len(order), gen.batch_size):
        idx = order[start : start + gen.batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
        enc = {k: v.repeat_interleave(n, dim=0).to(model.device) for k, v in enc.items()}
        # A CUDA graph must not keep autocast's cached bf16 weights (freed when the block ends).
        with (
            torch.autocast(
                "cuda", dtype=torch.bfloat16, enabled=on_gpu, cache_enabled=decoder is None
            ),
            sdpa_kernel(_DECODE_ATTENTION),
        ):
            if decoder is None:
                new = decode(
                    model, enc["input_ids"], enc["attention_mask"], gen=gen, eos_id=eos, pad_id=pad
                )
            else:
                new = decoding.run_padded(decoder, enc["input_ids"], enc["attention_mask"])
            if logp:
                logps = response_logps(model, enc["input_ids"], enc["attention_mask"], new, eos)
        for row, ids in enumerate(new.tolist()):
            truncated = eos not in ids
            if not truncated:
                ids = ids[: ids.index(eos)]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            sample = {"text": text, "token_ids": ids, "truncated": truncated}
            if logp:
                sample["logp"] = logps[row]
            out[idx[row // n]].append(sample)
        bar.update(len(new))
    bar.close()
    return out


@torch.no_grad()
def response_logps(
    model, input_ids, attention_mask, new, eos_id: int, max_elements: int = 2**27
) -> list[float]:
    """log π(y | x) of each row's sampled continuation under `model` itself, (B,) as floats.

    input_ids, attention_mask: (B, T_p) left-padded prompts; new: (B, T_n) as :func:`decode`
    returns it (pads after EOS). The sum runs over the sampled tokens up to and including the
    first EOS (all T_n when there is none), with the raw logits: no temperature, top-k or
    n-gram ban, so it is the policy's own probability of the text, which the sampler's tempered
    distribution is not. Teacher-forced forwards of as many rows as keep the float32 logits
    within `max_elements` (2^27 = 512 MiB; the paper's 512 rows × 288 × 50k would be 29 GiB).
    """
    is_eos = new == eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), new.size(1))
    valid = torch.arange(new.size(1), device=new.device)[None] <= first[:, None]
    mask = torch.cat([attention_mask, valid.long()], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    ids = torch.cat([input_ids, new], dim=1)
    rows = max(1, max_elements // (new.size(1) * model.config.vocab_size))
    out = []
    for i in range(0, len(ids), rows):
        sl = slice(i, i + rows)
        logits = model(
            input_ids=ids[sl], attention_mask=mask[sl], position_ids=position_ids[sl],
            use_cache=False,
        ).logits[:, input_ids.size(1) - 1 : -1].float()  # fmt: skip
        token = logits.log_softmax(-1).gather(-1, new[sl, :, None]).squeeze(-1)
        out += token.masked_fill(~valid[sl], 0.0).sum(1).tolist()
    return out


def keep(responses: list[dict], min_tokens: int) -> list[dict]:
    """Responses with ≥ min_tokens generated tokens (the reference study drops shorter ones)."""
    return [r for r in responses if len(r["token_ids"]) >= min_tokens]


def sample_rows(
    reviews: list[dict], prompts: list[str], samples: list[list[dict]], min_tokens: int
) -> list[dict]:
    """The `sample` stage's rows: `{"prompt_id", "label", "prompt", "responses": [{"text",
    "tokens", "truncated", "logp"}, …]}` per review, its prompt and its samples (as :func:`sample`
    returns them, `logp` when it has one), :func:`keep`'s only. `tokens` counts the generated
    tokens without EOS; `truncated` marks a sample cut at the length cap (training must not
    append an EOS to it)."""
    return [
        {
            "prompt_id": review["id"],
            "label": review["label"],
            "prompt": prompt,
            "responses": [
                {"text": r["text"], "tokens": len(r["token_ids"]), "truncated": r["truncated"]}
                | ({"logp": r["logp"]} if "logp" in r else {})
                for r in keep(responses, min_tokens)
            ],
        }
        for review, prompt, responses in zip(reviews, prompts, samples, strict=True)
    ]
