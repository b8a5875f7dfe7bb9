"""The benchmarks (benchmarks/, `python -m benchmarks`): they run the stages' own functions."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REVIEWS

from benchmarks import cli, sampling, training
from prefdiv import config, files, grid, sweep, trainer
from prefdiv.config import GenerationParams
from prefdiv.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
GEN = GenerationParams(
    max_new_tokens=6, temperature=0.7, top_k=40, no_repeat_ngram_size=2, min_tokens=0, batch_size=4
)


def test_both_loops_generate_and_padding_side_is_restored(tiny_policy):
    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute of it", "Boring", "The plot made no"]
    r = sampling.compare_throughput(model, tok, prompts, k=2, gen=GEN, seed=0)
    assert r["reference_tokens"] > 0 and r["ours_tokens"] > 0
    assert r["reference_tokens"] <= len(prompts) * 2 * GEN.max_new_tokens
    assert r["speedup"] > 0
    assert tok.padding_side == "left"


def test_new_tokens_stop_at_eos_or_pad():
    assert sampling._new_tokens([5, 6, 0, 7], eos=0, pad=0) == 2
    assert sampling._new_tokens([5, 6, 7], eos=0, pad=9) == 3


def _params(tmp_path, **top) -> config.Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text()) | top
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return config.load(tmp_path / "params.yaml")


def test_dpo_steps_train_with_the_train_stages_settings(tmp_path, monkeypatch):
    """Loss, β, its options and the seed are the `train` stage's (`trainer.settings`); only the
    step count, the validation interval and the fast paths are the benchmark's."""
    params = _params(tmp_path, loss="cdpo", beta=0.3, label_smoothing=0.2, train_seed=2)
    calls = []
    monkeypatch.setattr(trainer, "train_policy", lambda *a, **kw: calls.append((a, kw)))
    fast = dataclasses.replace(params.active.speed, lm_head="full", loader_workers=1)
    training.dpo_steps("sft", [{"pair": 1}], params, 7, speed=fast, work_dir=tmp_path)
    ((args, kw),) = calls
    assert args == ("sft", [{"pair": 1}], [])  # no validation pairs
    want = trainer.settings(params) | {"speed": fast}
    want["p"] = dataclasses.replace(want["p"], max_steps=7, eval_steps=70)
    assert {k: kw[k] for k in want} == want
    assert kw["speed"] == fast and kw["loss"] == "cdpo" and kw["beta"] == 0.3


def test_dpo_steps_refuse_a_loss_that_trains_nothing(tmp_path):
    params = _params(tmp_path, loss="sft")
    with pytest.raises(UserError, match="loss = 'sft' trains nothing"):
        training.dpo_steps("sft", [], params, 3, speed=params.active.speed, work_dir=tmp_path)


def test_python_m_benchmarks_runs_from_the_repository_root():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "-h"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "{sampling,study}" in out.stdout


