"""Benchmarks: our sampling against the reference study's loop, and the study's stages on a slice.

The reference study's loop, re-implemented from its description: prompts in their original
order, batches of 16, right padding, one `generate` call per batch and per sample (k calls per
batch), each batch decoded before the next. Ours (`sampling.sample`): length-sorted batches, left
padding, the k samples of a prompt as k rows of one batch. Same model, prompts and sampling
settings; throughput = generated tokens (up to EOS) per second.

`study_timings` runs the pipeline's own stage functions (sampling, scoring, pairing, training,
evaluation) on a slice of one configuration, once on the plain path and once on the fast paths
of `speed` (params.yaml), and projects the full study from both.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from prefdiv import sampling
from prefdiv.config import GenerationParams, SpeedParams


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


def ours(model, tokenizer, prompts, *, k: int, gen: GenerationParams, seed: int):
    """(new tokens, seconds) of `sampling.sample` as the `sample` stage runs it."""
    start = time.perf_counter()
    out = sampling.sample(model, tokenizer, prompts, n=k, gen=gen, seed=seed, desc="ours")
    seconds = time.perf_counter() - start
    return sum(len(r["token_ids"]) for rs in out for r in rs), seconds


def compare_throughput(model, tokenizer, prompts, *, k: int, gen: GenerationParams, seed: int):
    """Both loops on the same inputs, in one process; returns tokens/s of each and the ratio."""
    torch.manual_seed(seed)
    ref_tokens, ref_s = reference_loop(model, tokenizer, prompts, k=k, gen=gen)
    our_tokens, our_s = ours(model, tokenizer, prompts, k=k, gen=gen, seed=seed)
    ref_rate, our_rate = ref_tokens / ref_s, our_tokens / our_s
    return {
        "reference_tokens_per_s": ref_rate,
        "ours_tokens_per_s": our_rate,
        "speedup": our_rate / ref_rate,
        "reference_tokens": ref_tokens,
        "ours_tokens": our_tokens,
    }


# --- the paper's architectures at random weights (no Hub) -----------------------------------------

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
    """`samples` with every response cut to a length drawn from `lengths` (seeded)."""
    rng = random.Random(seed)
    out = []
    for responses in samples:
        kept = []
        for r in responses:
            ids = r["token_ids"][: rng.choice(lengths)]
            kept.append({"token_ids": ids, "text": tokenizer.decode(ids, skip_special_tokens=True)})
        out.append(kept)
    return out


# --- stage timings on a slice --------------------------------------------------------------------


class StepTimer(TrainerCallback):
    """Wall time of the first `warmup` optimiser steps (compilation lands there) and the mean of
    the steps after them (steady state)."""

    def __init__(self, warmup: int):
        self.warmup, self.marks = warmup, {}

    def _mark(self, step: int):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks[step] = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, state.max_steps):
            self._mark(state.global_step)

    def result(self, steps: int) -> tuple[float, float]:
        """(seconds of the warm-up steps, seconds per steady step)."""
        m = self.marks
        return m[self.warmup] - m[0], (m[steps] - m[self.warmup]) / (steps - self.warmup)


def _timed(fn):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return result, time.perf_counter() - start


def _rows(prompts: list[str], samples, min_tokens: int) -> list[dict]:
    """Sampled rows as the `sample` stage writes them."""
    return [
        {
            "prompt_id": str(i),
            "prompt": p,
            "responses": [r["text"] for r in sampling.keep(rs, min_tokens)],
        }
        for i, (p, rs) in enumerate(zip(prompts, samples, strict=True))
    ]


def train_and_evaluate(
    policy_dir, model, tok, reward, reward_tok, train_prompts, train_samples, test_prompts,
    test_samples, s, speed: SpeedParams, *, seed: int, train_steps: int, work_dir,
) -> dict:  # fmt: skip
    """Score → pairs → `train_steps` DPO steps → evaluation of given samples, timed."""
    from prefdiv import evaluation, pairs, rewards

    out = {}
    rows = _rows(train_prompts, train_samples, s.generation.min_tokens)
    n_texts, t = _timed(lambda: rewards.score_rows(reward, reward_tok, rows))
    out["score_texts_per_s"] = n_texts / t
    all_pairs, _ = pairs.make_pairs(rows, s.pairs.min_margin)
    warmup = min(10, train_steps // 3)
    timer = StepTimer(warmup)
    trained = dpo_steps(
        policy_dir, all_pairs, s.train, train_steps, seed=seed, speed=speed,
        work_dir=work_dir, callbacks=[timer],
    )  # fmt: skip
    warm_s, step_s = timer.result(train_steps)
    out["train_pairs_per_s"] = s.train.batch_size / step_s  # steady state
    out["train_warmup_s"] = warm_s - warmup * step_s  # beyond steady steps: compilation
    out["setup_pairs_per_s"] = len(all_pairs) / trained.setup_s  # tokenise + reference logps
    out["n_pairs_per_prompt"] = len(all_pairs) / len(train_prompts)
    parts: dict = {}
    _, t = _timed(
        lambda: evaluation.per_prompt(
            model, tok, model, reward, reward_tok, None, test_prompts, n=s.evaluate.n,
            gen=s.generation, seed=seed, entropy_tokens=s.evaluate.entropy_tokens, speed=speed,
            timings=parts, samples=test_samples,
        )
    )  # fmt: skip
    out["evaluate_parts_s_per_prompt"] = {k: v / len(test_prompts) for k, v in parts.items()}
    return out


def study_timings(
    policy_dir, reward_dir, train_prompts: list[str], test_prompts: list[dict], s, speed,
    *, seed: int, train_steps: int, study: dict, work_dir, lengths=None, n_reference=0,
    profile_dir=None,
) -> dict:  # fmt: skip
    """Time every compute stage of scale block `s` with fast paths `speed` on a slice; project.

    The slice: `train_prompts` sampled k times, scored and paired, `train_steps` DPO steps,
    `test_prompts` evaluated (n samples each, every metric but the embedding one). Training
    figures are steady-state steps (the first ≤ 10, where compilation lands, are timed apart).
    `lengths`: also time scoring, training and evaluation with every sample cut to a length drawn
    from these (see :func:`continuation_lengths`), reported under "imdb_lengths"; sampling itself
    keeps its time, since a batch runs until its longest row stops (of 512 rows, some reach the
    cap). `study` = {"n_train", "n_test", "n_methods", "steps"} gives the full sizes.
    """
    from prefdiv import load

    model, tok = load.load_policy(policy_dir)
    reward, reward_tok = load.load_reward(reward_dir)
    k, n, gen = s.sample.k, s.evaluate.n, s.generation
    out = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}

    def draw(prompts, count, desc):
        static = speed.static_decode
        return sampling.sample(
            model, tok, prompts, n=count, gen=gen, seed=seed, desc=desc, static=static
        )

    train_samples, t = _timed(lambda: draw(train_prompts, k, "sample"))
    n_tokens = sum(len(r["token_ids"]) for rs in train_samples for r in rs)
    out |= {"sample_tokens_per_s": n_tokens / t, "sample_s_per_prompt": t / len(train_prompts)}
    out["mean_new_tokens"] = n_tokens / (k * len(train_prompts))
    test_samples, t = _timed(lambda: draw([p["prompt"] for p in test_prompts], n, "evaluate"))
    sample_eval_s = t / len(test_prompts)
    if n_reference:
        ref_tokens, ref_t = reference_loop(model, tok, train_prompts[:n_reference], k=k, gen=gen)
        out["reference_loop_tokens_per_s"] = ref_tokens / ref_t
        out["sampling_speedup_vs_reference_loop"] = out["sample_tokens_per_s"] / (
            ref_tokens / ref_t
        )

    variants = {"max_length": (train_samples, test_samples)}
    if lengths:
        variants["imdb_lengths"] = (
            cut(train_samples, tok, lengths, seed=seed),
            cut(test_samples, tok, lengths, seed=seed + 1),
        )
    for name, (train_s, test_s) in variants.items():
        r = train_and_evaluate(
            policy_dir, model, tok, reward, reward_tok, train_prompts, train_s, test_prompts,
            test_s, s, speed, seed=seed, train_steps=train_steps, work_dir=f"{work_dir}/{name}",
        )  # fmt: skip
        r["evaluate_parts_s_per_prompt"]["sample"] = sample_eval_s
        r["evaluate_s_per_prompt"] = sum(r["evaluate_parts_s_per_prompt"].values())
        r["mean_new_tokens"] = sum(len(x["token_ids"]) for rs in train_s for x in rs) / (
            k * len(train_prompts)
        )
        out[name] = r | project(out, r, s, study)
    if profile_dir is not None:
        pairs = _profile_pairs(train_prompts, train_samples, reward, reward_tok, s)
        profile_training(
            policy_dir, pairs, s.train, speed, seed=seed, out_dir=profile_dir, work_dir=work_dir
        )
    return out


def _profile_pairs(prompts, samples, reward, reward_tok, s):
    from prefdiv import pairs, rewards

    rows = _rows(prompts, samples, s.generation.min_tokens)
    rewards.score_rows(reward, reward_tok, rows)
    return pairs.make_pairs(rows, s.pairs.min_margin)[0]


def project(sampled: dict, r: dict, s, study: dict) -> dict:
    """The full study's minutes from slice rates: sampling, scoring, tokenising and reference
    log-probs once (every method trains on the same pairs, cached); per method, compilation,
    `steps` optimiser steps and one evaluation; plus the SFT policy's evaluation."""
    k = s.sample.k
    once = study["n_train"] * (sampled["sample_s_per_prompt"] + k / r["score_texts_per_s"])
    once += study["n_train"] * r["n_pairs_per_prompt"] / r["setup_pairs_per_s"]
    train_s = r["train_warmup_s"] + study["steps"] * s.train.batch_size / r["train_pairs_per_s"]
    eval_s = study["n_test"] * r["evaluate_s_per_prompt"]
    return {
        "projected_once_min": once / 60,
        "projected_train_min_per_method": train_s / 60,
        "projected_evaluate_min_per_method": eval_s / 60,
        "projected_min_per_method": (train_s + eval_s) / 60,
        "projected_study_h": (once + study["n_methods"] * (train_s + eval_s) + eval_s) / 3600,
    }


