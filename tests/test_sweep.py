"""`prefdiv.sweep`: the failure report, the queue's status and logs, and the choice of what
`--retry-failed` re-runs (DVC stubbed; the real queue runs in tests/test_pipeline.py and
tests/test_queue.py)."""

import subprocess

import pytest

from prefdiv import experiments, grid, sweep, workers
from prefdiv.errors import UserError
from prefdiv.experiments import Experiment

DEFAULTS = (
    "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5, hdpo_alpha: 1.0, "
    "simpo_ratio: 0.5, pair_strategy: all, divpo_rho: 0.3}\n"
)


def test_failures_are_grouped_by_configuration_and_seed():
    names = list(grid.replicates({"a": {}, "b": {}}, [0, 1], [0, 1]))
    lines = sweep.failure_report(names, {"a-s1-t0", "a-s1-t1", "b-s1-t1"})
    assert lines == [
        "FAILED: a seed 1: a-s1-t0, a-s1-t1  (see `dvc queue logs a-s1-t0`)",
        "FAILED: b seed 1: b-s1-t1  (see `dvc queue logs b-s1-t1`)",
    ]
    every = sweep.failure_report(names, {n for n in names if "-s1" in n})
    assert every[-1].startswith("FAILED: seed 1: every configuration")
    assert sweep.failure_report(names, set()) == []


def test_each_failure_shows_the_tail_of_its_log():
    names = list(grid.replicates({"a": {}, "b": {}}, [0, 1]))
    logs = {"a-s1": ["Running stage 'train':", "prefdiv: alpha = 1.5 is not allowed"], "b-s0": []}
    assert sweep.failure_report(names, {"a-s1", "b-s0"}, logs) == [
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

    monkeypatch.setattr(sweep.subprocess, "run", fake_run)
    # DVC prints its final error twice: once kept, so the stage's own message stays in view
    assert sweep.log_tail("x", 4) == ["1", "2", "prefdiv: bad", "ERROR: run"]
    assert sweep.log_tail("not-queued") == [] and calls[0] == ["dvc", "queue", "logs", "x"]


def _run(name="x", metrics=True, state="success"):
    return Experiment(name, state, {}, {experiments.EVAL: {}} if metrics else {})


def test_an_experiment_succeeded_only_with_its_metrics_and_no_failure():
    names = ["ok-s0", "queue-failed-s0", "absent-s0", "failed-s0", "no-metrics-s0"]
    exps = {
        "ok-s0": _run(),
        "queue-failed-s0": _run(),  # its baseline's metrics: `dvc exp show` cannot tell
        "failed-s0": _run(state="failed"),
        "no-metrics-s0": _run(metrics=False),
    }
    assert sweep.unfinished(names, exps, {"queue-failed-s0"}) == names[1:]


def _stub_dvc(monkeypatch, tasks: dict[str, set[str]], exps: dict[str, Experiment]) -> list[tuple]:
    """DVC's queue and experiments as given; the DVC commands run are recorded (and do
    nothing)."""
    calls = []
    monkeypatch.setattr(workers, "queue_tasks", lambda: tasks)
    monkeypatch.setattr(sweep, "unrestorable", lambda: [])  # not this checkout's dvc.lock
    monkeypatch.setattr(experiments, "show", lambda rev=None: exps)
    monkeypatch.setattr(experiments, "dvc", lambda *args: calls.append(args) or "")
    monkeypatch.setattr(sweep, "queue_here", lambda cmd: calls.append(tuple(cmd[1:])))
    return calls


def test_retry_queues_only_what_did_not_succeed(tmp_path, monkeypatch, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(DEFAULTS + "experiments: {a: {loss: sft}, b: {loss: ipo}, c: {loss: fkl}}\n")
    # b-s0 has a failed task besides its success (its metrics may be its baseline's), c-s0 never
    # ran: both are retried; a-s0 is neither removed nor queued
    tasks = {"a-s0": {"Success"}, "b-s0": {"Success", "Failed"}}
    exps = {"a-s0": _run(), "b-s0": _run()}
    calls = _stub_dvc(monkeypatch, tasks, exps)
    assert sweep.run_grid(str(path), seeds=[0], retry_failed=True, queue_only=True) == 0
    assert "retrying 2 of 3 experiments: b-s0, c-s0" in capsys.readouterr().out
    assert calls[:2] == [("queue", "remove", "--failed"), ("exp", "remove", "b-s0")]
    assert [c[:5] for c in calls[2:]] == [
        ("exp", "run", "--queue", "-n", n) for n in ("b-s0", "c-s0")
    ]
    done = ["a-s0", "b-s0", "c-s0"]
    calls = _stub_dvc(monkeypatch, {n: {"Success"} for n in done}, {n: _run() for n in done})
    assert sweep.run_grid(str(path), seeds=[0], retry_failed=True) == 0
    assert capsys.readouterr().out == "grid: all 3 experiments succeeded; nothing to retry\n"
    assert calls == []


def test_retry_refuses_while_the_grid_is_still_in_the_queue(tmp_path, monkeypatch):
    (tmp_path / "sweep.yaml").write_text(
        DEFAULTS + "experiments: {a: {loss: sft}, b: {loss: ipo}}\n"
    )
    _stub_dvc(monkeypatch, {"a-s0": {"Running"}, "b-s0": {"Failed"}}, {})
    with pytest.raises(UserError, match="still queued or running: a-s0; let the queue finish"):
        sweep.run_grid(str(tmp_path / "sweep.yaml"), seeds=[0], retry_failed=True)