def test_sampling_command_prints_both_rates(tmp_path, capsys):
    """`python -m benchmarks sampling` on a random-weight policy with the demo's settings."""
    from benchmarks import random_init

    policy, _ = random_init.random_init_models(tmp_path, REVIEWS, seed=0, **random_init.TINY)
    reviews = [{"id": str(i), "text": t, "label": i % 2} for i, t in enumerate(REVIEWS)]
    files.write_jsonl(tmp_path / "reviews.jsonl", reviews)
    argv = ["sampling", "--policy", str(policy), "--prompts", str(tmp_path / "reviews.jsonl")]
    assert cli.main([*argv, "--n-prompts", "3", "--params", str(ROOT / "params.yaml")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ours_tokens_per_s"] > 0 and r["reference_tokens_per_s"] > 0
    assert r["speedup"] == pytest.approx(r["ours_tokens_per_s"] / r["reference_tokens_per_s"])


def test_study_random_init_times_both_paths_and_projects(tmp_path, monkeypatch):
    """`python -m benchmarks study --random-init` end to end at tiny sizes on the CPU: models
    built on the spot, every stage timed on the plain and the fast paths (paper scale's `speed`),
    at the sampled lengths and at real IMDB lengths, with projections and ratios; the study's
    sizes from params.yaml, its method count from grid.yaml."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["scale"] = "paper"
    paper = raw["paper"]
    paper["generation"] |= {"max_new_tokens": 12, "batch_size": 2, "min_tokens": 1}
    paper["sample"]["k"], paper["evaluate"]["n"] = 3, 3
    paper["evaluate"]["entropy_tokens"] = 1  # ≤ min_tokens
    paper["evaluate"] |= {"kl_samples": 2, "rarefied_tokens": [8, 16]}  # ≤ n × max_new_tokens
    paper["pairs"]["min_margin"] = 0.0
    paper["train"] |= {"batch_size": 2, "max_length": 48, "logging_steps": 1}
    paper["speed"]["metric_workers"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    reviews = [{"id": str(i), "text": t, "label": i % 2} for i, t in enumerate(REVIEWS)]
    files.write_jsonl(tmp_path / "reviews.jsonl", reviews)
    monkeypatch.setenv("PREFDIV_ALLOW_CPU", "1")
    out, profile = tmp_path / "bench.json", tmp_path / "profile"
    args = ["study", "--random-init", "--tiny", "--params", str(tmp_path / "params.yaml")]
    args += [
        "--corpus",
        str(tmp_path / "reviews.jsonl"),
        "--prompts",
        str(tmp_path / "reviews.jsonl"),
    ]
    args += ["--test-prompts", str(tmp_path / "reviews.jsonl"), "--n-train", "4", "--n-test", "2"]
    args += ["--train-steps", "6", "--n-reference", "2", "--grid", str(ROOT / "grid.yaml")]
    assert cli.main([*args, "--out", str(out), "--profile", str(profile)]) == 0
    r = json.loads(out.read_text())
    levels = grid.load_grid(ROOT / "grid.yaml")
    n_methods = len([c for c in levels.values() if c["loss"] != "sft"])  # SFT trains nothing
    whole = sweep.with_frontier(levels, grid.load_frontier(ROOT / "grid.yaml"))
    n_frontier = len([c for c in whole.values() if c["loss"] != "sft"])
    n_seeds = len(grid.grid_seeds(ROOT / "grid.yaml"))
    assert r["study"] == {
        "n_train": paper["prompts"]["n_train"],
        "n_test": paper["prompts"]["n_test"],
        "n_methods": n_methods,
        "n_frontier": n_frontier,
        "n_seeds": n_seeds,
        "steps": paper["train"]["max_steps"],
    }
    assert n_seeds >= 5 and n_frontier > n_methods
    assert r["params"]["speed"]["compile"] is True
    assert r["plain"]["reference_loop_tokens_per_s"] > 0
    for path in ("plain", "fast"):
        assert r[path]["sample_tokens_per_s"] > 0
        for variant in ("max_length", "imdb_lengths"):
            v = r[path][variant]
            assert all(
                v[k] > 0 for k in ["score_texts_per_s", "train_pairs_per_s", "setup_pairs_per_s"]
            )
            parts = v["evaluate_parts_s_per_prompt"]
            assert {"sample", "reward", "kl_and_entropy", "text_metrics"} <= set(parts)
            assert v["evaluate_s_per_prompt"] == pytest.approx(sum(parts.values()))
            per_method = (
                v["projected_train_min_per_method"] + v["projected_evaluate_min_per_method"]
            )
            assert v["projected_min_per_method"] == pytest.approx(per_method)
            # the study = once + n_methods × (train + evaluate) + the SFT baseline's evaluation
            study = (
                v["projected_once_min"]
                + n_methods * per_method
                + v["projected_evaluate_min_per_method"]
            )
            assert v["projected_study_h"] * 60 == pytest.approx(study)
            # the frontier: every seed repeats the upstream, then its configurations
            frontier = n_seeds * (
                v["projected_once_min"]
                + n_frontier * per_method
                + v["projected_evaluate_min_per_method"]
            )
            assert v["projected_frontier_h"] * 60 == pytest.approx(frontier)
        # cut to real continuation lengths: never longer than sampled
        lengths = r[path]["imdb_lengths"]["mean_new_tokens"]
        assert lengths <= r[path]["max_length"]["mean_new_tokens"]
        table = (profile / path / "train_steps.txt").read_text()
        assert "aten::" in table
    # ratios of every figure, > 1 where the fast path wins
    sp = r["speedup"]
    assert sp["sample_tokens_per_s"] == pytest.approx(
        r["fast"]["sample_tokens_per_s"] / r["plain"]["sample_tokens_per_s"]
    )
    assert sp["max_length"]["projected_study_h"] == pytest.approx(
        r["plain"]["max_length"]["projected_study_h"] / r["fast"]["max_length"]["projected_study_h"]
    )


def test_study_steps_default_to_max_steps_or_must_be_given(tmp_path):
    from benchmarks import study

    params = _params(tmp_path)
    sizes = study.study_sizes(params, 3)
    assert sizes["steps"] == params.active.train.max_steps and sizes["n_methods"] == 3
    assert study.study_sizes(params, 3, steps=11)["steps"] == 11
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["demo"]["train"]["max_steps"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="--study-steps"):
        study.study_sizes(config.load(tmp_path / "params.yaml"), 3)
