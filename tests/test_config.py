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


def _error(raw, path, value):
    bad = copy.deepcopy(raw)
    *parents, leaf = path.split(".")
    node = bad
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(ParamsError) as e:
        config.validate(bad)
    return str(e.value)


@pytest.mark.parametrize(
    "path, value, must_say",
    [
        ("loss", "unknown", ["loss", "'unknown'", "sigmoid", "sft"]),
        ("beta", 0, ["beta", "0", "> 0"]),
        ("beta", -0.1, ["beta", "-0.1", "> 0"]),
        ("scale", "huge", ["scale", "'huge'", "demo"]),
        ("demo.sample.k", -4, ["demo.sample.k", "-4", "≥ 2"]),
        ("demo.evaluate.n", -1, ["demo.evaluate.n", "-1", "> 0"]),
        ("demo.train.max_steps", "many", ["demo.train.max_steps", "'many'", "int"]),
        ("demo.pairs.val_fraction", 1.0, ["demo.pairs.val_fraction", "1.0", "[0, 1)"]),
        ("paper.train.max_length", 200, ["paper.train.max_length", "200", "≥", "= 289"]),
        ("paper.sft.model", 3, ["paper.sft.model", "3", "str"]),
        ("scale", "paper ", ["scale", "'paper '", "demo, paper"]),
        ("paper.speed.compile", "yes", ["paper.speed.compile", "'yes'", "bool"]),
        ("demo.speed.eval_rows", -1, ["demo.speed.eval_rows", "-1", "≥ 0"]),
        ("paper.speed.fixed_length", False, ["paper.speed.compile", "fixed_length", "recompiles"]),
        ("paper.speed.lm_head", "chunked", ["paper.speed.compile", "lm_head = full", "'chunked'"]),
        ("demo.speed.lm_head", "fused", ["demo.speed.lm_head", "'fused'", "chunked, full"]),
        ("train_seed", -1, ["train_seed", "-1", "≥ 0"]),
        ("train_seed", 1.5, ["train_seed", "1.5", "int"]),
        ("demo.evaluate.entropy_tokens", 0, ["demo.evaluate.entropy_tokens", "0", "> 0"]),
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
    assert out.returncode != 0
    assert "loss = 'dpoo' is not allowed" in out.stderr


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
    ],
)
def test_grid_configurations_are_accepted(raw, change):
    assert config.validate({**raw, **change}).loss == change["loss"]


def test_train_seed_defaults_to_zero(raw):
    assert config.validate(raw).train_seed == 0
    del raw["train_seed"]
    assert config.validate(raw).train_seed == 0
