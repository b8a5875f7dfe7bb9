"""Integration: the whole study through `dvc repro` in a temporary copy, with tiny sizes."""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from prefdiv import sweep

ROOT = Path(__file__).resolve().parents[1]
COPY = [
    "analysis.yaml",
    "dvc.yaml",
    "grid.yaml",
    "params.yaml",
    "stages",
    "src",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
]
TINY = {
    "prompts": dict(n_train=8, n_test=4, n_model_train=300, n_model_val=50, prompt_tokens=8),
    "sft": dict(
        vocab_size=512,
        n_layer=1,
        n_embd=32,
        n_head=2,
        block_size=64,
        batch_size=8,
        max_steps=10,
        warmup_steps=0,
    ),
    "reward": dict(
        vocab_size=512,
        n_layer=1,
        dim=32,
        n_head=2,
        max_tokens=64,
        batch_size=8,
        max_steps=10,
        warmup_steps=0,
    ),
    "generation": dict(max_new_tokens=12, min_tokens=1, batch_size=4),
    "sample": dict(k=3),
    "pairs": dict(min_margin=0.0),  # a 10-step reward model scores almost flat
    "train": dict(
        max_steps=2, batch_size=4, warmup_steps=0, max_length=32, logging_steps=1, eval_steps=1
    ),
    # entropy_tokens ≤ generation.min_tokens, rarefied budgets ≤ n × max_new_tokens
    "evaluate": dict(n=3, bootstrap=50, entropy_tokens=1, kl_samples=2, rarefied_tokens=[8, 16]),
}


def run(cmd, cwd, env=None):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def set_params(repo, **changes):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = p
        for k in parents:
            node = node[k]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def would_run(repo):
    return set(re.findall(r"Running stage '(\w+)'", run(["dvc", "repro", "--dry"], repo)))


def exp_ref(repo, env, name):
    """The git ref of experiment `name` of the repository's HEAD."""
    head = run(["git", "rev-parse", "HEAD"], repo, env).strip()
    return f"refs/exps/{head[:2]}/{head[2:]}/{name}"


def out_md5(lock_text, stage, path):
    """The hash `dvc.lock` (text) records for output `path` of `stage`."""
    (out,) = [o for o in yaml.safe_load(lock_text)["stages"][stage]["outs"] if o["path"] == path]
    return out["md5"]


def copy_project(repo):
    """The files `dvc repro` needs (COPY), copied into a fresh directory `repo`."""
    for rel in COPY:
        src, dst = ROOT / rel, repo / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("study") / "repo"
    copy_project(repo)
    p = yaml.safe_load((repo / "params.yaml").read_text())
    for block, values in TINY.items():
        p["demo"][block].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PREFDIV_TRACKING"] = "1"  # exercise MLflow, into the copy's own mlflow.db
    os.environ.update({k: env[k] for k in env if k.startswith("GIT_")})
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "repro"], repo, env=env)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny study"], repo)
    return repo, env


def test_repro_writes_finite_metrics_and_is_then_up_to_date(repo):
    repo, env = repo
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    for key in [
        "reward/mean",
        "diversity/entropy_unigram",
        "diversity/entropy_unigram_fair",
        "length/mean_tokens",
        "kept_fraction",
        "kl/mc",
        "kl/rb",
        "length/truncated_fraction",
        "diversity/entropy_rarefied_8",
        "diversity/vendi",
        "diversity/across_input_distinct_2",
    ]:
        assert math.isfinite(metrics[key]), key
    assert "entropy_fair" in (repo / "plots" / "eval_prompts.csv").read_text().splitlines()[0]
    for name in ["sft", "reward", "pairs", "train"]:
        assert (repo / "metrics" / f"{name}.json").exists()
    pairs = json.loads((repo / "metrics" / "pairs.json").read_text())
    assert pairs["n_pairs"] == pairs["n_candidates"] - pairs["n_ties"] > 0
    assert "up to date" in run(["dvc", "status"], repo, env)
    assert would_run(repo) == set()


