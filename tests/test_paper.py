"""Paper scale without the Hub: local GPT-2 / DistilBERT directories and a local `datasets` dataset.

The only difference from a real paper run is the names in `params.yaml` (`lvwerra/…`, `imdb`):
the test passes local paths instead, shrinks the sizes, and allows the CPU. Training runs in two
processes under `accelerate launch` (gloo on the CPU), the distributed path.
"""

import json
import math
import os

import datasets
import pytest
import torch
import yaml
from conftest import REVIEWS
from test_pipeline import ROOT, copy_project, run

from prefdiv import config, data, files, models
from prefdiv.errors import UserError


def _raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_paper_block_is_the_reference_configuration():
    p = config.validate({**_raw(), "scale": "paper"})
    s = p.active
    assert s is p.paper and s.sft.model == "lvwerra/gpt2-imdb" and s.sft.block_size == 256
    assert s.reward.model == "lvwerra/distilbert-imdb" and s.prompts.dataset == "imdb"
    assert (s.prompts.n_train, s.prompts.n_test, s.prompts.prompt_tokens) == (2268, 500, 32)
    assert (s.sample.k, s.evaluate.n, s.generation.max_new_tokens) == (8, 25, 256)
    g = s.generation
    assert (g.temperature, g.top_k, g.no_repeat_ngram_size, g.min_tokens) == (0.7, 40, 2, 10)
    t = s.train
    assert (t.learning_rate, t.adam_beta1, t.adam_beta2, t.weight_decay) == (1e-5, 0.9, 0.99, 0.05)
    assert (t.warmup_steps, t.batch_size, t.max_steps, t.num_epochs) == (150, 24, 7000, 3)
    assert t.max_grad_norm == 1.0 and s.pairs.max_val_pairs == 500


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard only stops CPU-only machines")
def test_paper_scale_without_gpu_stops_at_once(tmp_path, monkeypatch):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**_raw(), "scale": "paper"}))
    monkeypatch.delenv(config.ALLOW_CPU, raising=False)
    with pytest.raises(config.ParamsError, match="needs a CUDA GPU.*PREFDIV_ALLOW_CPU=1"):
        config.load(path)
    monkeypatch.setenv(config.ALLOW_CPU, "1")
    assert config.load(path).scale == "paper"


def test_unreachable_hub_id_is_a_one_line_error_naming_it(tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest: as on a machine without the Hub
    with pytest.raises(UserError) as e:
        models.resolve_pretrained("lvwerra/gpt2-imdb", tmp_path / "m", kind="policy")
    msg = str(e.value)
    assert "'lvwerra/gpt2-imdb'" in msg and "point sft.model at a local copy" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="dataset 'imdb'.*Hub cannot be reached.*local copy"):
        data.load_reviews("imdb", "train")


def test_local_directories_that_hold_no_model_or_dataset_are_one_line_errors(hub_like, tmp_path):
    reward_dir, empty = str(hub_like / "distilbert-imdb"), tmp_path / "empty"
    empty.mkdir()
    for name, kind, says in [
        (reward_dir, "policy", "AutoModelForCausalLM and tokenizer (Unrecognized configuration"),
        (str(empty), "reward", "AutoModelForSequenceClassification and tokenizer"),
    ]:
        with pytest.raises(UserError) as e:
            models.resolve_pretrained(name, tmp_path / "m", kind=kind)
        msg = str(e.value)
        assert f"cannot load {kind} model {name!r}" in msg and says in msg and "\n" not in msg
    one_split = tmp_path / "train-only"
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    ).save_to_disk(one_split)
    with pytest.raises(UserError, match="split 'test'.*no such split"):
        data.load_reviews(str(one_split), "test")
    unlabelled = tmp_path / "unlabelled"
    datasets.DatasetDict(test=datasets.Dataset.from_dict({"review": ["a"]})).save_to_disk(
        unlabelled
    )
    with pytest.raises(UserError, match=r"no label or text column \(columns: review\)"):
        data.load_reviews(str(unlabelled), "test")


def test_local_dataset_loads_like_the_hub_one(hub_like):
    rows = data.load_reviews(str(hub_like / "imdb"), "test")
    assert len(rows) == len(REVIEWS) and {r["label"] for r in rows} == {0, 1}
    pools = data.split_pools(
        rows, test_reviews=rows, n_train=6, n_test=4, n_model_train=0, n_model_val=4, seed=0
    )
    assert [len(pools[k]) for k in ("train", "test", "model_val")] == [6, 4, 4]


def test_paper_pipeline_on_local_models_with_two_processes(hub_like, tmp_path):
    repo = tmp_path / "repo"
    copy_project(repo)
    raw = _raw()
    raw["scale"] = "paper"
    paper = raw["paper"]
    paper["prompts"].update(
        dataset=str(hub_like / "imdb"), n_train=8, n_test=4, n_model_val=8, prompt_tokens=8
    )
    paper["sft"]["model"] = str(hub_like / "gpt2-imdb")
    paper["reward"]["model"] = str(hub_like / "distilbert-imdb")
    paper["generation"].update(max_new_tokens=12, min_tokens=1, batch_size=4)
    paper["sample"]["k"] = 3
    paper["pairs"].update(min_margin=0.0, val_fraction=0.25, max_val_pairs=4)
    paper["train"].update(
        max_steps=2,
        batch_size=4,
        warmup_steps=0,
        max_length=32,
        logging_steps=1,
        eval_steps=1,
        save_steps=1,  # checkpoints under DDP (removed when the run finishes)
        num_processes=2,
    )
    # entropy_tokens ≤ min_tokens; rarefied budgets ≤ n × max_new_tokens
    paper["evaluate"].update(
        n=3, bootstrap=40, entropy_tokens=1, kl_samples=2, rarefied_tokens=[8, 16]
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, config.ALLOW_CPU: "1", "PREFDIV_TRACKING": "0"}
    run(["git", "init", "-q"], repo)
    run(["dvc", "repro"], repo, env=env)

    reward = json.loads((repo / "metrics/reward.json").read_text())
    assert reward["model"] == str(hub_like / "distilbert-imdb") and reward["n_val"] == 8
    sft = json.loads((repo / "metrics/sft.json").read_text())
    assert math.isfinite(sft["val_perplexity"])
    assert (repo / "models/sft/config.json").exists()  # a local copy: a DVC output
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["n_processes"] == 2 and train["steps"] == 2
    ckpts = repo / ".dvc/tmp/train-checkpoints"  # written at steps 1 and 2 …
    assert ckpts.is_dir() and not any(ckpts.iterdir())  # … and removed with the finished run
    assert len(files.read_jsonl(repo / "data/pairs/val.jsonl")) <= 4
    test = files.read_jsonl(repo / "data/prompts/test.jsonl")
    assert len(test) == 4 and all(r["id"].startswith("imdb-test-") for r in test)
    assert math.isfinite(json.loads((repo / "metrics/eval.json").read_text())["reward/mean"])
