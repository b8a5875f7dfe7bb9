"""Preference pairs: every pair of kept continuations of one prompt, chosen = higher reward."""

from __future__ import annotations

import itertools
import random
import statistics


def make_pairs(prompts: list[dict], min_margin: float) -> tuple[list[dict], dict]:
    """Pairs from scored samples, ties dropped; also the counts.

    `prompts`: rows `{"prompt_id", "prompt", "label", "responses": [{"text", "reward"}, …]}`.
    Returns rows `{"prompt_id", "prompt", "chosen", "rejected", "chosen_reward",
    "rejected_reward"}` and `{"n_prompts", "n_responses", "n_candidates", "n_ties", "n_pairs",
    "reward_mean", "reward_sd"}`, where n_candidates = Σ C(k_i, 2) and n_pairs = n_candidates −
    n_ties. A tie (|Δreward| < min_margin) carries no preference: it is dropped, not ordered
    arbitrarily. `reward_mean` / `reward_sd` (sample SD) describe the rewards of all the SFT
    policy's responses under this seed's reward model: the scale that `prefdiv compare`
    standardises each seed's rewards by, since every seed trains its own reward model.
    """
    pairs, n_candidates, n_responses = [], 0, 0
    for row in prompts:
        n_responses += len(row["responses"])
        for a, b in itertools.combinations(row["responses"], 2):
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
