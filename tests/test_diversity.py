import math

import numpy as np
import pytest

from prefdiv import diversity


def test_unigram_entropy_hand_computed():
    # pooled ids: 1,1,2,3 → p = (1/2, 1/4, 1/4)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert diversity.unigram_entropy([[1, 1], [2, 3]]) == pytest.approx(expected)
    assert diversity.unigram_entropy([[7, 7, 7]]) == 0.0
    assert diversity.unigram_entropy([[1, 2, 3, 4]]) == pytest.approx(math.log(4))
    assert math.isnan(diversity.unigram_entropy([]))


def test_fair_entropy_reads_only_each_samples_first_tokens():
    short = [[1, 2, 3], [1, 4, 5]]
    longer = [[1, 2, 3, 9, 9, 9, 9], [1, 4, 5, 6, 7, 8]]  # differs only beyond 3 tokens
    assert diversity.unigram_entropy(longer) > diversity.unigram_entropy(short)
    assert diversity.unigram_entropy_fair(longer, 3) == diversity.unigram_entropy(short)
    assert diversity.unigram_entropy_fair(short, 3) == diversity.unigram_entropy(short)
    within = [[1, 2, 3], [6, 4, 5]]  # differs within the budget
    assert diversity.unigram_entropy_fair(within, 3) != diversity.unigram_entropy_fair(short, 3)
    # pooled over the samples, as the unfair metric: 1,2,1,4 → p = (1/2, 1/4, 1/4)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert diversity.unigram_entropy_fair(longer, 2) == pytest.approx(expected)


def test_bootstrap_ci_covers_mean_and_is_seeded():
    x = np.random.default_rng(1).normal(2.0, 1.0, size=200)
    lo, hi = diversity.bootstrap_ci(x, n_resamples=500, seed=0)
    assert lo < x.mean() < hi
    assert 0.1 < hi - lo < 0.5  # ≈ 2·1.96/√200 = 0.28
    assert diversity.bootstrap_ci(x, n_resamples=500, seed=0) == (lo, hi)


SAME = [[5, 6, 7, 8, 9]] * 4
DISJOINT = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15], [16, 17, 18, 19, 20]]


def test_distinct_n_identical_vs_disjoint():
    assert diversity.distinct_n(DISJOINT, 1) == diversity.distinct_n(DISJOINT, 3) == 1.0
    assert diversity.distinct_n(SAME, 1) == pytest.approx(5 / 20)  # minimal: 1/k of one
    assert diversity.distinct_n(SAME, 2) == pytest.approx(4 / 16)
    # n-grams do not cross response boundaries: [1,2] + [2,1] has bigrams (1,2), (2,1)
    assert diversity.distinct_n([[1, 2], [2, 1]], 2) == 1.0
    assert math.isnan(diversity.distinct_n([[1]], 2))


def test_ead_worked_example():
    # tokens 1,2,1,3 with V = 10: N = 3 unique, C = 4; expected unique = 10·(1 − 0.9⁴) = 3.439
    assert diversity.ead([[1, 2], [1, 3]], 1, vocab_size=10) == pytest.approx(3 / 3.439)
    # bigrams (1,2), (1,3): N = 2, C = 2, expected = 10·(1 − 0.81) = 1.9
    assert diversity.ead([[1, 2], [1, 3]], 2, vocab_size=10) == pytest.approx(2 / 1.9)
    # longer disjoint text keeps EAD near 1 where distinct-n would stay 1 trivially;
    # repeated text is penalised
    assert diversity.ead_mean(SAME, 50_000) < diversity.ead_mean(DISJOINT, 50_000)


def test_self_bleu_identical_is_maximal_disjoint_minimal():
    same = ["the film was a delight from start to finish"] * 4
    disjoint = [
        "the film was a delight",
        "terrible acting ruined everything here",
        "my kids loved those songs",
        "cinematography deserves every award going",
    ]
    assert diversity.self_bleu(same) == pytest.approx(100.0)
    assert diversity.self_bleu(disjoint) < 5.0
    assert math.isnan(diversity.self_bleu(["alone"]))


def test_embedding_diversity():
    e = np.random.default_rng(0).normal(size=(1, 16))
    assert diversity.embedding_diversity(np.repeat(e, 4, axis=0)) == pytest.approx(0.0, abs=1e-9)
    assert diversity.embedding_diversity(np.eye(4)) == pytest.approx(1.0)  # orthogonal


def test_embedding_diversity_with_the_real_model():
    from prefdiv import evaluation

    emb = evaluation.load_embedder()
    same = emb.encode(["A wonderful, moving film."] * 3)
    diff = emb.encode(
        [
            "A wonderful, moving film.",
            "The stock market fell sharply today.",
            "Add two eggs and stir the flour.",
        ]
    )
    assert diversity.embedding_diversity(same) == pytest.approx(0.0, abs=1e-5)
    assert diversity.embedding_diversity(diff) > 0.5


def test_self_bleu_equals_sacrebleu_sentence_score_against_the_others():
    import random

    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)
    rng = random.Random(0)
    words = "the film was great bad plot acting a of and , . it so very boring fun".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(12)]
    texts += [texts[3], texts[3] + " again", ""]  # ties in n-gram counts, an empty sample
    expected = np.mean(
        [bleu.sentence_score(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)]
    )
    assert diversity.self_bleu(texts) == pytest.approx(expected, abs=1e-9)