def test_mlflow_run_has_training_and_evaluation_metrics(repo):
    repo, _ = repo
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "prefdiv"]
    (r,) = client.search_runs([exp.experiment_id])
    assert r.data.tags["loss"] == "sigmoid" and "git_commit" in r.data.tags
    assert r.data.tags["seed"] == r.data.tags["train_seed"] == "0"
    assert "reward/mean" in r.data.metrics and "rewards/margins" in r.data.metrics


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"demo__evaluate__n": 4}, {"evaluate"}),
        ({"demo__evaluate__kl_samples": 3}, {"evaluate"}),
        ({"demo__evaluate__rarefied_tokens": [4, 8]}, {"evaluate"}),
        ({"loss": "sft"}, {"train", "evaluate"}),
        ({"beta": 0.5}, {"train", "evaluate"}),
        # `--dry` lists the stages a change invalidates directly; their downstream stages re-run
        # only if the new outputs differ, which a dry run cannot know.
        ({"demo__pairs__min_margin": 0.5}, {"pairs"}),
        ({"demo__sample__k": 4}, {"sample"}),
        ({"demo__generation__temperature": 1.0}, {"sample", "evaluate"}),
        # fast-path switches: only the stages that take the path
        ({"demo__speed__static_decode": True}, {"sample", "evaluate"}),
        ({"demo__speed__loader_workers": 1}, {"train"}),
        ({"demo__speed__eval_rows": 16}, {"evaluate"}),
        # the CPU thread count rounds every torch stage's arithmetic
        ({"demo__speed__threads": 2}, {"sft", "reward", "sample", "score", "train", "evaluate"}),
        ({"train_seed": 1}, {"train", "evaluate"}),  # a replicate on the same data and pairs
        ({"seed": 1}, {"prompts", "sft", "reward", "sample", "pairs", "train", "evaluate"}),
    ],
)
def test_params_rerun_only_the_stages_that_read_them(repo, change, expected):
    repo, _ = repo
    original = (repo / "params.yaml").read_text()
    try:
        set_params(repo, **change)
        assert would_run(repo) == expected
    finally:
        (repo / "params.yaml").write_text(original)


def test_train_seed_replicates_training_on_the_same_pairs(repo):
    repo, env = repo
    for name, train_seed in [("tiny-t0", 0), ("tiny-t1", 1)]:
        # -f --downstream train: train and evaluate run again, not restored from the run cache
        cmd = ["dvc", "exp", "run", "--temp", "-f", "--downstream", "train", "-n", name]
        run([*cmd, "-S", f"train_seed={train_seed}"], repo, env)
    files = ["metrics/eval.json", "metrics/train.json", "plots/eval_prompts.csv"]
    base, t0, t1 = (
        {p: run(["git", "show", f"{rev}:{p}"], repo, env) for p in ["dvc.lock", *files]}
        for rev in ("HEAD", *(exp_ref(repo, env, n) for n in ("tiny-t0", "tiny-t1")))
    )
    # the same seed and train_seed again: bit-identical policy, metrics and plots
    assert yaml.safe_load(t0["dvc.lock"]) == yaml.safe_load(base["dvc.lock"])
    assert all(t0[p] == base[p] for p in files)
    for stage, path in [("pairs", "data/pairs/train.jsonl"), ("sft", "models/sft")]:
        assert out_md5(t1["dvc.lock"], stage, path) == out_md5(base["dvc.lock"], stage, path)
    policy = [out_md5(f["dvc.lock"], "train", "models/policy") for f in (base, t1)]
    assert policy[0] != policy[1]  # another train_seed: other weights from the same pairs
    assert t1["metrics/eval.json"] != base["metrics/eval.json"]


