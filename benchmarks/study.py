"""Stage timings on a slice of one configuration, and the full study projected from them.

Each compute stage runs through the library function its stage calls: `sampling.sample` and
`sampling.sample_rows` (sample), `rewards.score_rows` (score), `pairs.make_pairs` (pairs),
`trainer.train_policy` with `trainer.settings` (train, see `benchmarks.training`) and
`evaluation.per_prompt` (evaluate: the policy and its reference as two models, as the stage
loads them; no embedding metric, whose weights a GPU machine may lack). Once on the plain path
and once on the fast paths of `speed` (params.yaml), in one process.
"""

from __future__ import annotations

import time

import torch

from benchmarks.random_init import cut
from benchmarks.sampling import reference_loop
from benchmarks.training import StepTimer, dpo_steps, profile_training
from prefdiv import data, evaluation, load, pairs, rewards, sampling
from prefdiv.config import Params, SpeedParams
from prefdiv.errors import UserError


def study_sizes(
    params: Params, n_methods: int, steps: int | None = None, n_frontier: int = 0, n_seeds: int = 1
) -> dict:
    """The full study's sizes: `{"n_train", "n_test"}` prompts of the active scale,
    `n_methods` trained configurations of the levels (SFT, which trains nothing, not counted) and
    `n_frontier` of the levels and the β frontier together (`prefdiv grid --frontier`), each at
    `n_seeds` seeds, and `steps` per method (default: `train.max_steps`)."""
    s = params.active
    steps = steps or s.train.max_steps
    if steps is None:
        raise UserError(
            f"{params.scale}.train.max_steps is null (epochs decide the steps): give "
            "--study-steps, the optimiser steps per method to project"
        )
    n = {"n_train": s.prompts.n_train, "n_test": s.prompts.n_test}
    return n | {
        "n_methods": n_methods,
        "n_frontier": n_frontier,
        "n_seeds": n_seeds,
        "steps": steps,
    }


def _timed(fn):
    """(fn(), its wall seconds), including the GPU work it queued."""
    sync = torch.cuda.synchronize if load.on_gpu() else lambda: None
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return result, time.perf_counter() - start


def _new_tokens(samples: list[list[dict]]) -> int:
    return sum(len(r["token_ids"]) for rs in samples for r in rs)


def study_timings(
    policy_dir, reward_dir, train_reviews: list[dict], test_reviews: list[dict],
    params: Params, speed: SpeedParams, *, train_steps: int, study: dict, work_dir,
    lengths=None, n_reference=0, profile_dir=None,
) -> dict:  # fmt: skip
    """Time every compute stage of `params`' active scale with fast paths `speed` on a slice;
    project the full study (`study`: :func:`study_sizes`).

    The slice: `train_reviews`' prompts sampled k times, scored and paired, `train_steps` DPO
    steps, `test_reviews`' prompts evaluated (n samples each). Training figures are steady-state
    steps (the first ≤ 10, where compilation lands, are timed apart). `lengths`: also time
    scoring, training and evaluation with every sample cut to a length drawn from these
    (`random_init.continuation_lengths`), reported under "imdb_lengths"; sampling keeps its time,
    since a batch runs until its longest row stops. `n_reference`: also time the reference
    study's loop on that many prompts. `profile_dir`: also profile training steps there.
    """
    s = params.active
    model, tok = load.load_policy(policy_dir)
    reference, _ = load.load_policy(policy_dir)  # `evaluate` loads the reference apart
    reward, reward_tok = load.load_reward(reward_dir)
    k, n, gen, seed = s.sample.k, s.evaluate.n, s.generation, params.seed
    n_tokens = s.prompts.prompt_tokens  # prompts as the `sample` and `evaluate` stages make them
    train_prompts = [data.truncate_prompt(tok, r["text"], n_tokens) for r in train_reviews]
    test_prompts = data.test_prompts(test_reviews, tok, n_tokens)
    out = {"device": torch.cuda.get_device_name() if load.on_gpu() else "cpu"}

    def draw(prompts, count, desc):
        return sampling.sample(
            model, tok, prompts, n=count, gen=gen, seed=seed, desc=desc, static=speed.static_decode
        )

    train_samples, t = _timed(lambda: draw(train_prompts, k, "sample"))
    out["sample_tokens_per_s"] = _new_tokens(train_samples) / t
    out["sample_s_per_prompt"] = t / len(train_prompts)
    out["mean_new_tokens"] = _new_tokens(train_samples) / (k * len(train_prompts))
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
        rows = sampling.sample_rows(train_reviews, train_prompts, train_s, gen.min_tokens)
        r, train_pairs = score_and_pair(reward, reward_tok, rows, s.pairs.min_margin)
        if name == "max_length":  # the samples as drawn: the profiled steps train on them
            profiled_pairs = train_pairs
        r |= train_timings(
            policy_dir, train_pairs, params, speed, steps=train_steps, work_dir=f"{work_dir}/{name}"
        )
        parts = evaluate_timings(
            model, tok, reference, reward, reward_tok, test_prompts, test_s, params, speed
        )
        parts["sample"] = sample_eval_s
        r["evaluate_parts_s_per_prompt"] = parts
        r["evaluate_s_per_prompt"] = sum(parts.values())
        r["mean_new_tokens"] = _new_tokens(train_s) / (k * len(train_prompts))
        out[name] = r | project(out, r, params, study)
    if profile_dir is not None:
        profile_training(
            policy_dir, profiled_pairs, params, speed, out_dir=profile_dir,
            work_dir=f"{work_dir}/profiled",
        )  # fmt: skip
    return out


