"""`prefdiv.grid`: the grid file, replicate names, queue commands, experiments, the failure report
and the choice of what `--retry-failed` re-runs (DVC stubbed; the real queue runs in
tests/test_pipeline.py and tests/test_queue.py)."""

import json
import subprocess
from pathlib import Path

import pytest
from scipy.stats import t as t_dist

from prefdiv import compare, grid, stats
from prefdiv.config import EXPERIMENT_KEYS
from prefdiv.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5}\n"


def _settings(cmd: list[str]) -> dict[str, str]:
    """The `-S KEY=VALUE` settings of a queue command, in order (a later one would win)."""
    pairs = [cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-S"]
    return dict(pairs)


def test_grid_queues_every_configuration_with_the_extra_settings():
    configs = grid.load_grid(ROOT / "grid.yaml")
    cmds = grid.queue_commands(configs, ["scale=paper"])
    assert len(cmds) == len(configs) == 14
    for name, cmd in zip(configs, cmds, strict=True):
        assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", f"{name}-s0"]
        assert cmd[-2:] == ["-S", "scale=paper"] and "-S" in cmd[6:-2]  # keys, then the extra
        # every experiment key is set, so nothing leaks from the workspace's params.yaml
        assert set(_settings(cmd)) == {*EXPERIMENT_KEYS, "scale"}


def test_every_configuration_once_per_seed_with_both_seeds_set():
    configs = {"a": {"loss": "sft"}, "b": {"loss": "ipo", "beta": 0.3}}
    cmds = grid.queue_commands(configs, ["scale=paper"], seeds=[0, 1, 2])
    names = [c[5] for c in cmds]
    # by configuration, then seed: parallel workers start with one configuration at every seed
    assert names == ["a-s0", "a-s1", "a-s2", "b-s0", "b-s1", "b-s2"]
    for cmd in cmds:
        config, seed, train_seed = grid.split_name(cmd[5])
        s = _settings(cmd)
        assert s["seed"] == str(seed) and s["train_seed"] == "0" and train_seed == 0
        assert s["loss"] == configs[config]["loss"] and s["scale"] == "paper"


@pytest.mark.parametrize(
    "train_seeds, names",
    [
        ([0], ["a-s3"]),
        ([1], ["a-s3-t1"]),  # a nonzero train seed is named even alone
        ([0, 1], ["a-s3-t0", "a-s3-t1"]),
    ],
)
def test_train_seeds_are_named_only_when_asked_for(train_seeds, names):
    cmds = grid.queue_commands({"a": {"loss": "sft"}}, seeds=[3], train_seeds=train_seeds)
    assert [c[5] for c in cmds] == names
    assert [_settings(c)["train_seed"] for c in cmds] == [str(t) for t in train_seeds]
    assert [grid.split_name(n) for n in names] == [("a", 3, t) for t in train_seeds]


def test_names_split_back_into_configuration_and_seeds():
    assert grid.split_name("l3-ipo-01-s2") == ("l3-ipo-01", 2, 0)
    assert grid.split_name(grid.replicate_name("x-s1", 0, 4)) == ("x-s1", 0, 4)
    assert grid.split_name("l1-sft") is None  # not a grid replicate (an older bare name)


def test_grid_file_seeds_are_the_default_and_checked(tmp_path):
    assert grid.grid_seeds(ROOT / "grid.yaml") == [0, 1, 2]
    bad = tmp_path / "grid.yaml"
    bad.write_text("seeds: [0, 1, 1]\nexperiments: {a: {loss: sft}}\n")
    with pytest.raises(UserError, match=r"grid.yaml: seeds: 1 is given twice"):
        grid.grid_seeds(bad)
    bad.write_text("seeds: 3\nexperiments: {a: {loss: sft}}\n")
    with pytest.raises(UserError, match=r"grid.yaml: seeds: expected a list"):
        grid.grid_seeds(bad)
    bad.write_text("experiments: {a: {loss: sft}}\n")
    assert grid.grid_seeds(bad) == [0]


@pytest.mark.parametrize(
    "text, must_say",
    [
        (None, "grid.yaml: no such grid file"),
        (DEFAULTS + "experiments:\n  a: {loss: sft}\n  b: loss: ipo\n", "grid.yaml:4: not valid"),
        ("- a\n- b\n", "grid.yaml: expected a mapping with the keys seeds, defaults"),
        (DEFAULTS + "experiment: {a: {loss: sft}}\n", "unknown key 'experiment'; allowed: seeds"),
        (DEFAULTS, "grid.yaml: no configuration; list them (name → settings) under `levels:"),
        (DEFAULTS + "experiments: {}\n", "experiments: expected a mapping of name → settings"),
        (DEFAULTS + "levels: [a]\n", "levels: expected a mapping of level → {title, experiments}"),
        (DEFAULTS + "levels: {one: {}}\n", "levels: 'one' is not a level; levels are integers ≥ 1"),
        (DEFAULTS + "levels: {0: {}}\n", "levels: 0 is not a level"),
        (DEFAULTS + "levels: {1: {experiments: {a: {loss: sft}}}}\n", "levels.1: no title"),
        (
            DEFAULTS + "levels: {1: {title: t, experiment: {a: {loss: sft}}}}\n",
            "levels.1: unknown key 'experiment'; allowed: title, experiments",
        ),
        (DEFAULTS + "levels: {1: {title: t}}\n", "levels.1.experiments: expected a mapping"),
        (
            DEFAULTS + "levels: {1: {title: t, experiments: {a: {loss: sft, bta: 1}}}}\n",
            "levels.1.experiments.a: unknown key 'bta'",
        ),
        (
            DEFAULTS + "levels: {1: {title: t, experiments: {a: {loss: sft}}}}\n"
            "experiments: {a: {loss: ipo}}\n",
            "experiments.a: a is also levels.1.experiments.a; names are unique",
        ),
        (DEFAULTS + "experiments: {a: sft}\n", "experiments.a: expected a mapping of experiment"),
        (
            DEFAULTS + "experiments: {a: {loss: sft, lable_smoothing: 0.1}}\n",
            "experiments.a: unknown key 'lable_smoothing'; allowed: loss, beta",
        ),
        (DEFAULTS + "experiments: {a: {loss: sft, seed: 3}}\n", "a: seed is set per experiment"),
        ("defaults: {train_seed: 1}\n", "defaults: train_seed is set per experiment"),
        ("experiments: {a: {loss: sft}}\n", "experiments.a: no beta, beta_end, label_smoothing"),
        (DEFAULTS + "experiments: {a b: {loss: sft}}\n", "experiment name 'a b': letters"),
    ],
)
def test_a_bad_grid_file_is_one_user_error_naming_file_and_entry(tmp_path, text, must_say):
    path = tmp_path / "grid.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as e:
        grid.load_grid(path)
    assert must_say in str(e.value) and "\n" not in str(e.value)


def test_levels_come_from_where_each_configuration_sits_in_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        DEFAULTS + "levels:\n"
        "  2: {title: ' f-DPO ', experiments: {b: {loss: fkl}, c: {loss: jsd}}}\n"
        "  1: {title: classics, experiments: {a: {loss: sigmoid}}}\n"
        "experiments: {adhoc: {loss: hinge}}\n"
    )
    configs, levels = grid.load_grid(path), grid.load_levels(path)
    assert list(configs) == ["b", "c", "a", "adhoc"]  # file order: the levels', then the rest
    assert "level" not in configs["b"] and configs["b"]["loss"] == "fkl"  # not passed to DVC
    assert levels.titles == {1: "classics", 2: "f-DPO"} and list(levels.titles) == [1, 2]
    assert levels.configs == {"b": 2, "c": 2, "a": 1}  # the top-level experiments: no level
    found = {n: levels.of(n) for n in ("b-s0", "c-s1-t2", "a", "adhoc-s0", "hoary-tabs")}
    assert found == {"b-s0": 2, "c-s1-t2": 2, "a": 1, "adhoc-s0": None, "hoary-tabs": None}
    # results known only by their settings (the reference study's points) are placed too
    assert levels.by_settings == {
        compare._exp_key(configs["b"]): 2,
        compare._exp_key(configs["c"]): 2,
        compare._exp_key(configs["a"]): 1,
    }
    # queue commands: the settings only, the level nowhere
    assert not any("level" in a for c in grid.queue_commands(configs) for a in c)