def test_entropy_gap_is_zero_for_copies_and_the_mutual_information_otherwise():
    sample = [1, 2, 3, 4, 5, 6]
    assert diversity.entropy_gap([sample] * 8) == 0.0  # unigram entropy: log 6, as one sample
    assert diversity.unigram_entropy([sample] * 8) == pytest.approx(math.log(6))
    # the same tokens in another order: the same unigram distribution, a duplicate to it
    assert diversity.entropy_gap([sample, sample[::-1]]) == pytest.approx(0.0, abs=1e-12)
    # k disjoint samples of L distinct tokens: log(kL) − log L = log k, the largest gap
    assert diversity.entropy_gap(DISJOINT) == pytest.approx(math.log(4))
    # unequal lengths, weights 2/3 and 1/3: [1, 1] and [2] have entropy 0, the pool H(2/3, 1/3)
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert diversity.entropy_gap([[1, 1], [2]]) == pytest.approx(expected)
    # hand-computed: [1, 2] (H = log 2) and [1, 1] (H = 0), pooled 1,2,1,1 → H(3/4, 1/4)
    pooled = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert diversity.entropy_gap([[1, 2], [1, 1]]) == pytest.approx(pooled - 0.5 * math.log(2))
    rng = np.random.default_rng(0)
    for _ in range(50):  # a mutual information: ≥ 0 for any lengths (not so for a plain mean)
        rs = [rng.integers(0, 6, rng.integers(0, 9)).tolist() for _ in range(rng.integers(1, 6))]
        assert math.isnan(diversity.entropy_gap(rs)) or diversity.entropy_gap(rs) >= -1e-12
    assert math.isnan(diversity.entropy_gap([[], []]))


def test_rarefied_entropy_draws_exactly_n_tokens_and_sees_duplicates():
    seed = [3, 17]
    one = list(range(40))  # 40 distinct tokens
    copies = [one] * 8
    disjoint = [list(range(40 * i, 40 * i + 40)) for i in range(8)]
    [h_disjoint] = diversity.rarefied_entropy(disjoint, [64], seed)
    [h_copies] = diversity.rarefied_entropy(copies, [64], seed)
    assert h_disjoint == pytest.approx(math.log(64))  # 64 distinct tokens drawn: the ceiling
    assert h_copies < h_disjoint - 0.3  # copies repeat tokens in the pool, and the draw sees it
    # … where the length-fair entropy scores 8 copies as one sample: it cannot see them
    assert diversity.unigram_entropy_fair(copies, 10) == diversity.unigram_entropy_fair([one], 10)
    # a pool of exactly N tokens is drawn whole; a smaller one has no value at that budget
    pool = [[1, 1, 2], [3, 1, 2, 2]]
    assert diversity.rarefied_entropy(pool, [7], seed) == [diversity.unigram_entropy(pool)]
    assert math.isnan(diversity.rarefied_entropy(pool, [8], seed)[0])
    # seeded: the same positions on every call, nested over the budgets
    assert diversity.rarefied_entropy(copies, [16, 64], seed) == [
        diversity.rarefied_entropy(copies, [16], seed)[0],
        h_copies,
    ]


def test_rarefied_entropy_cannot_see_what_its_draw_leaves_out():
    """Two pools that differ only at positions the draw does not take, or by a renaming of
    token ids, score the same; a change at a drawn position is seen."""
    seed = [0, 5]
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 30, 40).tolist() for _ in range(4)]  # 160 pooled tokens
    drawn = set(np.random.default_rng(seed).permutation(160)[:64].tolist())  # the documented draw
    flat = [t for r in a for t in r]
    undrawn = min(set(range(160)) - drawn)
    taken = min(drawn)

    def changed(at):
        f = list(flat)
        f[at] = 999  # a token id found nowhere else
        return [f[i : i + 40] for i in range(0, 160, 40)]

    [h] = diversity.rarefied_entropy(a, [64], seed)
    assert diversity.rarefied_entropy(changed(undrawn), [64], seed) == [h]
    assert diversity.rarefied_entropy(changed(taken), [64], seed) != [h]
    renamed = [[t + 1000 for t in r] for r in a]
    assert diversity.rarefied_entropy(renamed, [64], seed) == pytest.approx([h])


def test_vendi_score_counts_effectively_distinct_embeddings():
    e = np.random.default_rng(0).normal(size=(1, 16))
    assert diversity.vendi_score(np.repeat(e, 5, axis=0)) == pytest.approx(1.0)
    assert diversity.vendi_score(np.eye(5)) == pytest.approx(5.0)
    assert diversity.vendi_score(3.0 * np.eye(4)[:3]) == pytest.approx(3.0)  # scale-free
    # two unit vectors at cosine c: eigenvalues of K/2 are (1 ± c)/2
    c = 0.5
    pair = np.array([[1.0, 0.0], [c, math.sqrt(1 - c**2)]])
    lam = np.array([(1 + c) / 2, (1 - c) / 2])
    assert diversity.vendi_score(pair) == pytest.approx(math.exp(-(lam * np.log(lam)).sum()))
    assert math.isnan(diversity.vendi_score(np.zeros((0, 4))))
