"""Diversity of a policy's samples for one prompt, as the literature measures it.

Every function takes the kept responses of ONE prompt; the caller averages over prompts.
Token-level metrics use the policy tokenizer's ids (as the reference study's entropy does).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from scipy import stats

_BLEU = BLEU(effective_order=True)  # sentence-level BLEU: effective order avoids zero n-gram counts


def unigram_entropy(responses: Sequence[Sequence[int]]) -> float:
    """Shannon entropy (nats) of the unigram distribution of token ids pooled over responses.

    The reference study's diversity metric. It grows with the number of tokens pooled, so
    read it beside the mean length (`diversity/tokens_pooled`).
    """
    counts = np.fromiter(Counter(t for r in responses for t in r).values(), dtype=np.float64)
    if counts.size == 0:
        return float("nan")
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def unigram_entropy_fair(responses: Sequence[Sequence[int]], tokens: int) -> float:
    """Length-fair unigram entropy: :func:`unigram_entropy` of each response's first `tokens`.

    H = −Σ_v p_v log p_v, p_v = count of v in {r[:tokens] for r in responses} / (k · tokens)
    when each of the k responses has ≥ `tokens` tokens (the evaluation keeps only such samples:
    `evaluate.entropy_tokens` ≤ `generation.min_tokens`). Every policy then pools the same number
    of tokens per kept sample, so writing longer responses no longer raises the entropy; what a
    policy writes beyond its first `tokens` tokens is not seen. A shorter response contributes
    all of its tokens.
    """
    return unigram_entropy([r[:tokens] for r in responses])


def entropy_gap(responses: Sequence[Sequence[int]]) -> float:
    """Duplicate-aware entropy: the entropy of the pooled unigrams minus the samples' own.

    G = H(p̄) − Σ_i w_i H(p_i), p̄ = Σ_i w_i p_i, w_i = n_i / N,

    with p_i the unigram distribution of response i (n_i tokens, N pooled). This is the Jensen
    gap of the entropy, i.e. the mutual information I(S; V) between the response index S (drawn
    with probability w) and a token V drawn from it (the generalised Jensen–Shannon divergence of
    the p_i; Lin 1991, IEEE Trans. Inf. Theory 37(1)). G ≥ 0, G ≤ H(w) ≤ log k for k responses,
    and G = 0 exactly when every response has the same unigram distribution, e.g. k identical
    copies, which :func:`unigram_entropy` scores as one response's entropy. The weights are
    token shares, not 1/k, so that G is exactly that mutual information (≥ 0) when lengths differ;
    for equal lengths they are the plain mean over responses. Blind to order: two responses
    that are permutations of each other count as duplicates. NaN with no tokens.
    """
    lengths = np.array([len(r) for r in responses], dtype=np.float64)
    if lengths.sum() == 0:
        return float("nan")
    own = np.array([unigram_entropy([r]) if len(r) else 0.0 for r in responses])
    return unigram_entropy(responses) - float(lengths @ own / lengths.sum())


def rarefied_entropy(
    responses: Sequence[Sequence[int]], budgets: Sequence[int], seed
) -> list[float]:
    """Rarefied unigram entropy: the entropy of exactly N tokens drawn from the pooled responses.

    For each N in `budgets`: H of the unigram distribution of N token positions drawn uniformly
    without replacement from the pooled responses (their concatenation): the first N of one
    permutation `np.random.default_rng(seed).permutation(pooled length)`, so the draws of the
    budgets are nested and a seed gives the same positions on every run. NaN for a budget above
    the pooled length.

    Rarefaction (Sanders 1968, Am. Nat. 102; Hurlbert 1971, Ecology 52) compares the diversity
    of samples of unequal size at one common size: the entropy of N tokens is ≤ log N whatever
    the number of responses kept and their lengths, so neither writing longer nor keeping one
    sample more raises its ceiling (the length-fair entropy pools `tokens` per *kept* sample, so
    a dropped sample lowers its ceiling), and unlike that metric it reads every position and sees
    duplicate responses (their tokens repeat in the pool).
    """
    pool = np.fromiter((t for r in responses for t in r), dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(pool))
    return [
        unigram_entropy([pool[order[:n]].tolist()]) if n <= len(pool) else float("nan")
        for n in budgets
    ]


def _ngrams(responses: Sequence[Sequence], n: int) -> list[tuple]:
    # n-grams never cross a response boundary
    return [tuple(r[i : i + n]) for r in responses for i in range(len(r) - n + 1)]


def distinct_n(responses: Sequence[Sequence], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / total n-grams, pooled over responses."""
    grams = _ngrams(responses, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def ead(responses: Sequence[Sequence], n: int, vocab_size: int) -> float:
    """Expectation-adjusted distinct-n (Liu et al., "Rethinking and Refining the Distinct
    Metric", ACL 2022).

    Unique n-grams divided by the number *expected* if the C n-grams were drawn uniformly from
    V types: V·[1 − ((V − 1)/V)^C]. Unlike distinct-n it does not fall just because responses
    get longer. V = `vocab_size` for every n, as in the paper's formula.
    """
    grams = _ngrams(responses, n)
    if not grams:
        return float("nan")
    v, c = float(vocab_size), len(grams)
    expected = v * (1.0 - np.exp(c * np.log1p(-1.0 / v)))  # V[1 − ((V−1)/V)^C], stable
    return len(set(grams)) / expected


def ead_mean(responses: Sequence[Sequence], vocab_size: int, ns=range(1, 6)) -> float:
    """EAD averaged over n = 1..5."""
    return float(np.mean([ead(responses, n, vocab_size) for n in ns]))


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU-4 (Zhu et al. 2018): sacreBLEU sentence BLEU of each text against the others.

    0–100; lower = more diverse. NaN with fewer than two texts. Equal to
    `mean(BLEU.sentence_score(t_i, others))` (tested), but each text is tokenised and its
    n-grams counted once instead of once per other text (sentence_score re-reads all n − 1 other
    samples for each of the n).
    """
    if len(texts) < 2:
        return float("nan")
    order = _BLEU.max_ngram_order
    grams = [extract_all_word_ngrams(_BLEU._preprocess_segment(t), 1, order) for t in texts]
    # Per n-gram: the largest count, which text has it, and the second largest, so the
    # max count over the *other* texts (multi-reference clipping) is one lookup.
    top: dict[tuple, list] = {}
    for i, (counts, _) in enumerate(grams):
        for gram, c in counts.items():
            best = top.get(gram)
            if best is None:
                top[gram] = [c, i, 0]
            elif c > best[0]:
                top[gram] = [c, i, best[0]]
            elif c > best[2]:
                best[2] = c
    lengths = [n for _, n in grams]
    scores = []
    for i, (counts, hyp_len) in enumerate(grams):
        correct, total = [0] * order, [0] * order
        for gram, c in counts.items():
            total[len(gram) - 1] += c
            best, owner, second = top[gram]
            correct[len(gram) - 1] += min(c, second if owner == i else best)
        ref_len = _BLEU._get_closest_ref_len(hyp_len, lengths[:i] + lengths[i + 1 :])
        stats = [hyp_len, ref_len, *correct, *total]
        scores.append(_BLEU._compute_score_from_stats(stats).score)
    return float(np.mean(scores))


def embedding_diversity(embeddings: np.ndarray) -> float:
    """1 − mean pairwise cosine similarity of sentence embeddings (rows). NaN with < 2 rows."""
    if len(embeddings) < 2:
        return float("nan")
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = [float(e[i] @ e[j]) for i, j in itertools.combinations(range(len(e)), 2)]
    return 1.0 - float(np.mean(sims))


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023, arXiv 2210.02410, Eq. 1): the effective number of
    distinct responses, exp of the Shannon entropy of the eigenvalues λ of K/n,

    VS = exp(−Σ_i λ_i log λ_i),  K_ij = cos(e_i, e_j)  (n × n, K_ii = 1, so Σ λ = 1),

    1 for n identical embeddings, n for n orthogonal ones. A few lines of numpy, the paper's
    definition with the cosine kernel (the PyPI `vendi_score` package is not a dependency).
    Its range grows with n, so compare it at equal sample counts. NaN with no rows.
    """
    if len(embeddings) == 0:
        return float("nan")
    e = np.asarray(embeddings, dtype=np.float64)  # float32 rounding would blur the small λ
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(e @ e.T / len(e))
    lam = lam[lam > 0]  # rounding leaves tiny negative eigenvalues of a PSD matrix; 0 log 0 = 0
    return float(np.exp(-(lam * np.log(lam)).sum()))


def bootstrap_ci(values: Sequence[float], *, n_resamples: int, seed: int) -> tuple[float, float]:
    """95 % percentile-bootstrap confidence interval of the mean over prompts."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    res = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
