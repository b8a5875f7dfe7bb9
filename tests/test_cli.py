import json
import subprocess
from pathlib import Path

import pytest
from scipy.stats import t as t_dist

from prefdiv import cli
from prefdiv.config import EXPERIMENT_KEYS

ROOT = Path(__file__).resolve().parents[1]


def _settings(cmd: list[str]) -> dict[str, str]:
    """The `-S KEY=VALUE` settings of a queue command, in order (a later one would win)."""
    pairs = [cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-S"]
    return dict(pairs)


def test_grid_queues_every_configuration_with_the_extra_settings():
    grid = cli.load_grid(ROOT / "grid.yaml")
    cmds = cli.queue_commands(grid, ["scale=paper"])
    assert len(cmds) == len(grid) == 14
    for name, cmd in zip(grid, cmds, strict=True):
        assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", f"{name}-s0"]
        assert cmd[-2:] == ["-S", "scale=paper"] and "-S" in cmd[6:-2]  # keys, then the extra
        # every experiment key is set, so nothing leaks from the workspace's params.yaml
        assert set(_settings(cmd)) == {*EXPERIMENT_KEYS, "scale"}


def test_every_configuration_once_per_seed_with_both_seeds_set():
    grid = {"a": {"loss": "sft"}, "b": {"loss": "ipo", "beta": 0.3}}
    cmds = cli.queue_commands(grid, ["scale=paper"], seeds=[0, 1, 2])
    names = [c[5] for c in cmds]
    # by configuration, then seed: parallel workers start with one configuration at every seed
    assert names == ["a-s0", "a-s1", "a-s2", "b-s0", "b-s1", "b-s2"]
    for cmd in cmds:
        config, seed, train_seed = cli.split_name(cmd[5])
        s = _settings(cmd)
        assert s["seed"] == str(seed) and s["train_seed"] == "0" and train_seed == 0
        assert s["loss"] == grid[config]["loss"] and s["scale"] == "paper"


@pytest.mark.parametrize(
    "train_seeds, names",
    [
        ([0], ["a-s3"]),
        ([1], ["a-s3-t1"]),  # a nonzero train seed is named even alone
        ([0, 1], ["a-s3-t0", "a-s3-t1"]),
    ],
)
def test_train_seeds_are_named_only_when_asked_for(train_seeds, names):
    cmds = cli.queue_commands({"a": {"loss": "sft"}}, seeds=[3], train_seeds=train_seeds)
    assert [c[5] for c in cmds] == names
    assert [_settings(c)["train_seed"] for c in cmds] == [str(t) for t in train_seeds]
    assert [cli.split_name(n) for n in names] == [("a", 3, t) for t in train_seeds]


def test_names_split_back_into_configuration_and_seeds():
    assert cli.split_name("l3-ipo-01-s2") == ("l3-ipo-01", 2, 0)
    assert cli.split_name(cli.replicate_name("x-s1", 0, 4)) == ("x-s1", 0, 4)
    assert cli.split_name("l1-sft") is None  # not a grid replicate (an older bare name)


def test_grid_file_seeds_are_the_default_and_checked(tmp_path):
    assert cli.grid_seeds(ROOT / "grid.yaml") == [0, 1, 2]
    bad = tmp_path / "grid.yaml"
    bad.write_text("seeds: [0, 1, 1]\nexperiments: {a: {loss: sft}}\n")
    with pytest.raises(SystemExit, match=r"grid.yaml: seeds: 1 is given twice"):
        cli.grid_seeds(bad)
    bad.write_text("experiments: {a: {loss: sft}}\n")
    assert cli.grid_seeds(bad) == [0]


@pytest.mark.parametrize(
    "argv, must_say",
    [
        (["--seeds", "0,-1"], "argument --seeds: -1 is negative"),
        (["--seeds", "-1,2"], "argument --seeds: -1 is negative"),  # not read as an option
        (["--seeds", "0,1,1"], "argument --seeds: 1 is given twice"),
        (["--seeds", "0,a"], "argument --seeds: 'a' is not an integer"),
        (["--seeds", "1.5"], "argument --seeds: '1.5' is not an integer"),
        (["--train-seeds", "0,,1"], "argument --train-seeds: '' is not an integer"),
        (["--set", "seed=3"], "--set seed=3: seed is set per experiment"),
    ],
)
def test_bad_seeds_are_one_error_line_naming_the_value(argv, must_say, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_grid", lambda *a: pytest.fail("ran despite a bad value"))
    with pytest.raises(SystemExit) as e:
        cli.main(["grid", *argv])
    assert e.value.code == 2  # argparse's usage error, no traceback
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert must_say in line and "Traceback" not in err


def test_seeds_reach_the_grid_with_gpus_and_extra_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_grid", lambda *a: calls.append(a) or 0)
    argv = ["grid", "--seeds", "2,0", "--gpus", "0,1", "--set", "scale=paper"]
    assert cli.main(argv) == 0
    assert cli.main(["grid", "--train-seeds", "0,1", "--jobs", "2"]) == 0
    (grid, jobs, extra, queue_only, gpus, seeds, train_seeds), second = calls
    assert (extra, gpus, seeds, train_seeds) == (["scale=paper"], ["0", "1"], [2, 0], [0])
    assert second[5] is None and second[6] == [0, 1] and second[1] == 2  # grid file's seeds


def test_failures_are_grouped_by_configuration_and_seed():
    grid = {"a": {}, "b": {}}
    names = list(cli.replicates(grid, [0, 1], [0, 1]))
    lines = cli.failure_report(names, {"a-s1-t0", "a-s1-t1", "b-s1-t1"})
    assert lines == [
        "FAILED: a seed 1: a-s1-t0, a-s1-t1  (see `dvc queue logs a-s1-t0`)",
        "FAILED: b seed 1: b-s1-t1  (see `dvc queue logs b-s1-t1`)",
    ]
    every = cli.failure_report(names, {n for n in names if "-s1" in n})
    assert every[-1].startswith("FAILED: seed 1: every configuration")
    assert cli.failure_report(names, set()) == []


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
