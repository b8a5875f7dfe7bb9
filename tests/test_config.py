import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from prefdiv import config
from prefdiv.config import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repository_params_are_valid():
    p = config.load(ROOT / "params.yaml")
    assert p.scale == "demo" and p.active is p.demo
    assert isinstance(p.demo.train.learning_rate, float)  # YAML "2.0e-4" typed as float
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.loss = "sft"


def _with(raw, changes: dict) -> dict:
    """A copy of `raw` with the dotted keys of `changes` set."""
    out = copy.deepcopy(raw)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node[key]
        node[leaf] = value
    return out


def _error(raw, path, value):
    with pytest.raises(ParamsError) as e:
        config.validate(_with(raw, {path: value}))
    return str(e.value)


@pytest.mark.parametrize(
    "path, value, must_say",
    [
        ("loss", "unknown", ["loss", "'unknown'", "sigmoid", "sft"]),
        ("beta", 0, ["beta", "0", "> 0"]),
        ("beta", -0.1, ["beta", "-0.1", "> 0"]),
        ("scale", "huge", ["scale", "'huge'", "demo"]),
        ("demo.sample.k", -4, ["demo.sample.k", "-4", "≥ 2"]),
        ("demo.evaluate.n", -1, ["demo.evaluate.n", "-1", "≥ 2"]),
        ("demo.train.max_steps", "many", ["demo.train.max_steps", "'many'", "int"]),
        ("demo.pairs.val_fraction", 1.0, ["demo.pairs.val_fraction", "1.0", "[0, 1)"]),
        ("paper.train.max_length", 200, ["paper.train.max_length", "200", "≥", "= 289"]),
        ("paper.sft.model", 3, ["paper.sft.model", "3", "str"]),
        ("scale", "paper ", ["scale", "'paper '", "demo, paper"]),
        ("paper.speed.compile", "yes", ["paper.speed.compile", "'yes'", "bool"]),
        ("demo.speed.eval_rows", -1, ["demo.speed.eval_rows", "-1", "≥ 0"]),
        ("demo.speed.flush_denormal", "on", ["demo.speed.flush_denormal", "'on'", "bool"]),
        ("paper.speed.fixed_length", False, ["paper.speed.compile", "fixed_length", "recompiles"]),
        ("paper.speed.lm_head", "chunked", ["paper.speed.compile", "lm_head = full", "'chunked'"]),
        ("demo.speed.lm_head", "fused", ["demo.speed.lm_head", "'fused'", "chunked, full"]),
        ("train_seed", -1, ["train_seed", "-1", "≥ 0"]),
        ("train_seed", 1.5, ["train_seed", "1.5", "int"]),
        ("demo.evaluate.entropy_tokens", 0, ["demo.evaluate.entropy_tokens", "0", "> 0"]),
        ("demo.evaluate.kl_samples", 0, ["demo.evaluate.kl_samples", "0", "> 0"]),
        ("demo.evaluate.rarefied_tokens", 64, ["demo.evaluate.rarefied_tokens = 64", "list"]),
        ("demo.evaluate.rarefied_tokens", [], ["demo.evaluate.rarefied_tokens = []", "non-empty"]),
        (
            "demo.evaluate.rarefied_tokens",
            [64, 0],
            ["demo.evaluate.rarefied_tokens[1] = 0", "> 0"],
        ),
        ("paper.evaluate.rarefied_tokens", ["64"], ["rarefied_tokens[0] = '64'", "int"]),
        (
            "paper.evaluate.entropy_tokens",
            11,
            ["paper.evaluate.entropy_tokens = 11", "≤ generation.min_tokens = 10", "exactly"],
        ),
    ],
)
def test_bad_values_name_key_value_and_allowed(raw, path, value, must_say):
    msg = _error(raw, path, value)
    for s in must_say:
        assert s in msg, (s, msg)


