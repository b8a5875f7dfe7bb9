"""`prefdiv.sweep`: the failure report, the queue's status and logs, and the choice of what
`--retry-failed` re-runs (DVC stubbed; the real queue runs in tests/test_pipeline.py and
tests/test_queue.py)."""

import subprocess
import sys

import pytest

from prefdiv import experiments, grid, sweep
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
    monkeypatch.setattr(sweep, "queue_tasks", lambda: tasks)
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


def test_queue_status_is_read_per_task(monkeypatch):
    status = (
        "Task     Name        Created    Status\n"
        "4a1df87  bad-s0      05:38 AM   Failed\n"
        "2fb9a09  good-s0     05:38 AM   Success\n"
        "9c0ffee  bad-s0      Nov 26     Running\n"
        "\nWorker status: 1 active, 1 idle\n"
    )
    monkeypatch.setattr(experiments, "dvc", lambda *a: status)
    assert sweep.queue_tasks() == {"bad-s0": {"Failed", "Running"}, "good-s0": {"Success"}}
    assert sweep.failed_in_queue() == {"bad-s0"} and sweep.queue_state() == (2, 1, 0)


def test_a_worker_that_dies_while_experiments_wait_is_replaced(monkeypatch, capsys):
    """`wait_for_queue(workers=2)`: a worker gone with tasks still queued is started again; a
    worker gone at the end, when nothing waits any more (the last experiment running), is not;
    a worker that misses a ping but whose process runs is left alone (no duplicate)."""
    states = iter([(2, 5, 3), (1, 4, 2), (2, 4, 2), (1, 3, 1), (1, 1, 0), (0, 0, 0)])
    monkeypatch.setattr(sweep, "queue_state", lambda: sweep.QueueState(*next(states)))
    monkeypatch.setattr(sweep, "_queue_dir", lambda: "/repo/.dvc/tmp/exps/celery")
    live = iter([{1}, {1, 2}])  # worker 2's process gone, then both running
    monkeypatch.setattr(sweep, "live_workers", lambda d, n: next(live))
    started = []
    monkeypatch.setattr(sweep, "_start_workers", lambda n, env, what: started.append((n, env)))
    sweep.wait_for_queue(poll=0, workers=2)
    assert started == [(2, None)]
    out = capsys.readouterr()
    assert "queue worker 2 of 2 is gone with experiments waiting" in out.err
    assert "grid: 4 experiments queued or running" in out.out


def test_a_dead_gpu_worker_is_replaced_on_its_own_gpu(monkeypatch, capsys):
    """With `--gpus 0,3`, worker k runs on the k-th GPU; when worker 1 dies, it starts again with
    CUDA_VISIBLE_DEVICES=0, not on the GPU a plain restart would inherit."""
    states = iter([(1, 6, 4), (2, 5, 3), (0, 0, 0)])
    monkeypatch.setattr(sweep, "queue_state", lambda: sweep.QueueState(*next(states)))
    monkeypatch.setattr(sweep, "_queue_dir", lambda: "/repo/.dvc/tmp/exps/celery")
    monkeypatch.setattr(sweep, "live_workers", lambda d, n: {2})
    started = []
    monkeypatch.setattr(sweep, "_start_workers", lambda n, env, what: started.append((n, env)))
    sweep.wait_for_queue(poll=0, gpus=["0", "3"])
    assert [(n, env["CUDA_VISIBLE_DEVICES"]) for n, env in started] == [(1, "0")]
    assert "queue worker 1 (GPU 0) of 2 is gone" in capsys.readouterr().err


def test_queue_workers_are_found_by_their_processes(tmp_path):
    """DVC names worker k of a queue `dvc-exp-<hash of the queue directory>-k@localhost`; a
    process whose command line carries that name counts as worker k running (another queue's
    workers, with another directory's hash, do not)."""
    qdir = str(tmp_path / ".dvc" / "tmp" / "exps" / "celery")
    assert sweep.worker_node("/tmp/fresh5/.dvc/tmp/exps/celery", 2) == "dvc-exp-9f482a-2@localhost"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    procs = [
        subprocess.Popen([*sleep, "queue-worker", sweep.worker_node(qdir, 2)]),
        subprocess.Popen([*sleep, "queue-worker", sweep.worker_node(qdir + "x", 1)]),
    ]
    try:
        assert sweep.live_workers(qdir, 2) == {2}
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert sweep.live_workers(qdir, 2) == set()


def test_the_running_queue_is_read_less_often_as_the_wait_goes_on(monkeypatch):
    """Each read is a `dvc queue status` process (0.5–2 s of CPU); every 5 s, the reads took a
    quarter of a core from the experiments of a 2-core machine (docs/speed.md). A tenth of the
    time waited, from 1 s to 30 s: a short grid ends seconds late, a study is read every 30 s."""
    assert [sweep.poll_after(w) for w in (0, 5, 50, 299, 300, 7200)] == [1, 1, 5, 29.9, 30, 30]
    states = iter([(2, 3, 1), (2, 2, 0), (2, 1, 0), (0, 0, 0)])
    monkeypatch.setattr(sweep, "queue_state", lambda: sweep.QueueState(*next(states)))
    clock = iter([0.0, 2.0, 120.0, 4000.0])  # when the wait began, then at each read's end
    monkeypatch.setattr(sweep.time, "monotonic", lambda: next(clock))
    slept = []
    monkeypatch.setattr(sweep.time, "sleep", slept.append)
    sweep.wait_for_queue(workers=2)
    assert slept == [1.0, 12.0, 30.0]
    states, clock = iter([(1, 1, 0), (0, 0, 0)]), iter([0.0, 500.0])
    sweep.wait_for_queue(poll=7)  # an explicit interval, whatever the time waited
    assert slept[3:] == [7]
