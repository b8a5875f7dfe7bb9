"""`prefdiv.experiments`: what `dvc exp show` holds, each experiment's per-prompt table, the
one rule for a usable result, and DVC's errors as one line."""

import json
import subprocess

import pytest

from prefdiv import experiments
from prefdiv.errors import UserError
from prefdiv.experiments import Experiment


def test_a_failing_dvc_command_is_one_user_error_with_dvcs_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a DVC repository
    with pytest.raises(UserError) as e:
        experiments.dvc("queue", "status")
    assert str(e.value).startswith("`dvc queue status` failed (exit ") and "\n" not in str(e.value)
    assert "you are not inside of a DVC repository" in str(e.value)


def test_an_unknown_revision_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    with pytest.raises(UserError, match="unknown revision 'nosuch': --rev takes a commit"):
        experiments.show("nosuch")


def _dvc_exp(name, sha, params, metrics, error=None):
    """One experiment as `dvc exp show --json` (DVC 3.67: ExpRange of ExpState) prints it."""
    data = {
        "rev": sha,
        "params": {"params.yaml": {"data": params}},
        "metrics": {"metrics/eval.json": {"data": metrics}},
    }
    state = {"rev": sha, "name": name, "data": data, "error": error, "experiments": None}
    return {"revs": [state], "executor": None, "name": name}


def test_experiments_keep_each_experiments_commit(monkeypatch):
    shown = [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {
            "rev": "a" * 40,
            "name": "main",
            "data": {},
            "error": None,
            "experiments": [
                _dvc_exp("x-s0", "b" * 40, {"loss": "sft", "seed": 0}, {"reward/mean": 1.0}),
                _dvc_exp("x-s1", "c" * 40, {}, {}, error={"msg": "boom", "type": "Error"}),
            ],
        },
    ]
    monkeypatch.setattr(experiments, "dvc", lambda *args: json.dumps(shown))
    exps = experiments.show()
    assert exps["x-s0"] == Experiment(
        "x-s0",
        "success",
        {"loss": "sft", "seed": 0},
        {"metrics/eval.json": {"reward/mean": 1.0}},
        "b" * 40,
    )
    assert exps["x-s0"].usable and exps["x-s0"].eval == {"reward/mean": 1.0}
    assert exps["x-s1"].state == "failed" and not exps["x-s1"].usable


def test_prompt_tables_come_from_each_experiments_commit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "eval_prompts.csv").write_text("prompt_id,entropy\np0,4.5\np1,4.0\n")
    subprocess.run([*git, "add", "plots"], check=True)
    subprocess.run([*git, "commit", "-qm", "run"], check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    exps = {
        "x-s0": Experiment("x-s0", rev=sha.strip()),
        "x-s1": Experiment("x-s1", rev="0" * 40),  # commit not here: left out
        "x-s2": Experiment("x-s2", "failed", rev=sha.strip()),
    }
    tables = experiments.prompt_tables(exps)
    assert list(tables) == ["x-s0"] and tables["x-s0"]["entropy"].tolist() == [4.5, 4.0]