def score_and_pair(reward, reward_tok, rows: list[dict], min_margin: float):
    """({"score_texts_per_s", "n_pairs_per_prompt"}, the pairs) of `sample` stage rows, scored
    in place as the `score` stage does and paired as the `pairs` stage does."""
    n_texts, t = _timed(lambda: rewards.score_rows(reward, reward_tok, rows))
    train_pairs, _ = pairs.make_pairs(rows, min_margin)
    rates = {"score_texts_per_s": n_texts / t, "n_pairs_per_prompt": len(train_pairs) / len(rows)}
    return rates, train_pairs


def train_timings(policy_dir, train_pairs, params: Params, speed, *, steps: int, work_dir):
    """Steady-state pairs/s, compilation seconds and setup pairs/s of `steps` DPO steps."""
    warmup = min(10, steps // 3)
    timer = StepTimer(warmup)
    trained = dpo_steps(
        policy_dir, train_pairs, params, steps, speed=speed, work_dir=work_dir, callbacks=[timer]
    )
    warm_s, step_s = timer.result(steps)
    return {
        "train_pairs_per_s": params.active.train.batch_size / step_s,  # steady state
        "train_warmup_s": warm_s - warmup * step_s,  # beyond steady steps: compilation
        "setup_pairs_per_s": len(train_pairs) / trained.setup_s,  # tokenise + reference log-probs
    }


def evaluate_timings(
    policy, tok, reference, reward, reward_tok, test_prompts, samples, params: Params, speed
) -> dict:
    """Seconds per test prompt of each part of `evaluation.per_prompt` on given samples."""
    s = params.active
    parts: dict = {}
    evaluation.per_prompt(
        policy, tok, reference, reward, reward_tok, None, test_prompts, n=s.evaluate.n,
        gen=s.generation, seed=params.seed, entropy_tokens=s.evaluate.entropy_tokens,
        speed=speed, kl_samples=s.evaluate.kl_samples, rarefied=s.evaluate.rarefied_tokens,
        timings=parts, samples=samples,
    )  # fmt: skip
    return {k: v / len(test_prompts) for k, v in parts.items()}


def project(sampled: dict, r: dict, params: Params, study: dict) -> dict:
    """The full study's minutes from slice rates: sampling, scoring, tokenising and reference
    log-probs once (every method trains on the same pairs, cached); per method, compilation,
    `steps` optimiser steps and one evaluation; plus the SFT policy's evaluation. One seed of the
    levels (`projected_study_h`), and the levels with the β frontier at every seed
    (`projected_frontier_h`, GPU-hours on one GPU: each seed repeats the upstream once)."""
    s = params.active
    once = study["n_train"] * (sampled["sample_s_per_prompt"] + s.sample.k / r["score_texts_per_s"])
    once += study["n_train"] * r["n_pairs_per_prompt"] / r["setup_pairs_per_s"]
    train_s = r["train_warmup_s"] + study["steps"] * s.train.batch_size / r["train_pairs_per_s"]
    eval_s = study["n_test"] * r["evaluate_s_per_prompt"]
    return {
        "projected_once_min": once / 60,
        "projected_train_min_per_method": train_s / 60,
        "projected_evaluate_min_per_method": eval_s / 60,
        "projected_min_per_method": (train_s + eval_s) / 60,
        "projected_study_h": (once + study["n_methods"] * (train_s + eval_s) + eval_s) / 3600,
        "projected_frontier_h": study["n_seeds"]
        * (once + study["n_frontier"] * (train_s + eval_s) + eval_s)
        / 3600,
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
