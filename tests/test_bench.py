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


def test_study_timing_measures_every_stage_and_projects(hub_like, tmp_path):
    import dataclasses
    from pathlib import Path

    import yaml

    from prefdiv import config

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    s = config.validate(raw).paper
    s = dataclasses.replace(
        s,
        generation=dataclasses.replace(GEN, batch_size=2),
        sample=dataclasses.replace(s.sample, k=3),
        pairs=dataclasses.replace(s.pairs, min_margin=0.0),
        train=dataclasses.replace(s.train, batch_size=2, max_length=32, logging_steps=1),
        evaluate=dataclasses.replace(s.evaluate, n=3),
    )
    prompts = ["A terrible film.", "I loved every minute", "Boring and", "The plot"]
    test = [{"prompt_id": str(i), "label": i % 2, "prompt": p} for i, p in enumerate(prompts)]
    study = {"n_train": 2268, "n_test": 500, "n_methods": 14, "steps": 7000}
    r = bench.paper_throughput(
        hub_like / "gpt2-imdb",
        hub_like / "distilbert-imdb",
        prompts,
        test,
        s,
        seed=0,
        train_steps=2,
        n_reference=2,
        study=study,
        work_dir=tmp_path,
        profile_dir=tmp_path / "profile",
    )
    rates = ["sample_tokens_per_s", "reference_loop_tokens_per_s", "score_texts_per_s"]
    assert all(r[k] > 0 for k in [*rates, "train_pairs_per_s", "evaluate_s_per_prompt"])
    per_method = r["projected_train_min_per_method"] + r["projected_evaluate_min_per_method"]
    assert abs(r["projected_min_per_method"] - per_method) < 1e-9
    # the study = sampling once + 14 × (train + evaluate) + the SFT baseline's evaluation
    expected = r["projected_sample_and_score_min"] + 14 * per_method
    expected += r["projected_evaluate_min_per_method"]
    assert abs(r["projected_study_h"] * 60 - expected) < 1e-6
    # evaluation's parts: every one timed, together within its wall time
    parts = r["evaluate_parts_s_per_prompt"]
    assert set(parts) == {
        "sample",
        "reward",
        "judge",
        "embedding",
        "kl_and_entropy",
        "text_metrics",
    }
    assert all(v >= 0 for v in parts.values())
    assert sum(parts.values()) <= r["evaluate_s_per_prompt"]
    # the profiled training steps: GPT-2's matrix products are in the operator table
    table = (tmp_path / "profile" / "train_steps.txt").read_text()
    assert "aten::addmm" in table
    assert (tmp_path / "profile" / "train_steps.json").stat().st_size > 0
