import json
import subprocess
from pathlib import Path

from scipy.stats import t as t_dist

from prefdiv import cli

ROOT = Path(__file__).resolve().parents[1]


def test_grid_queues_every_configuration_with_the_extra_settings():
    grid = cli.load_grid(ROOT / "grid.yaml")
    cmds = cli.queue_commands(grid, ["scale=paper"])
    assert len(cmds) == len(grid) == 14
    for name, cmd in zip(grid, cmds, strict=True):
        assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", name]
        assert cmd[-2:] == ["-S", "scale=paper"] and "-S" in cmd[6:-2]  # keys, then the extra


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
    monkeypatch.setattr(cli, "_dvc", lambda *args: json.dumps(shown))
    exps = cli.experiments()
    assert exps["x-s0"] == {
        "state": "success",
        "params": {"loss": "sft", "seed": 0},
        "metrics": {"metrics/eval.json": {"reward/mean": 1.0}},
        "rev": "b" * 40,
    }
    assert exps["x-s1"]["state"] == "failed"


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
        "x-s0": {"state": "success", "rev": sha.strip()},
        "x-s1": {"state": "success", "rev": "0" * 40},  # commit not here: left out
        "x-s2": {"state": "failed", "rev": sha.strip()},
    }
    tables = cli.prompt_tables(exps)
    assert list(tables) == ["x-s0"] and tables["x-s0"]["entropy"].tolist() == [4.5, 4.0]


def test_table_groups_replicates_with_the_compare_interval(tmp_path, monkeypatch):
    (tmp_path / "grid.yaml").write_text(
        "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5}\n"
        "experiments:\n  g-dpo: {loss: sigmoid}\n  g-fkl: {loss: fkl}\n  g-sft: {loss: sft}\n"
    )
    base = {"beta": 0.1, "beta_end": None, "label_smoothing": 0.0, "alpha": 0.5}

    def run(loss, seed, reward):
        m = {"reward/mean": reward, "diversity/entropy_unigram": 4.0, "length/mean_tokens": 40.0}
        m |= {"reward/mean_ci_low": reward - 0.1, "reward/mean_ci_high": reward + 0.1}
        params = {**base, "loss": loss, "seed": seed}
        return {"state": "success", "params": params, "metrics": {"metrics/eval.json": m}}

    exps = {f"g-dpo-s{s}": run("sigmoid", s, r) for s, r in enumerate([2.0, 2.2, 2.4])}
    exps["g-fkl-s0"] = run("fkl", 0, 1.0)
    exps["g-fkl-s1"] = {"state": "failed", "params": {}, "metrics": {}}
    monkeypatch.setattr(cli, "experiments", lambda rev=None: exps)
    text = cli.table(str(tmp_path / "grid.yaml"))
    (dpo,) = [ln for ln in text.splitlines() if ln.startswith("| g-dpo ")]
    lo, hi = (2.2 + s * t_dist.ppf(0.975, 2) * 0.2 / 3**0.5 for s in (-1, 1))
    assert f"| sigmoid | 0.1 |  | 3 seeds | 2.200 [{lo:.3f}, {hi:.3f}] |" in dpo
    (fkl,) = [ln for ln in text.splitlines() if ln.startswith("| g-fkl ")]
    assert "| 1 seed | 1.000 [0.900, 1.100] |" in fkl  # one run: its prompts-only interval
    assert "not run / failed" in next(ln for ln in text.splitlines() if ln.startswith("| g-sft"))
    assert "g-fkl: seeds 0 of 0, 1, 2 (s1 failed, s2 missing)" in text