def speedups(plain: dict, fast: dict) -> dict:
    """fast / plain for every rate (`…_per_s`), plain / fast for every duration (`…_s_per_prompt`,
    evaluation parts, projections): > 1 where the fast path wins."""
    out = {}
    for key, a in plain.items():
        b = fast.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out[key] = speedups(a, b)
            if key == "evaluate_parts_s_per_prompt":
                out[key] = {k: a[k] / b[k] for k in a if a[k] > 1e-6 and b.get(k, 0) > 0}
        elif not (isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0):
            continue
        elif key.endswith("_per_s"):
            out[key] = b / a
        elif key.endswith("_s_per_prompt") or key.startswith("projected_"):
            out[key] = a / b
    return out


class StepProfiler(TrainerCallback):
    """`torch.profiler` over optimiser steps start+1 … stop of a training run.

    Writes `train_steps.txt` (operators by their own device time, or CPU time without a GPU) and
    `train_steps.json` (a Chrome / Perfetto trace: where the GPU idles between kernels) to `out`.
    """

    def __init__(self, out, *, start: int, stop: int):
        self.out, self.start, self.stop, self.prof = Path(out), start, stop, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.start()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop and self.prof is not None:
            self.prof.stop()
            self.out.mkdir(parents=True, exist_ok=True)
            sort = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            table = self.prof.key_averages().table(sort_by=sort, row_limit=40)
            (self.out / "train_steps.txt").write_text(table + "\n")
            self.prof.export_chrome_trace(str(self.out / "train_steps.json"))