def test_the_study_grid_keeps_its_names_and_three_levels():
    """The committed reports and README tables name the configurations `l<level>-…`."""
    levels = grid.load_levels(ROOT / "grid.yaml")
    assert levels.titles == {1: "SFT, SLiC-HF, DPO", 2: "f-DPO", 3: "IPO, cDPO, β anneal"}
    assert len(levels.configs) == 14
    assert all(name.startswith(f"l{lvl}-") for name, lvl in levels.configs.items())


def test_failures_are_grouped_by_configuration_and_seed():
    names = list(grid.replicates({"a": {}, "b": {}}, [0, 1], [0, 1]))
    lines = grid.failure_report(names, {"a-s1-t0", "a-s1-t1", "b-s1-t1"})
    assert lines == [
        "FAILED: a seed 1: a-s1-t0, a-s1-t1  (see `dvc queue logs a-s1-t0`)",
        "FAILED: b seed 1: b-s1-t1  (see `dvc queue logs b-s1-t1`)",
    ]
    every = grid.failure_report(names, {n for n in names if "-s1" in n})
    assert every[-1].startswith("FAILED: seed 1: every configuration")
    assert grid.failure_report(names, set()) == []


def test_each_failure_shows_the_tail_of_its_log():
    names = list(grid.replicates({"a": {}, "b": {}}, [0, 1]))
    logs = {"a-s1": ["Running stage 'train':", "prefdiv: alpha = 1.5 is not allowed"], "b-s0": []}
    assert grid.failure_report(names, {"a-s1", "b-s0"}, logs) == [
        "FAILED: a seed 1: a-s1  (see `dvc queue logs a-s1`)",
        "  a-s1 | Running stage 'train':",
        "  a-s1 | prefdiv: alpha = 1.5 is not allowed",
        "FAILED: b seed 0: b-s0  (see `dvc queue logs b-s0`)",
        "  b-s0 | (no log in DVC's queue)",  # never ran (e.g. the queue was stopped)
    ]


