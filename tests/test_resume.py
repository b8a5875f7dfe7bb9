"""Resumable training and tracking that never costs results: the `train` stage, run as DVC runs it
(`python stages/train.py …` in the repository), killed, re-run; MLflow stores that fail."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prefdiv import trainer
from prefdiv.config import SpeedParams, TrainParams

ROOT = Path(__file__).resolve().parents[1]
STEPS, SAVE = 40, 4


@pytest.fixture(scope="module")
def study(tiny_policy, tmp_path_factory):
    """A repository holding what `train` reads: params (40 steps, a checkpoint every 4), a tiny
    SFT policy, training and validation pairs."""
    repo = tmp_path_factory.mktemp("resume")
    model, tok = tiny_policy
    model.save_pretrained(repo / "models" / "sft")
    tok.save_pretrained(repo / "models" / "sft")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["demo"]["train"] |= dict(
        max_steps=STEPS, save_steps=SAVE, batch_size=2, warmup_steps=2, eval_steps=10
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    pairs = [
        {"prompt": "The film was", "chosen": f" wonderful, {i} times.", "rejected": f" dull {i}."}
        for i in range(12)
    ]
    (repo / "data" / "pairs").mkdir(parents=True)
    for name, rows in (("train", pairs), ("val", pairs[:4])):
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (repo / "data" / "pairs" / f"{name}.jsonl").write_text(lines)
    return repo


def train_cmd(out: str, checkpoints: str) -> list[str]:
    """The `train` stage's command line of dvc.yaml, writing under `out`."""
    return [
        sys.executable,
        str(ROOT / "stages" / "train.py"),
        *("--params", "params.yaml", "--sft", "models/sft"),
        *("--pairs", "data/pairs/train.jsonl", "--val-pairs", "data/pairs/val.jsonl"),
        *("--out", f"{out}/policy", "--curve", f"{out}/curve.csv"),
        *("--val-curve", f"{out}/val_curve.csv", "--metrics", f"{out}/train.json"),
        *("--dataset-cache", "cache", "--checkpoints", checkpoints),
    ]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), e.get("PYTHONPATH")]))
    return {**e, "PYTHONPATH": path, "PREFDIV_TRACKING": "1", **extra}


