"""Evaluation of a policy on held-out prompts: reward and diversity, per prompt then averaged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prefdiv import diversity, rewards, sampling
from prefdiv.config import GenerationParams

LABELS = {0: "negative", 1: "positive"}


def per_prompt(
    policy,
    policy_tok,
    reward,
    reward_tok,
    prompts: list[dict],
    *,
    n: int,
    gen: GenerationParams,
    seed: int,
) -> pd.DataFrame:
    """One row per test prompt: mean reward, unigram entropy, tokens, kept count.

    `prompts`: rows `{"prompt_id", "prompt", "label"}`. Prompts with no kept sample get NaN
    reward/entropy and are left out of the averages (the kept fraction shows them).
    """
    samples = sampling.sample(
        policy, policy_tok, [p["prompt"] for p in prompts], n=n, gen=gen, seed=seed, desc="evaluate"
    )
    kept = [sampling.keep(s, gen.min_tokens) for s in samples]
    scores = iter(rewards.score(reward, reward_tok, [r["text"] for k in kept for r in k]).tolist())
    rows = []
    for p, ks in zip(prompts, kept, strict=True):
        r = [next(scores) for _ in ks]
        ids = [k["token_ids"] for k in ks]
        rows.append(
            {
                "prompt_id": p["prompt_id"],
                "label": LABELS[p["label"]],
                "reward": float(np.mean(r)) if r else np.nan,
                "entropy": diversity.unigram_entropy(ids) if ids else np.nan,
                "tokens_pooled": sum(map(len, ids)),
                "mean_tokens": float(np.mean([len(i) for i in ids])) if ids else np.nan,
                "n_kept": len(ks),
            }
        )
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, *, n: int, bootstrap: int, seed: int) -> dict:
    """Flat metrics: means over prompts with 95 % bootstrap CIs, overall and per source label."""
    out = {
        "n_prompts": len(df),
        "kept_fraction": float(df["n_kept"].sum() / (n * len(df))),
        "length/mean_tokens": float(df["mean_tokens"].mean()),
        "diversity/tokens_pooled": float(df["tokens_pooled"].mean()),
    }
    headline = {"reward/mean": "reward", "diversity/entropy_unigram": "entropy"}
    for name, col in headline.items():
        vals = df[col].dropna().to_numpy()
        lo, hi = diversity.bootstrap_ci(vals, n_resamples=bootstrap, seed=seed)
        out |= {name: float(vals.mean()), f"{name}_ci_low": lo, f"{name}_ci_high": hi}
        out[f"{name}_std_prompts"] = float(vals.std(ddof=1))
        for label, part in df.groupby("label"):
            out[f"{name}_{label}"] = float(part[col].mean())
    return out