def dpo_steps(policy_dir, all_pairs, p, steps: int, *, seed: int, speed, work_dir, **kwargs):
    """`steps` DPO (β = 0.1) optimiser steps with train params `p` and fast paths `speed`, no
    validation, untracked; `kwargs` go to `trainer.train_policy`, whose result it returns."""
    from prefdiv import trainer

    p = dataclasses.replace(p, max_steps=steps, eval_steps=10 * steps)
    train = dict(loss="sigmoid", beta=0.1, p=p, speed=speed, seed=seed, **kwargs)
    out, work = f"{work_dir}/policy", f"{work_dir}/train"
    return trainer.train_policy(policy_dir, all_pairs, [], out_dir=out, work_dir=work, **train)


def profile_training(
    policy_dir, all_pairs, p, speed, *, seed: int, out_dir, work_dir, warmup=5, steps=5
):
    """Profile `steps` optimiser steps of `p` after `warmup` unprofiled ones (see StepProfiler)."""
    n = warmup + steps
    profiler = StepProfiler(out_dir, start=warmup, stop=n)
    pairs = all_pairs[: n * p.batch_size]
    dpo_steps(
        policy_dir, pairs, p, n, seed=seed, speed=speed, work_dir=f"{work_dir}/profiled",
        callbacks=[profiler],
    )  # fmt: skip