# Values that can only give NaN, degenerate metrics or a crash mid-pipeline: each message names
# the key, the value, what is allowed and why.
@pytest.mark.parametrize(
    "changes, must_say",
    [
        ({"demo.evaluate.n": 1}, ["demo.evaluate.n = 1", "≥ 2", "self-BLEU", "NaN"]),
        ({"paper.prompts.n_test": 1}, ["paper.prompts.n_test = 1", "≥ 2", "interval"]),
        ({"demo.evaluate.bootstrap": 39}, ["demo.evaluate.bootstrap = 39", "≥ 40", "tail"]),
        (
            {"demo.evaluate.rarefied_tokens": [128, 64]},
            ["demo.evaluate.rarefied_tokens = [128, 64]", "distinct", "ascending"],
        ),
        ({"demo.evaluate.rarefied_tokens": [64, 64]}, ["[64, 64]", "distinct"]),
        (
            {"demo.evaluate.rarefied_tokens": [64, 385]},
            ["demo.evaluate.rarefied_tokens = [64, 385]", "≤ evaluate.n × generation", "= 384"],
        ),
        ({"seed": 2**32}, ["seed = 4294967296", "[0, 4294967296)", "numpy"]),
        ({"demo.sample.k": 1}, ["demo.sample.k = 1", "≥ 2", "pair"]),
        (
            {"demo.generation.max_new_tokens": 9},
            ["demo.generation.max_new_tokens = 9", "≥ generation.min_tokens = 10", "no sample"],
        ),
        (
            {"demo.sft.block_size": 64},  # 32 prompt + 48 new + EOS = 81 positions
            ["demo.generation.max_new_tokens = 48", "= 81", "≤ sft.block_size = 64", "position"],
        ),
        (
            {"demo.speed.fixed_length": True, "demo.train.max_length": 136},
            ["demo.train.max_length = 136", "fixed_length", "≤ sft.block_size = 128", "padded"],
        ),
        ({"paper.generation.top_k": 1}, ["paper.generation.top_k = 1", "≥ 2", "greedy"]),
        ({"demo.prompts.n_model_train": 0}, ["demo.prompts.n_model_train = 0", "> 0", "SFT"]),
        ({"demo.sft.n_head": 3}, ["demo.sft.n_embd = 128", "multiple of sft.n_head = 3"]),
        ({"demo.reward.n_head": 5}, ["demo.reward.dim = 128", "multiple of reward.n_head = 5"]),
        (
            {"demo.sft.warmup_steps": 1500},
            ["demo.sft.warmup_steps = 1500", "< sft.max_steps = 1500", "warming up"],
        ),
        ({"demo.reward.warmup_steps": 800}, ["demo.reward.warmup_steps = 800", "< reward.max"]),
        ({"paper.train.warmup_steps": 7000}, ["paper.train.warmup_steps = 7000", "< train.max"]),
        (
            {"demo.train.logging_steps": 201},
            ["demo.train.logging_steps = 201", "≤ train.max_steps = 200", "curve would be empty"],
        ),
        (
            {"paper.train.num_processes": 5},
            ["paper.train.batch_size = 24", "multiple of train.num_processes = 5"],
        ),
        (
            {"demo.pairs.val_fraction": 0.001},
            ["demo.pairs.val_fraction = 0.001", "round(300 × 0.001) = 0", "no validation pairs"],
        ),
        (
            {"demo.pairs.val_fraction": 0.999},
            ["demo.pairs.val_fraction = 0.999", "= 300 of the 300", "no training pairs"],
        ),
    ],
)
def test_meaningless_values_are_rejected_with_the_reason(raw, changes, must_say):
    with pytest.raises(ParamsError) as e:
        config.validate(_with(raw, changes))
    msg = str(e.value)
    assert msg.startswith("params.yaml: ") and "\n" not in msg
    for s in must_say:
        assert s in msg, (s, msg)


@pytest.mark.parametrize(
    "path, value",
    [
        ("paper.train.max_steps", None),  # epochs: warm-up and logging unchecked, not refused
        ("demo.pairs.val_fraction", 0.0),  # no validation, on purpose
        ("demo.generation.top_k", 0),  # no top-k filtering
        ("demo.train.eval_steps", 500),  # > max_steps: still one evaluation, after the last step
        ("paper.prompts.n_model_train", 0),  # paper scale trains no model
    ],
)
def test_edge_values_that_still_measure_something_are_accepted(raw, path, value):
    config.validate(_with(raw, {path: value}))


def test_max_new_tokens_at_min_tokens_is_accepted(raw):
    # = min_tokens: only full-length samples kept; 8 × 10 pooled tokens hold a budget of 80
    config.validate(
        _with(raw, {"demo.generation.max_new_tokens": 10, "demo.evaluate.rarefied_tokens": [80]})
    )


