"""`prefdiv.workers`: DVC's queue status read per task, the workers found by their processes
and started again while experiments wait (one per GPU with `--gpus`), and how often the running
queue is read (DVC stubbed where a worker would have to die; the real queue runs in
tests/test_queue.py)."""

import subprocess
import sys

from prefdiv import experiments, workers


def test_queue_status_is_read_per_task(monkeypatch):
    status = (
        "Task     Name        Created    Status\n"
        "4a1df87  bad-s0      05:38 AM   Failed\n"
        "2fb9a09  good-s0     05:38 AM   Success\n"
        "9c0ffee  bad-s0      Nov 26     Running\n"
        "\nWorker status: 1 active, 1 idle\n"
    )
    monkeypatch.setattr(experiments, "dvc", lambda *a: status)
    assert workers.queue_tasks() == {"bad-s0": {"Failed", "Running"}, "good-s0": {"Success"}}
    assert workers.failed_in_queue() == {"bad-s0"} and workers.queue_state() == (2, 1, 0)


def test_a_worker_that_dies_while_experiments_wait_is_replaced(monkeypatch, capsys):
    """`wait_for_queue(workers=2)`: a worker gone with tasks still queued is started again; a
    worker gone at the end, when nothing waits any more (the last experiment running), is not;
    a worker that misses a ping but whose process runs is left alone (no duplicate)."""
    states = iter([(2, 5, 3), (1, 4, 2), (2, 4, 2), (1, 3, 1), (1, 1, 0), (0, 0, 0)])
    monkeypatch.setattr(workers, "queue_state", lambda: workers.QueueState(*next(states)))
    monkeypatch.setattr(workers, "_queue_dir", lambda: "/repo/.dvc/tmp/exps/celery")
    live = iter([{1}, {1, 2}])  # worker 2's process gone, then both running
    monkeypatch.setattr(workers, "live_workers", lambda d, n: next(live))
    started = []
    monkeypatch.setattr(workers, "start_workers", lambda n, env, what: started.append((n, env)))
    workers.wait_for_queue(poll=0, workers=2)
    assert started == [(2, None)]
    out = capsys.readouterr()
    assert "queue worker 2 of 2 is gone with experiments waiting" in out.err
    assert "grid: 4 experiments queued or running" in out.out


def test_a_dead_gpu_worker_is_replaced_on_its_own_gpu(monkeypatch, capsys):
    """With `--gpus 0,3`, worker k runs on the k-th GPU; when worker 1 dies, it starts again with
    CUDA_VISIBLE_DEVICES=0, not on the GPU a plain restart would inherit."""
    states = iter([(1, 6, 4), (2, 5, 3), (0, 0, 0)])
    monkeypatch.setattr(workers, "queue_state", lambda: workers.QueueState(*next(states)))
    monkeypatch.setattr(workers, "_queue_dir", lambda: "/repo/.dvc/tmp/exps/celery")
    monkeypatch.setattr(workers, "live_workers", lambda d, n: {2})
    started = []
    monkeypatch.setattr(workers, "start_workers", lambda n, env, what: started.append((n, env)))
    workers.wait_for_queue(poll=0, gpus=["0", "3"])
    assert [(n, env["CUDA_VISIBLE_DEVICES"]) for n, env in started] == [(1, "0")]
    assert "queue worker 1 (GPU 0) of 2 is gone" in capsys.readouterr().err


def test_queue_workers_are_found_by_their_processes(tmp_path):
    """DVC names worker k of a queue `dvc-exp-<hash of the queue directory>-k@localhost`; a
    process whose command line carries that name counts as worker k running (another queue's
    workers, with another directory's hash, do not)."""
    qdir = str(tmp_path / ".dvc" / "tmp" / "exps" / "celery")
    node = workers.worker_node("/tmp/fresh5/.dvc/tmp/exps/celery", 2)
    assert node == "dvc-exp-9f482a-2@localhost"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    procs = [
        subprocess.Popen([*sleep, "queue-worker", workers.worker_node(qdir, 2)]),
        subprocess.Popen([*sleep, "queue-worker", workers.worker_node(qdir + "x", 1)]),
    ]
    try:
        assert workers.live_workers(qdir, 2) == {2}
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert workers.live_workers(qdir, 2) == set()


def test_the_running_queue_is_read_less_often_as_the_wait_goes_on(monkeypatch):
    """Each read is a `dvc queue status` process (0.5–2 s of CPU); every 5 s, the reads took a
    quarter of a core from the experiments of a 2-core machine (docs/speed.md). A tenth of the
    time waited, from 1 s to 30 s: a short grid ends seconds late, a study is read every 30 s."""
    assert [workers.poll_after(w) for w in (0, 5, 50, 299, 300, 7200)] == [1, 1, 5, 29.9, 30, 30]
    states = iter([(2, 3, 1), (2, 2, 0), (2, 1, 0), (0, 0, 0)])
    monkeypatch.setattr(workers, "queue_state", lambda: workers.QueueState(*next(states)))
    clock = iter([0.0, 2.0, 120.0, 4000.0])  # when the wait began, then at each read's end
    slept = []
    workers.wait_for_queue(workers=2, clock=lambda: next(clock), sleep=slept.append)
    assert slept == [1.0, 12.0, 30.0]
    states, clock = iter([(1, 1, 0), (0, 0, 0)]), iter([0.0, 500.0])
    # an explicit interval, whatever the time waited
    workers.wait_for_queue(poll=7, clock=lambda: next(clock), sleep=slept.append)
    assert slept[3:] == [7]