def run_train(repo, out, checkpoints, **extra_env) -> subprocess.CompletedProcess:
    done = subprocess.run(
        train_cmd(out, checkpoints),
        cwd=repo,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def outputs(repo, out) -> dict:
    d = repo / out
    return {
        "weights": (d / "policy" / "model.safetensors").read_bytes(),
        **{f: (d / f).read_text() for f in ("curve.csv", "val_curve.csv", "train.json")},
    }


def completed(checkpoints: Path) -> list[Path]:
    return [c for c in checkpoints.glob("*/checkpoint-*") if trainer.last_checkpoint(c.parent)]


@pytest.fixture(scope="module")
def fresh(study):
    """Outputs of an uninterrupted run, with its own checkpoint root."""
    run_train(study, "fresh", "fresh-ckpt")
    return outputs(study, "fresh")


def test_killed_train_resumes_to_the_uninterrupted_result(study, fresh):
    # SIGKILL to the stage's whole process group once its first checkpoint is complete.
    proc = subprocess.Popen(
        train_cmd("killed", "ckpt"),
        cwd=study,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not completed(study / "ckpt") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    (key,) = (study / "ckpt").iterdir()
    step = int(trainer.last_checkpoint(key).name.rsplit("-", 1)[1])
    assert SAVE <= step < STEPS
    assert not (study / "killed" / "train.json").exists()

    resumed = run_train(study, "killed", "ckpt")
    assert f"train: resuming from {key / f'checkpoint-{step}'}" in resumed.stdout

    assert outputs(study, "killed") == fresh  # bit for bit
    assert not any(key.parent.iterdir()), "a finished run leaves no checkpoint"
    assert not (study / "killed" / "policy" / "training_args.bin").exists()
    for f in (study / "killed" / "policy").iterdir():  # no checkpoint path in the outputs
        assert b"ckpt" not in f.read_bytes(), f

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{study / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prefdiv").experiment_id])
    assert len(runs) == 2, "the resumed run continues the killed one's MLflow run"
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        steps = {m.step for m in client.get_metric_history(r.info.run_id, "loss")}
        assert steps == set(range(1, STEPS + 1)), "every step's point, also those before the kill"


def test_checkpoints_of_other_params_pairs_or_policy_are_never_resumed(study, tmp_path):
    p = TrainParams(**yaml.safe_load((study / "params.yaml").read_text())["demo"]["train"])
    run = dict(loss="sigmoid", beta=0.1, p=p, speed=SpeedParams(), seed=0)
    pairs = [[{"prompt": "a", "chosen": "b", "rejected": "c"}], []]
    key = trainer.checkpoint_dir(tmp_path, study / "models/sft", pairs, run)
    assert key == trainer.checkpoint_dir(tmp_path, study / "models/sft", pairs, dict(run))
    others = [
        (pairs, {**run, "beta": 0.2}),
        (pairs, {**run, "seed": 1}),
        (pairs, {**run, "p": TrainParams(**{**vars(p), "learning_rate": 1e-4})}),
        (pairs, {**run, "speed": SpeedParams(lm_head="full")}),
        ([[{"prompt": "a", "chosen": "b", "rejected": "d"}], []], run),
    ]
    for other_pairs, other_run in others:
        assert trainer.checkpoint_dir(tmp_path, study / "models/sft", other_pairs, other_run) != key
    sft = tmp_path / "sft"
    sft.mkdir()
    for f in (study / "models/sft").iterdir():
        (sft / f.name).write_bytes(f.read_bytes())
    assert trainer.checkpoint_dir(tmp_path, sft, pairs, run) == key
    (sft / "config.json").write_text((sft / "config.json").read_text() + " ")
    assert trainer.checkpoint_dir(tmp_path, sft, pairs, run) != key


def test_a_partial_checkpoint_is_skipped(tmp_path):
    for step, state in ((4, "{}"), (8, '{"trunc')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-12").mkdir()  # killed before its trainer state was written
    assert trainer.last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


@pytest.mark.parametrize("store", ["corrupt", "locked", "read-only"])
def test_a_failing_mlflow_store_costs_no_results(study, fresh, store):
    """`train` finishes and writes its outputs with one warning line, whatever the store does."""
    db = study / f"{store}.db"
    uri = f"sqlite:///{db}"
    if store == "read-only":  # SQLite's read-only mode: file modes do not stop root (CI)
        code = "from prefdiv import tracking\nwith tracking.run(tags={}, params={}): pass"
        subprocess.run([sys.executable, "-c", code], env=env(MLFLOW_TRACKING_URI=uri), check=True)
        uri = f"sqlite:///file:{db}?mode=ro&uri=true"
    elif store == "corrupt":
        db.write_bytes(b"this is not an SQLite database" * 100)
    else:  # another process holds the write lock for the whole run
        sqlite3.connect(db).close()
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        done = run_train(study, store, f"ckpt-{store}", MLFLOW_TRACKING_URI=uri)
    finally:
        if store == "locked":
            holder.close()
    warnings = [line for line in done.stderr.splitlines() if line.startswith("prefdiv: warning")]
    assert len(warnings) == 1, done.stderr[-3000:]
    assert "MLflow" in warnings[0] and "Traceback" not in done.stderr
    assert {"corrupt": "not a database", "locked": "locked", "read-only": "readonly"}[store] in (
        warnings[0]
    )
    assert outputs(study, store) == fresh


DRIVER = """
import dataclasses, os, signal, sys
import yaml
from transformers import TrainerCallback
from prefdiv import files, trainer
from prefdiv.config import SpeedParams, TrainParams

repo, name, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = TrainParams(**yaml.safe_load(open(f"{repo}/params.yaml"))["demo"]["train"])
p = dataclasses.replace(p, max_length=32)  # fixed length: within the tiny policy's 64 positions


class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


trainer.train_policy(
    f"{repo}/models/sft", files.read_jsonl(f"{repo}/data/pairs/train.jsonl"), [],
    loss="sigmoid", beta=0.1, p=p, seed=0, out_dir=f"{repo}/{name}", work_dir=f"{repo}/w-{name}",
    speed=SpeedParams(lm_head="full", compile=True, fixed_length=True),  # the paper's fast path
    checkpoints=f"{repo}/ck-{name}", callbacks=[Kill()],
)
"""


def test_the_compiled_fast_path_resumes_within_its_own_rerun_noise(study):
    """torch.compile'd training is not bitwise deterministic from run to run (on an H200 in bf16
    two uninterrupted runs of a tiny policy differed by 6e-5, a resumed one by 1.3e-4; on this CPU
    both by ~2e-6): a resumed run must agree with an uninterrupted one to that noise."""
    import torch
    from safetensors.torch import load_file

    def drive(name, kill_at=-1):
        cmd = [sys.executable, "-c", DRIVER, str(study), name, str(kill_at)]
        return subprocess.run(cmd, env=env(PREFDIV_TRACKING="0"), capture_output=True, text=True)

    fresh = drive("compiled-fresh")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert drive("compiled", kill_at=2 * SAVE + 1).returncode == -signal.SIGKILL
    assert trainer.last_checkpoint(study / "ck-compiled").name == f"checkpoint-{2 * SAVE}"
    assert drive("compiled").returncode == 0
    a, b = (load_file(study / n / "model.safetensors") for n in ("compiled-fresh", "compiled"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    sft = load_file(study / "models/sft/model.safetensors")
    assert not all(torch.equal(a[k], sft[k]) for k in a)  # it trained
