"""Preference pairs from scored samples, chosen = higher reward: every pair of a prompt's kept
continuations (the study's), or DivPO's one pair per prompt."""

from __future__ import annotations

import itertools
import math
import random
import statistics


def make_pairs(
    prompts: list[dict], min_margin: float, strategy: str = "all", rho: float = 0.3
) -> tuple[list[dict], dict]:
    """Pairs from scored samples, ties dropped; also the counts.

    `prompts`: rows `{"prompt_id", "prompt", "label", "responses": [{"text", "reward",
    "truncated", "logp"}, …]}` (`truncated` and `logp` optional). `strategy`: "all" = every pair
    of a prompt's responses; "divpo" = :func:`divpo_candidates`, one pair per prompt.
    Returns rows `{"prompt_id", "prompt", "chosen", "rejected", "chosen_reward",
    "rejected_reward", "chosen_truncated", "rejected_truncated"}` and `{"n_prompts",
    "n_responses", "n_candidates", "n_ties", "n_pairs", "reward_mean", "reward_sd"}`, where
    n_candidates = Σ C(k_i, 2) for "all" (one per prompt with ≥ 2 responses for "divpo") and
    n_pairs = n_candidates − n_ties. A tie (|Δreward| < min_margin) carries no preference: it is
    dropped, not ordered arbitrarily. `reward_mean` / `reward_sd` (sample SD) describe the rewards
    of all the SFT policy's responses under this seed's reward model: the scale that `prefdiv
    compare` standardises each seed's rewards by, since every seed trains its own reward model.
    """
    if strategy not in ("all", "divpo"):
        raise ValueError(f"unknown pair strategy {strategy!r}; allowed: all, divpo")
    pairs, n_candidates, n_responses = [], 0, 0
    for row in prompts:
        n_responses += len(row["responses"])
        if strategy == "all":
            found = itertools.combinations(row["responses"], 2)
        else:
            found = divpo_candidates(row["responses"], rho)
        for a, b in found:
            n_candidates += 1
            if abs(a["reward"] - b["reward"]) < min_margin:
                continue
            chosen, rejected = (a, b) if a["reward"] > b["reward"] else (b, a)
            pairs.append(
                {
                    "prompt_id": row["prompt_id"],
                    "prompt": row["prompt"],
                    "chosen": chosen["text"],
                    "rejected": rejected["text"],
                    "chosen_reward": chosen["reward"],
                    "rejected_reward": rejected["reward"],
                    "chosen_truncated": bool(chosen.get("truncated", False)),
                    "rejected_truncated": bool(rejected.get("truncated", False)),
                }
            )
    rewards = [r["reward"] for row in prompts for r in row["responses"]]
    counts = {
        "n_prompts": len(prompts),
        "n_responses": n_responses,
        "n_candidates": n_candidates,
        "n_ties": n_candidates - len(pairs),
        "n_pairs": len(pairs),
        "reward_mean": statistics.fmean(rewards) if rewards else float("nan"),
        "reward_sd": statistics.stdev(rewards) if len(rewards) > 1 else float("nan"),
    }
    return pairs, counts


def divpo_candidates(responses: list[dict], rho: float) -> list[tuple[dict, dict]]:
    """DivPO's pair of one prompt (Lanchantin et al., arXiv 2501.18101, §3): [(chosen, rejected)],
    or [] with fewer than 2 responses.

    The responses are ranked by reward; the top pool is the ceil(ρ·k) highest, the bottom pool
    the ceil(ρ·k) lowest (ρ ≤ 0.5, so they never overlap). Chosen = the most diverse of the top
    pool, rejected = the least diverse of the bottom pool, with diversity D(y) = −log π_SFT(y|x)
    (the paper's "model probability" criterion; `logp` as the `sample` stage records it). Ties in
    reward or D keep the sample order, so the choice is deterministic.
    """
    if len(responses) < 2:
        return []
    pool = max(1, math.ceil(rho * len(responses)))
    ranked = sorted(responses, key=lambda r: -r["reward"])  # stable: sample order breaks ties
    top, bottom = ranked[:pool], ranked[-pool:]
    chosen = max(top, key=lambda r: -r["logp"])  # highest D = lowest log-prob
    rejected = min(bottom, key=lambda r: -r["logp"])  # lowest D = highest log-prob
    return [(chosen, rejected)]


def split_by_prompt(pairs: list[dict], val_fraction: float, seed: int, max_val: int | None = None):
    """(train, val) pairs; all pairs of one prompt land on the same side, so val is unseen.

    `max_val` keeps a seeded subset of that many validation pairs (the study's 500); the other
    pairs of the held-out prompts are used for neither, so validation stays on unseen prompts.
    """
    ids = sorted({p["prompt_id"] for p in pairs})
    rng = random.Random(seed)
    rng.shuffle(ids)
    val_ids = set(ids[: round(len(ids) * val_fraction)])
    val = [p for p in pairs if p["prompt_id"] in val_ids]
    if max_val is not None and len(val) > max_val:
        keep = set(rng.sample(range(len(val)), max_val))
        val = [p for i, p in enumerate(val) if i in keep]
    return [p for p in pairs if p["prompt_id"] not in val_ids], val
