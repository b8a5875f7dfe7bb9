import pytest

from prefdiv import bench
from prefdiv.config import GenerationParams

GEN = GenerationParams(
    max_new_tokens=6, temperature=0.7, top_k=40, no_repeat_ngram_size=2, min_tokens=0, batch_size=4
)


def test_both_loops_generate_and_padding_side_is_restored(tiny_policy):
    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute of it", "Boring", "The plot made no"]
    r = bench.compare_throughput(model, tok, prompts, k=2, gen=GEN, seed=0)
    assert r["reference_tokens"] > 0 and r["ours_tokens"] > 0
    assert r["reference_tokens"] <= len(prompts) * 2 * GEN.max_new_tokens
    assert r["speedup"] > 0
    assert tok.padding_side == "left"


def test_new_tokens_stop_at_eos_or_pad():
    assert bench._new_tokens([5, 6, 0, 7], eos=0, pad=0) == 2
    assert bench._new_tokens([5, 6, 7], eos=0, pad=9) == 3


def test_bench_study_random_init_times_both_paths_and_projects(tmp_path, monkeypatch):
    """`prefdiv bench-study --random-init` end to end at tiny sizes on the CPU: models built on the
    spot, every stage timed on the plain and the fast paths (paper scale's `speed`), at the
    sampled lengths and at real IMDB lengths, with projections and ratios."""
    import json
    from pathlib import Path

    import yaml
    from conftest import REVIEWS

    from prefdiv import cli, files

    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["scale"] = "paper"
    paper = raw["paper"]
    paper["generation"] |= {"max_new_tokens": 12, "batch_size": 2, "min_tokens": 1}
    paper["sample"]["k"], paper["evaluate"]["n"] = 3, 3
    paper["evaluate"]["entropy_tokens"] = 1  # ≤ min_tokens
    paper["pairs"]["min_margin"] = 0.0
    paper["train"] |= {"batch_size": 2, "max_length": 48, "logging_steps": 1}
    paper["speed"]["metric_workers"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    reviews = [{"id": str(i), "text": t, "label": i % 2} for i, t in enumerate(REVIEWS)]
    files.write_jsonl(tmp_path / "reviews.jsonl", reviews)
    monkeypatch.setenv("PREFDIV_ALLOW_CPU", "1")
    out, profile = tmp_path / "bench.json", tmp_path / "profile"
    args = ["bench-study", "--random-init", "--tiny", "--params", str(tmp_path / "params.yaml")]
    args += [
        "--corpus",
        str(tmp_path / "reviews.jsonl"),
        "--prompts",
        str(tmp_path / "reviews.jsonl"),
    ]
    args += ["--test-prompts", str(tmp_path / "reviews.jsonl"), "--n-train", "4", "--n-test", "2"]
    args += ["--train-steps", "6", "--n-reference", "2", "--grid", str(root / "grid.yaml")]
    assert cli.main([*args, "--out", str(out), "--profile", str(profile)]) == 0
    r = json.loads(out.read_text())
    assert r["study"]["n_methods"] == 14 and r["params"]["speed"]["compile"] is True
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
            # the study = once + 14 × (train + evaluate) + the SFT baseline's evaluation
            study = (
                v["projected_once_min"] + 14 * per_method + v["projected_evaluate_min_per_method"]
            )
            assert v["projected_study_h"] * 60 == pytest.approx(study)
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