def test_log_tail_keeps_the_last_lines_once(monkeypatch):
    log = "Reproducing 'x'\n\n> python stages/train.py\n1\n2\nprefdiv: bad\n"
    log += "ERROR: run\nERROR: run\n\n"
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0 if cmd[-1] == "x" else 255, log, "")

    monkeypatch.setattr(grid.subprocess, "run", fake_run)
    # DVC prints its final error twice: once kept, so the stage's own message stays in view
    assert grid.log_tail("x", 4) == ["1", "2", "prefdiv: bad", "ERROR: run"]
    assert grid.log_tail("not-queued") == [] and calls[0] == ["dvc", "queue", "logs", "x"]


def _run(metrics=True, state="success"):
    return {"state": state, "params": {}, "metrics": {compare.EVAL: {}} if metrics else {}}


def test_an_experiment_succeeded_only_with_its_metrics_and_no_failure():
    names = ["ok-s0", "queue-failed-s0", "absent-s0", "failed-s0", "no-metrics-s0"]
    exps = {
        "ok-s0": _run(),
        "queue-failed-s0": _run(),  # its baseline's metrics: `dvc exp show` cannot tell
        "failed-s0": _run(state="failed"),
        "no-metrics-s0": _run(metrics=False),
    }
    assert grid.unfinished(names, exps, {"queue-failed-s0"}) == names[1:]


def _stub_dvc(monkeypatch, tasks: dict[str, set[str]], exps: dict[str, dict]) -> list[tuple]:
    """DVC's queue and experiments as given; the DVC commands run are recorded (and do
    nothing)."""
    calls = []
    monkeypatch.setattr(grid, "queue_tasks", lambda: tasks)
    monkeypatch.setattr(grid, "experiments", lambda rev=None: exps)
    monkeypatch.setattr(grid, "dvc", lambda *args: calls.append(args) or "")
    return calls