def test_experiment_then_plots_diff_renders_html(repo):
    repo, env = repo
    run(["dvc", "exp", "run", "-S", "loss=sft", "-n", "tiny-sft"], repo, env)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env))
    text = json.dumps(shown)
    assert "tiny-sft" in text and "reward/mean" in text
    run(["dvc", "plots", "diff", "HEAD", "tiny-sft", "-o", "plots_html"], repo, env)
    html = (repo / "plots_html" / "index.html").read_text()
    assert "reward_vs_entropy" in html or "reward" in html


GRID = (
    "seeds: [0]\n"  # --seeds overrides it
    "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5, hdpo_alpha: 1.0, "
    "simpo_ratio: 0.5, pair_strategy: all, divpo_rho: 0.3}\n"
    "experiments:\n"
    "  g-hinge: {loss: hinge}\n"
    "  g-bad: {loss: alpha, alpha: 1.5}\n"  # rejected by params validation in the queue
)


def prefdiv_grid(repo, env, *args):
    return subprocess.run(
        ["prefdiv", "grid", "--seeds", "1", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_grid_seed_runs_its_upstream_once_and_reports_failures(repo):
    repo, env = repo
    (repo / "grid.yaml").write_text(GRID)
    out = prefdiv_grid(repo, env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1/2 experiments succeeded" in out.stdout, out.stdout + out.stderr
    # the failed experiment by name, then the tail of its log, which shows the cause
    lines = out.stderr.splitlines()  # after what DVC and the grid printed while it ran
    (at,) = [i for i, ln in enumerate(lines) if ln.startswith("FAILED")]
    assert lines[at] == "FAILED: g-bad seed 1: g-bad-s1  (see `dvc queue logs g-bad-s1`)"
    tail = lines[at + 1 :]
    assert 1 < len(tail) <= sweep.LOG_LINES and all(ln.startswith("  g-bad-s1 | ") for ln in tail)
    assert any("alpha = 1.5 is not allowed" in ln for ln in tail), out.stderr
    lock = run(["git", "show", f"{exp_ref(repo, env, 'g-hinge-s1')}:dvc.lock"], repo, env)
    base = run(["git", "show", "HEAD:dvc.lock"], repo, env)
    assert yaml.safe_load(lock)["stages"]["prompts"]["params"]["params.yaml"]["seed"] == 1
    # another seed: other data, models and pairs
    for stage, path in [
        ("prompts", "data/prompts/train.jsonl"),
        ("sft", "models/sft"),
        ("pairs", "data/pairs/train.jsonl"),
    ]:
        assert out_md5(lock, stage, path) != out_md5(base, stage, path)
    # The seed's first configuration ran its upstream stages; the second, in its own copy of the
    # repository, restored them from DVC's run cache (and then failed in train, as it should).
    first, second = (
        run(["dvc", "queue", "logs", n], repo, env) for n in ("g-hinge-s1", "g-bad-s1")
    )
    upstream = ("prompts", "sft", "reward", "sample", "score", "pairs")
    assert all(f"Running stage '{stage}'" in first for stage in upstream), first
    assert not any(f"Running stage '{stage}'" in second for stage in upstream), second
    assert "Running stage 'train'" in second and "alpha = 1.5 is not allowed" in second
    # the results table finds the replicate by its configuration and names the failed one
    table = run(["prefdiv", "table"], repo, env)
    (row,) = [ln for ln in table.splitlines() if ln.startswith("| g-hinge ")]
    assert "| hinge | 0.1 |  | 1 seed |" in row and " [" in row, table
    assert "| g-bad | alpha | | | | not run / failed |" in table
    assert "g-bad: no replicate succeeded (s1 failed)" in table, table


def test_grid_retry_failed_reruns_only_the_failed_experiment(repo):
    repo, env = repo
    if "g-hinge-s1" not in run(["dvc", "exp", "list", "--name-only"], repo, env):
        (repo / "grid.yaml").write_text(GRID)
        prefdiv_grid(repo, env)  # g-hinge-s1 succeeds, g-bad-s1 fails (previous test)
    hinge = run(["git", "rev-parse", exp_ref(repo, env, "g-hinge-s1")], repo, env)
    (repo / "grid.yaml").write_text(GRID.replace("alpha: 1.5", "alpha: 0.5"))  # the fix
    out = prefdiv_grid(repo, env, "--retry-failed")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "retrying 1 of 2 experiments: g-bad-s1" in out.stdout, out.stdout
    assert "2/2 experiments succeeded" in out.stdout and "FAILED" not in out.stderr
    queued = [ln for ln in out.stdout.splitlines() if ln.startswith("+ dvc exp run --queue")]
    assert len(queued) == 1 and "-n g-bad-s1 " in queued[0]
    # the succeeded experiment was neither removed nor re-run: the same commit, one queue task
    assert run(["git", "rev-parse", exp_ref(repo, env, "g-hinge-s1")], repo, env) == hinge
    tasks = run(["dvc", "queue", "status"], repo, env)
    assert len(re.findall(r"\sg-hinge-s1\s", tasks)) == 1, tasks
    assert re.search(r"\sg-bad-s1\s.*Success", tasks), tasks
    # the retried experiment restored its seed's upstream stages and trained with the fix
    log = run(["dvc", "queue", "logs", "g-bad-s1"], repo, env)
    assert "Running stage 'train'" in log and "Running stage 'sft'" not in log, log
    lock = run(["git", "show", f"{exp_ref(repo, env, 'g-bad-s1')}:dvc.lock"], repo, env)
    assert yaml.safe_load(lock)["stages"]["train"]["params"]["params.yaml"]["alpha"] == 0.5
    again = prefdiv_grid(repo, env, "--retry-failed")
    assert again.returncode == 0 and "nothing to retry" in again.stdout, again.stdout


def test_compare_and_offline_render(repo):
    repo, env = repo
    if "tiny-sft" not in run(["dvc", "exp", "list", "--name-only"], repo, env):
        run(["dvc", "exp", "run", "-S", "loss=sft", "-n", "tiny-sft"], repo, env)
        run(["git", "checkout", "--", "params.yaml"], repo, env)
    run(["prefdiv", "compare", "--out", "reports"], repo, env)
    md = (repo / "reports" / "compare.md").read_text()
    # the configuration table's row (the report's other tables name the experiment too); not a
    # configuration of grid.yaml, so no level
    (row,) = [line for line in md.splitlines() if line.startswith("| tiny-sft | — | sft |")]
    assert "| 1 seed |" in row and re.search(r"\d \[-?[\d.]+, -?[\d.]+\] \|", row), row
    # per-prompt tables read from the experiment's commit: the paired statistics have them
    assert "### vs SFT (`tiny-sft`)" in md and "Without `plots/eval_prompts.csv`" not in md
    for png in ["reward_entropy.png", "reward_kl.png"]:
        assert (repo / "reports" / png).stat().st_size > 10_000
    out = run(["prefdiv", "render", "HEAD", "tiny-sft", "--out", "offline"], repo, env)
    svgs = {Path(p).name for p in out.split()}
    assert {"reward_vs_entropy.svg", "reward_distribution.svg", "training_loss.svg"} <= svgs
    assert "<svg" in (repo / "offline" / "reward_vs_entropy.svg").read_text()[:500]


def test_push_then_pull_in_a_fresh_clone_restores_every_output(repo, tmp_path):
    repo, env = repo
    remote = tmp_path / "remote"
    # --local: the test's remote goes to the git-ignored .dvc/config.local, not the committed config
    run(["dvc", "remote", "add", "--local", "-f", "-d", "tmp", str(remote)], repo, env)
    run(["dvc", "push", "--all-commits"], repo, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run(["dvc", "remote", "add", "--local", "-f", "-d", "tmp", str(remote)], clone, env)
    run(["dvc", "pull"], clone, env)
    for out in [
        "models/sft/config.json",
        "models/reward/config.json",
        "models/policy/config.json",
        "data/pairs/train.jsonl",
        "data/scored.jsonl",
    ]:
        assert (clone / out).exists(), out
    assert "up to date" in run(["dvc", "status"], clone, env)
