"""Sampling throughput: our `sample` stage's generation versus the reference study's loop.

The reference study's loop, re-implemented from its description: prompts in their original
order, batches of 16, right padding, one `generate` call per batch and per sample (k calls per
batch), each batch decoded before the next. Ours (`sampling.sample`): length-sorted batches, left
padding, the k samples of a prompt as k rows of one batch, drawn by `sampling.decode`. Same model,
prompts and sampling settings; throughput = generated tokens (up to EOS) per second.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

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


def paper_throughput(
    policy_dir,
    reward_dir,
    train_prompts: list[str],
    test_prompts: list[dict],
    s,
    *,
    seed: int,
    train_steps: int,
    n_reference: int,
    study: dict,
    work_dir,
    profile_dir=None,
) -> dict:
    """Time every compute stage of one study configuration `s` on a slice, and project the study.

    `s` is a scale block (paper on a GPU). The slice: `train_prompts` sampled k times, scored and
    paired, `train_steps` optimiser steps, `test_prompts` evaluated (n samples each, every metric
    but the embedding one). `study` gives the full sizes: {"n_train", "n_test", "n_methods",
    "steps"}. Projection = sample + score once, then per method train + evaluate, plus one
    evaluation of the SFT baseline. `profile_dir`: also profile a few training steps there
    (:func:`profile_training`), after and apart from the timed run.
    """
    from prefdiv import evaluation, models, pairs, rewards

    model, tok = models.load_policy(policy_dir)
    reward, reward_tok = models.load_reward(reward_dir)
    out = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}

    def timed(fn):
        sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        return result, time.perf_counter() - start

    k, gen = s.sample.k, s.generation
    samples, t = timed(
        lambda: sampling.sample(model, tok, train_prompts, n=k, gen=gen, seed=seed, desc="sample")
    )
    n_tokens = sum(len(r["token_ids"]) for rs in samples for r in rs)
    out |= {"sample_tokens_per_s": n_tokens / t, "sample_s_per_prompt": t / len(train_prompts)}
    out["mean_new_tokens"] = n_tokens / (k * len(train_prompts))
    ref_tokens, ref_t = reference_loop(model, tok, train_prompts[:n_reference], k=k, gen=gen)
    out["reference_loop_tokens_per_s"] = ref_tokens / ref_t
    out["sampling_speedup"] = out["sample_tokens_per_s"] / out["reference_loop_tokens_per_s"]

    rows = [
        {
            "prompt_id": str(i),
            "prompt": p,
            "responses": [r["text"] for r in sampling.keep(rs, gen.min_tokens)],
        }
        for i, (p, rs) in enumerate(zip(train_prompts, samples, strict=True))
    ]
    n_texts, t = timed(lambda: rewards.score_rows(reward, reward_tok, rows))
    out["score_texts_per_s"] = n_texts / t
    all_pairs, _ = pairs.make_pairs(rows, s.pairs.min_margin)
    timings: dict = {}
    p = dpo_steps(
        policy_dir,
        all_pairs,
        s.train,
        train_steps,
        seed=seed,
        work_dir=f"{work_dir}/timed",
        timings=timings,
    )
    out["train_pairs_per_s"] = train_steps * p.batch_size / timings["train_s"]
    out["setup_pairs_per_s"] = len(all_pairs) / timings["setup_s"]  # tokenise + reference logps

    parts: dict = {}
    _, t = timed(
        lambda: evaluation.per_prompt(
            model,
            tok,
            model,
            reward,
            reward_tok,
            None,
            test_prompts,
            n=s.evaluate.n,
            gen=gen,
            seed=seed,
            entropy_tokens=s.evaluate.entropy_tokens,
            timings=parts,
        )
    )
    out["evaluate_s_per_prompt"] = t / len(test_prompts)
    out["evaluate_parts_s_per_prompt"] = {k: v / len(test_prompts) for k, v in parts.items()}
    if profile_dir is not None:
        profile_training(
            policy_dir, all_pairs, s.train, seed=seed, out_dir=profile_dir, work_dir=work_dir
        )

    n_pairs = study["n_train"] * len(all_pairs) / len(train_prompts)
    once = study["n_train"] * (out["sample_s_per_prompt"] + k / out["score_texts_per_s"])
    train_s = study["steps"] * p.batch_size / out["train_pairs_per_s"]
    train_s += n_pairs / out["setup_pairs_per_s"]
    eval_s = study["n_test"] * out["evaluate_s_per_prompt"]
    out |= {
        "projected_sample_and_score_min": once / 60,
        "projected_train_min_per_method": train_s / 60,
        "projected_evaluate_min_per_method": eval_s / 60,
        "projected_min_per_method": (train_s + eval_s) / 60,
        "projected_study_h": (once + study["n_methods"] * (train_s + eval_s) + eval_s) / 3600,
    }
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


def dpo_steps(policy_dir, all_pairs, p, steps: int, *, seed: int, work_dir, **kwargs):
    """`steps` DPO (β = 0.1) optimiser steps with train params `p`, no validation, untracked;
    `kwargs` go to `trainer.train_policy`. Returns the params it ran with."""
    from prefdiv import trainer

    p = dataclasses.replace(p, max_steps=steps, eval_steps=10 * steps)
    train = dict(loss="sigmoid", beta=0.1, p=p, seed=seed, report_to=[], **kwargs)
    out, work = f"{work_dir}/policy", f"{work_dir}/train"
    trainer.train_policy(policy_dir, all_pairs, [], out_dir=out, work_dir=work, **train)
    return p


def profile_training(policy_dir, all_pairs, p, *, seed: int, out_dir, work_dir, warmup=5, steps=5):
    """Profile `steps` optimiser steps of `p` after `warmup` unprofiled ones (see StepProfiler)."""
    n = warmup + steps
    profiler = StepProfiler(out_dir, start=warmup, stop=n)
    pairs = all_pairs[: n * p.batch_size]
    dpo_steps(
        policy_dir, pairs, p, n, seed=seed, work_dir=f"{work_dir}/profiled", callbacks=[profiler]
    )