def test_sft_needs_no_beta(raw):
    assert config.validate({**raw, "loss": "sft", "beta": 0}).loss == "sft"


def test_typo_in_a_key_fails(raw):
    bad = copy.deepcopy(raw)
    bad["demo"]["sample"]["kk"] = bad["demo"]["sample"].pop("k")
    with pytest.raises(ParamsError, match=r"unknown key 'demo.sample.kk'.*allowed keys.*\bk\b"):
        config.validate(bad)
    with pytest.raises(ParamsError, match="missing key 'demo.sample.k'"):
        config.validate({**bad, "demo": {**bad["demo"], "sample": {}}})


def test_stage_fails_fast_on_bad_params(tmp_path, raw):
    """A stage validates params.yaml before touching data: no input file is needed."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "loss": "dpoo"}))
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "stages" / "sample.py"),
            "--params",
            "params.yaml",
            "--prompts",
            "missing.jsonl",
            "--policy",
            "missing",
            "--out",
            "x.jsonl",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2  # errors.EXIT_USER_ERROR: one line, no traceback
    assert out.stderr.startswith("prefdiv: params.yaml: loss = 'dpoo' is not allowed")
    assert len(out.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "change, must_say",
    [
        ({"loss": "alpha", "alpha": 0.0}, ["alpha = 0.0", "(0, 1)"]),
        ({"loss": "alpha", "alpha": 1.0}, ["alpha = 1.0", "(0, 1)"]),
        ({"loss": "cdpo", "label_smoothing": 0.5}, ["label_smoothing = 0.5", "[0, 0.5)"]),
        ({"loss": "cdpo", "label_smoothing": -0.1}, ["label_smoothing = -0.1", "[0, 0.5)"]),
        ({"loss": "ipo", "beta": 0.0, "beta_end": 0.01}, ["beta = 0.0", "loss=ipo", "> 0"]),
        ({"loss": "sigmoid", "beta": -1.0, "beta_end": 1.0}, ["beta = -1.0", "≥ 0"]),
        ({"loss": "sigmoid", "beta": 0.0, "beta_end": 0.0}, ["beta_end = 0.0", "> 0"]),
        ({"loss": "exo_pair", "label_smoothing": 0.0}, ["loss=exo_pair", "label_smoothing=0.001"]),
        ({"loss": "hdpo", "hdpo_alpha": 0.0}, ["hdpo_alpha = 0.0", "> 0"]),
        ({"loss": "simpo", "simpo_ratio": -0.5}, ["simpo_ratio = -0.5", "≥ 0"]),
        ({"pair_strategy": "best"}, ["pair_strategy = 'best'", "all", "divpo"]),
        ({"pair_strategy": "divpo", "divpo_rho": 0.6}, ["divpo_rho = 0.6", "(0, 0.5]"]),
    ],
)
def test_loss_options_are_range_checked(raw, change, must_say):
    with pytest.raises(ParamsError) as e:
        config.validate({**raw, **change})
    for s in must_say:
        assert s in str(e.value), (s, str(e.value))


@pytest.mark.parametrize(
    "change",
    [
        {"loss": "sigmoid", "beta": 0.0, "beta_end": 1.0},  # the study's DPO annealing
        {"loss": "ipo", "beta": 1.0, "beta_end": 0.01},  # the study's IPO annealing
        {"loss": "alpha", "alpha": 0.3},
        {"loss": "cdpo", "label_smoothing": 0.15},
        {"loss": "hdpo", "hdpo_alpha": 1.5},  # level 4
        {"loss": "chipo"},
        {"loss": "exo_pair", "label_smoothing": 0.001},
        {"loss": "simpo", "beta": 2.0, "simpo_ratio": 0.5},
        {"loss": "sigmoid", "pair_strategy": "divpo", "divpo_rho": 0.3},
    ],
)
def test_grid_configurations_are_accepted(raw, change):
    assert config.validate({**raw, **change}).loss == change["loss"]


def test_train_seed_defaults_to_zero(raw):
    assert config.validate(raw).train_seed == 0
    del raw["train_seed"]
    assert config.validate(raw).train_seed == 0
