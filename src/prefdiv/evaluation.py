"""Evaluation of a policy on held-out prompts: reward, an independent judge, KL, diversity.

Every metric is computed per test prompt over its kept samples, then averaged over prompts
(unweighted), with a 95 % bootstrap CI over prompts and the split by the prompt's source label.
Metric names are flat and stable; the same names go to `metrics/eval.json`, `dvc exp show` and
MLflow.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from prefdiv import diversity, rewards, sampling
from prefdiv.config import GenerationParams

LABELS = {0: "negative", 1: "positive"}

# per-prompt column → metric name (all averaged over prompts, all with CIs and label splits)
HEADLINE = {
    "reward_mean": "reward/mean",
    "reward_median": "reward/median",
    "reward_std": "reward/std",
    "judge": "judge/vader_compound",
    "kl": "kl/sequence",
    "entropy": "diversity/entropy_unigram",
    "entropy_fair": "diversity/entropy_unigram_fair",
    "predictive_entropy": "diversity/predictive_entropy",
    "distinct_1": "diversity/distinct_1",
    "distinct_2": "diversity/distinct_2",
    "distinct_3": "diversity/distinct_3",
    "ead": "diversity/ead",
    "self_bleu": "diversity/self_bleu4",
    "embedding": "diversity/embedding",
}


@torch.no_grad()
def sequence_stats(policy, reference, prompt_ids, responses, *, temperature: float):
    """(predictive entropy, KL estimate) for the responses of one prompt.

    - predictive entropy: entropy (nats) of the policy's full next-token distribution at the
      sampling `temperature`, averaged over all generated positions of the prompt's responses
      (f-DPO paper's diversity measure);
    - KL: mean over responses of Σ_t [log π(y_t) − log π_ref(y_t)] over response tokens (EOS
      excluded), a Monte-Carlo estimate of KL(π‖π_ref) from the policy's own samples (the DPO
      paper's frontier x-axis). Exactly 0 when π = π_ref.
    """
    n_prompt, length = len(prompt_ids), max(len(r) for r in responses)
    dev = policy.device  # everything stays on the model's device; only two scalars come back
    ids = torch.tensor([prompt_ids + r + [0] * (length - len(r)) for r in responses], device=dev)
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in responses], device=dev)
    # Right padding is fine here: a causal model's real positions never attend to later pads.
    attention = torch.cat([torch.ones_like(ids[:, :n_prompt]), mask], 1)
    targets = ids[:, n_prompt:].unsqueeze(-1)
    window = slice(n_prompt - 1, n_prompt - 1 + length)  # logits that predict response tokens

    def logits(model):
        return model(input_ids=ids, attention_mask=attention).logits[:, window].float()

    pol = logits(policy)
    ref = pol if reference is policy else logits(reference)
    logp = F.log_softmax(pol, -1).gather(-1, targets).squeeze(-1)
    ref_logp = F.log_softmax(ref, -1).gather(-1, targets).squeeze(-1)
    kl = ((logp - ref_logp) * mask).sum(1).mean()
    log_q = F.log_softmax(pol / temperature, -1)
    entropy = -(log_q.exp() * log_q).sum(-1)
    return float((entropy * mask).sum() / mask.sum()), float(kl)


def per_prompt(
    policy,
    policy_tok,
    reference,
    reward,
    reward_tok,
    embedder,
    prompts: list[dict],
    *,
    n: int,
    gen: GenerationParams,
    seed: int,
    entropy_tokens: int,
    timings: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per test prompt with every metric, one row per kept sample with its reward).

    `prompts`: rows `{"prompt_id", "prompt", "label"}`. A prompt with no kept sample gets NaN
    metrics and drops out of the averages (the kept fraction shows it). `timings`, if given,
    receives the wall-clock seconds of each part (see :func:`_clock`), which the metrics leave
    out so that identical runs write identical outputs. `entropy_tokens`: each kept sample's
    token budget in the length-fair entropy (:func:`diversity.unigram_entropy_fair`).
    """
    clock = defaultdict(float)
    with _clock(clock, "sample"):
        samples = sampling.sample(
            policy,
            policy_tok,
            [p["prompt"] for p in prompts],
            n=n,
            gen=gen,
            seed=seed,
            desc="evaluate",
        )
    kept = [sampling.keep(s, gen.min_tokens) for s in samples]
    texts = [r["text"] for k in kept for r in k]
    with _clock(clock, "reward"):
        scores = rewards.score(reward, reward_tok, texts)
    with _clock(clock, "judge"):
        judge = rewards.vader_compound(texts)
    # embedder=None skips the embedding metric (NaN): the GPU benchmark has no MiniLM weights.
    with _clock(clock, "embedding"):
        encode = texts and embedder is not None
        emb = embedder.encode(texts, batch_size=64, convert_to_numpy=True) if encode else None
    vocab = len(policy_tok)
    rows, sample_rows, at = [], [], 0
    for p, ks in zip(prompts, kept, strict=True):
        sl = slice(at, at + len(ks))
        at += len(ks)
        ids = [k["token_ids"] for k in ks]
        row = {"prompt_id": p["prompt_id"], "label": LABELS[p["label"]], "n_kept": len(ks)}
        row["tokens_pooled"] = sum(map(len, ids))
        row["mean_tokens"] = float(np.mean([len(i) for i in ids])) if ids else np.nan
        if ks:
            r = scores[sl]
            with _clock(clock, "kl_and_entropy"):
                pred_h, kl = sequence_stats(
                    policy,
                    reference,
                    policy_tok(p["prompt"])["input_ids"],
                    ids,
                    temperature=gen.temperature,
                )
            with _clock(clock, "text_metrics"):
                row |= {
                    "reward_mean": float(r.mean()),
                    "reward_median": float(np.median(r)),
                    "reward_std": float(r.std()),
                    "judge": float(judge[sl].mean()),
                    "kl": kl,
                    "entropy": diversity.unigram_entropy(ids),
                    "entropy_fair": diversity.unigram_entropy_fair(ids, entropy_tokens),
                    "predictive_entropy": pred_h,
                    **{f"distinct_{k}": diversity.distinct_n(ids, k) for k in (1, 2, 3)},
                    "ead": diversity.ead_mean(ids, vocab),
                    "self_bleu": diversity.self_bleu([k["text"] for k in ks]),
                    "embedding": np.nan if emb is None else diversity.embedding_diversity(emb[sl]),
                }
        rows.append(row)
        sample_rows += [
            {"prompt_id": p["prompt_id"], "label": row["label"], "reward": float(s)}
            for s in scores[sl]
        ]
    if timings is not None:
        timings |= clock
    cols = ["prompt_id", "label", "n_kept", "tokens_pooled", "mean_tokens", *HEADLINE]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(sample_rows)


@contextmanager
def _clock(clock: dict, part: str):
    """Add the seconds of the block to `clock[part]`.

    Parts: sample (generation), reward (classifier), judge (VADER), embedding (MiniLM),
    kl_and_entropy (policy and reference forwards), text_metrics (n-gram and self-BLEU
    diversity, on the CPU). Each part ends by copying its results to the host, so on a GPU the
    wall clock is the part's own time without an explicit synchronisation.
    """
    started = time.perf_counter()
    yield
    clock[part] += time.perf_counter() - started


def summarise(df: pd.DataFrame, *, n: int, bootstrap: int, seed: int) -> dict:
    """Flat metrics: means over prompts with 95 % bootstrap CIs, overall and per source label."""
    out = {
        "n_prompts": len(df),
        "kept_fraction": float(df["n_kept"].sum() / (n * len(df))),
        "length/mean_tokens": float(df["mean_tokens"].mean()),
        "diversity/tokens_pooled": float(df["tokens_pooled"].mean()),
    }
    for col, name in HEADLINE.items():
        vals = df[col].dropna().to_numpy()
        lo, hi = diversity.bootstrap_ci(vals, n_resamples=bootstrap, seed=seed)
        out |= {name: float(vals.mean()), f"{name}_ci_low": lo, f"{name}_ci_high": hi}
        for label, part in df.groupby("label"):
            out[f"{name}_{label}"] = float(part[col].mean())
    out["reward/std_over_prompts"] = float(df["reward_mean"].std(ddof=1))
    return out
