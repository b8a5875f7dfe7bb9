"""The metric catalogue: every per-prompt metric of the `evaluate` stage, once (imports nothing).

Each :class:`Metric` ties the per-prompt column of `plots/eval_prompts.csv` to its name in
`metrics/eval.json` (also `dvc exp show` and MLflow), the header and decimals the reports write,
its direction, and where the analysis uses it. The `evaluate` stage writes exactly the columns
that are not `derived`, in this order (`evaluation.HEADLINE` is derived from :data:`METRICS`), so
the pipeline and the reports cannot disagree on a name; the analysis computes the `derived` ones
from the stages' outputs (`replicates.standardise`). Definitions and sources: docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    column: str  # per-prompt column (plots/eval_prompts.csv)
    key: str  # metrics/eval.json name; its interval is `<key>_ci_low` / `<key>_ci_high`
    header: str  # in report tables
    decimals: int = 3
    sign: int = 1  # +1: higher = more diverse (or more reward); −1: lower (self-BLEU)
    table: bool = True  # a column of the configuration table (`prefdiv compare`)
    paired: bool = False  # in the paired differences, variance components and ranks
    role: str = ""  # "reward" | "diversity": what the reference study's claims judge it as
    derived: bool = False  # computed by the analysis from the stages' outputs, not by `evaluate`


METRICS = (
    Metric("reward_mean", "reward/mean", "reward", paired=True),
    Metric("reward_median", "reward/median", "reward median", table=False),
    Metric("reward_std", "reward/std", "reward SD within prompt", table=False),
    Metric("judge", "judge/vader_compound", "VADER judge"),
    # log π − log π_ref on the diversity samples (T = 0.7, top-k, n-gram ban; EOS left out): a
    # sampler-biased log-ratio, kept for comparison with older runs; `kl_rb` is the KL
    Metric("kl", "kl/sequence", "log-ratio (kl/sequence)", decimals=2, paired=True),
    Metric(
        "entropy", "diversity/entropy_unigram", "unigram entropy", paired=True, role="diversity"
    ),
    Metric(
        "entropy_fair",
        "diversity/entropy_unigram_fair",
        "length-fair entropy",
        paired=True,
        role="diversity",
    ),  # fmt: skip
    Metric("predictive_entropy", "diversity/predictive_entropy", "predictive entropy"),
    Metric("distinct_1", "diversity/distinct_1", "distinct-1"),
    Metric("distinct_2", "diversity/distinct_2", "distinct-2", paired=True, role="diversity"),
    Metric("distinct_3", "diversity/distinct_3", "distinct-3"),
    Metric("ead", "diversity/ead", "EAD", paired=True, role="diversity"),
    Metric(
        "self_bleu",
        "diversity/self_bleu4",
        "self-BLEU-4 ↓",
        decimals=1,
        sign=-1,
        paired=True,
        role="diversity",
    ),  # fmt: skip
    Metric("embedding", "diversity/embedding", "embedding div.", paired=True, role="diversity"),
    # H(pooled unigrams) − mean H(one sample's): 0 for identical copies (duplicates seen)
    Metric(
        "entropy_gap",
        "diversity/entropy_duplicate_aware",
        "duplicate-aware entropy",
        paired=True,
        role="diversity",
    ),  # fmt: skip
    Metric("vendi", "diversity/vendi", "Vendi score", decimals=2, paired=True, role="diversity"),
    # KL(π‖π_ref) from samples of π itself (T = 1, no top-k or n-gram ban, EOS included):
    # Monte Carlo and the Rao–Blackwellised full-vocabulary sum, per response and per token
    Metric("kl_mc", "kl/mc", "KL MC (π samples)", decimals=2, table=False),
    Metric("kl_mc_per_token", "kl/mc_per_token", "KL MC per token", table=False),
    Metric("kl_rb", "kl/rb", "KL(π‖π_ref) RB", decimals=2, paired=True),
    Metric("kl_rb_per_token", "kl/rb_per_token", "KL RB per token", table=False),
    Metric("kl_truncated", "kl/truncated_fraction", "KL samples at the cap", table=False),
    # the reward in SDs of its seed's reward model over the SFT policy's samples
    # (metrics/pairs.json), so that seeds with differently scaled reward models average fairly
    Metric(
        "reward_z",
        "reward/standardised",
        "reward (z in seed)",
        paired=True,
        role="reward",
        derived=True,
    ),  # fmt: skip
)

BY_COLUMN = {m.column: m for m in METRICS}
BY_KEY = {m.key: m for m in METRICS}
TABLE = tuple(m for m in METRICS if m.table)  # the configuration table's columns, in order
PAIRED = tuple(m for m in METRICS if m.paired)  # paired differences, variance, ranks
DIVERSITY = tuple(m for m in METRICS if m.role == "diversity")  # the claims' diversity metrics
REWARD = tuple(m for m in METRICS if m.role == "reward")  # the claims' reward metric