def test_retry_queues_only_what_did_not_succeed(tmp_path, monkeypatch, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(DEFAULTS + "experiments: {a: {loss: sft}, b: {loss: ipo}, c: {loss: fkl}}\n")
    # b-s0 has a failed task besides its success (its metrics may be its baseline's), c-s0 never
    # ran: both are retried; a-s0 is neither removed nor queued
    tasks = {"a-s0": {"Success"}, "b-s0": {"Success", "Failed"}}
    exps = {"a-s0": _run(), "b-s0": _run()}
    calls = _stub_dvc(monkeypatch, tasks, exps)
    assert grid.run_grid(str(path), seeds=[0], retry_failed=True, queue_only=True) == 0
    assert "retrying 2 of 3 experiments: b-s0, c-s0" in capsys.readouterr().out
    assert calls[:2] == [("queue", "remove", "--failed"), ("exp", "remove", "b-s0")]
    assert [c[:5] for c in calls[2:]] == [
        ("exp", "run", "--queue", "-n", n) for n in ("b-s0", "c-s0")
    ]
    done = ["a-s0", "b-s0", "c-s0"]
    calls = _stub_dvc(monkeypatch, {n: {"Success"} for n in done}, {n: _run() for n in done})
    assert grid.run_grid(str(path), seeds=[0], retry_failed=True) == 0
    assert capsys.readouterr().out == "grid: all 3 experiments succeeded; nothing to retry\n"
    assert calls == []


def test_retry_refuses_while_the_grid_is_still_in_the_queue(tmp_path, monkeypatch):
    (tmp_path / "grid.yaml").write_text(
        DEFAULTS + "experiments: {a: {loss: sft}, b: {loss: ipo}}\n"
    )
    _stub_dvc(monkeypatch, {"a-s0": {"Running"}, "b-s0": {"Failed"}}, {})
    with pytest.raises(UserError, match="still queued or running: a-s0; let the queue finish"):
        grid.run_grid(str(tmp_path / "grid.yaml"), seeds=[0], retry_failed=True)


def test_queue_status_is_read_per_task(monkeypatch):
    status = (
        "Task     Name        Created    Status\n"
        "4a1df87  bad-s0      05:38 AM   Failed\n"
        "2fb9a09  good-s0     05:38 AM   Success\n"
        "9c0ffee  bad-s0      Nov 26     Running\n"
        "\nWorker status: 1 active, 1 idle\n"
    )
    monkeypatch.setattr(grid, "dvc", lambda *a: status)
    assert grid.queue_tasks() == {"bad-s0": {"Failed", "Running"}, "good-s0": {"Success"}}
    assert grid.failed_in_queue() == {"bad-s0"} and grid.queue_state() == (2, 1)


def test_a_failing_dvc_command_is_one_user_error_with_dvcs_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a DVC repository
    with pytest.raises(UserError) as e:
        grid.dvc("queue", "status")
    assert str(e.value).startswith("`dvc queue status` failed (exit ") and "\n" not in str(e.value)
    assert "you are not inside of a DVC repository" in str(e.value)


def test_an_unknown_revision_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    with pytest.raises(UserError, match="unknown revision 'nosuch': --rev takes a commit"):
        grid.experiments("nosuch")


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
    monkeypatch.setattr(grid, "dvc", lambda *args: json.dumps(shown))
    exps = grid.experiments()
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
    tables = grid.prompt_tables(exps)
    assert list(tables) == ["x-s0"] and tables["x-s0"]["entropy"].tolist() == [4.5, 4.0]


def test_results_table_groups_replicates_in_the_compare_format(tmp_path, monkeypatch):
    (tmp_path / "grid.yaml").write_text(
        DEFAULTS + "experiments:\n  g-dpo: {loss: sigmoid}\n  g-fkl: {loss: fkl}\n"
        "  g-sft: {loss: sft}\n"
    )
    base = {"beta": 0.1, "beta_end": None, "label_smoothing": 0.0, "alpha": 0.5}

    def run(loss, seed, reward):
        m = {"reward/mean": reward, "diversity/entropy_unigram": 4.0, "length/mean_tokens": 40.0}
        # a percentile-bootstrap interval need not be symmetric about the mean
        m |= {"reward/mean_ci_low": reward - 0.1, "reward/mean_ci_high": reward + 0.2}
        params = {**base, "loss": loss, "seed": seed}
        return {"state": "success", "params": params, "metrics": {"metrics/eval.json": m}}

    exps = {f"g-dpo-s{s}": run("sigmoid", s, r) for s, r in enumerate([2.0, 2.2, 2.4])}
    exps["g-fkl-s0"] = run("fkl", 0, 1.0)
    exps["g-fkl-s1"] = {"state": "failed", "params": {}, "metrics": {}}
    monkeypatch.setattr(grid, "experiments", lambda rev=None: exps)
    text = grid.results_table(str(tmp_path / "grid.yaml"))
    (dpo,) = [ln for ln in text.splitlines() if ln.startswith("| g-dpo ")]
    lo, hi = (2.2 + s * t_dist.ppf(0.975, 2) * 0.2 / 3**0.5 for s in (-1, 1))
    assert f"| sigmoid | 0.1 |  | 3 seeds | 2.200 [{lo:.3f}, {hi:.3f}] |" in dpo
    (fkl,) = [ln for ln in text.splitlines() if ln.startswith("| g-fkl ")]
    assert "| 1 seed | 1.000 [0.900, 1.200] |" in fkl  # one run: its prompts-only interval
    assert "not run / failed" in next(ln for ln in text.splitlines() if ln.startswith("| g-sft"))
    assert "g-fkl: seeds 0 of 0, 1, 2 (s1 failed, s2 missing)" in text
    # `prefdiv compare` writes the same cells
    usable = {n: e for n, e in exps.items() if e["state"] == "success"}
    md = compare.markdown(compare.pooled(stats.group(usable)[0], usable))
    assert f"| 3 seeds | 2.200 [{lo:.3f}, {hi:.3f}] |" in md
    assert "| 1 seed | 1.000 [0.900, 1.200] |" in md
