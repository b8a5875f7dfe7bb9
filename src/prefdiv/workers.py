"""DVC's queue and its workers, for `prefdiv grid` (:mod:`prefdiv.sweep`): what `dvc queue status`
lists, starting the workers (one per GPU with `--gpus`), and keeping them up while experiments
wait. Everything here drives DVC's own commands and reads its process names; nothing
re-implements the queue.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from typing import NamedTuple

import psutil

from prefdiv import experiments
from prefdiv.errors import UserError

BUSY = ("Queued", "Running")
# The most seconds between two reads of the queue while it runs. Each read is a `dvc queue
# status` process: 0.5 s of CPU with 180 tasks queued, 2 s with 180 done (it reads every finished
# task's result). Every 5 s, that took a quarter of one core from the experiments on a 2-core
# machine (docs/speed.md); every 30 s it costs ≈ 5 % of one core and notices the end ≤ 30 s late.
POLL_S = 30.0


def poll_after(waited: float) -> float:
    """Seconds to the next read of the queue, `waited` seconds after the wait began: a tenth of
    that, from 1 s to POLL_S. A grid of a few experiments is noticed done seconds after it is;
    a study's queue is read every POLL_S."""
    return min(POLL_S, max(1.0, waited / 10))


def _queue_status() -> tuple[list[tuple[str, str]], int]:
    """(tasks as (name, status) in `dvc queue status` order, queue workers up)."""
    text = experiments.dvc("queue", "status")
    tasks = re.findall(
        r"^[0-9a-f]+\s+(\S+)\s+.*?\b(Queued|Running|Success|Failed)\s*$", text, flags=re.M
    )
    m = re.search(r"Worker status: (\d+) active, (\d+) idle", text)
    return tasks, (int(m.group(1)) + int(m.group(2)) if m else 0)


def queue_tasks() -> dict[str, set[str]]:
    """Experiment name → the statuses of its tasks in DVC's queue (Queued, Running, Success,
    Failed; a name queued twice has two)."""
    out: dict[str, set[str]] = {}
    for name, status in _queue_status()[0]:
        out.setdefault(name, set()).add(status)
    return out


def failed_in_queue(tasks: dict[str, set[str]] | None = None) -> set[str]:
    """Names `dvc queue status` lists as Failed (`tasks`: :func:`queue_tasks`, already read)."""
    tasks = queue_tasks() if tasks is None else tasks
    return {name for name, statuses in tasks.items() if "Failed" in statuses}


class QueueState(NamedTuple):
    workers: int  # queue workers up
    busy: int  # tasks queued or running
    queued: int  # tasks queued


def queue_state() -> QueueState:
    """The queue's workers and tasks, from `dvc queue status`."""
    tasks, workers = _queue_status()
    busy = sum(status in BUSY for _, status in tasks)
    return QueueState(workers, busy, sum(status == "Queued" for _, status in tasks))


def start_workers(n: int, env: dict | None = None, what: str = "", timeout: float = 120) -> None:
    """`dvc queue start -j n`, then wait until n workers answer (or nothing is left to run).

    `dvc queue start -j N` tops the workers up to N, counting those that answer a ping, and a new
    worker takes seconds to answer: a second start before then spawns another worker."""
    subprocess.run(["dvc", "queue", "start", "-j", str(n)], env=env, check=True)
    deadline = time.monotonic() + timeout
    while (state := queue_state()).workers < n and state.busy > 0:
        if time.monotonic() > deadline:
            raise UserError(
                f"queue worker {n}{what} did not start in {timeout:.0f} s; see `dvc queue status`"
            )
        time.sleep(1)


def start_gpu_workers(gpus: list[str], timeout: float = 120) -> None:
    """One DVC queue worker per GPU, started with `CUDA_VISIBLE_DEVICES=<gpu>`, which the worker
    and every experiment it runs inherit.

    Each start waits for the previous worker (:func:`start_workers`): a second start right after
    the first spawned worker 1 again, with the second GPU (once, every experiment then ran on the
    first GPU).
    """
    for n, gpu in enumerate(gpus, 1):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        start_workers(n, env, f" (GPU {gpu})", timeout)


def worker_node(queue_dir: str, num: int) -> str:
    """DVC's celery name for queue worker `num` of the queue kept in `queue_dir` (as
    `dvc/repo/experiments/queue/celery.py` names it: a hash of the directory, then the number)."""
    return f"dvc-exp-{hashlib.sha256(queue_dir.encode('utf-8')).hexdigest()[:6]}-{num}@localhost"


def _queue_dir() -> str:
    """This repository's DVC queue directory (`.dvc/tmp/exps/celery`), exactly as DVC spells it."""
    from dvc.repo import Repo

    with Repo() as repo:
        return repo.experiments.celery_queue.wdir


def live_workers(queue_dir: str, n: int) -> set[int]:
    """The numbers among 1..n of the queue workers whose process runs (`dvc exp queue-worker
    <name>`). A process, not a ping: a worker busy with a task may not answer in time, and a
    second start would then run a duplicate beside it."""
    names = {worker_node(queue_dir, k): k for k in range(1, n + 1)}
    live = set()
    for proc in psutil.process_iter(["cmdline"]):
        live.update(names[a] for a in proc.info["cmdline"] or () if a in names)
    return live


def restart_workers(n: int, gpus: list[str] | None = None) -> list[int]:
    """Start again each of the queue workers 1..n whose process is gone (:func:`live_workers`),
    worker k on `gpus[k - 1]` (`CUDA_VISIBLE_DEVICES`, as :func:`start_gpu_workers` started it);
    return their numbers. `dvc queue start -j k` starts the missing ones up to k, so they start
    in order, each once the one before answers."""
    gone = sorted(set(range(1, n + 1)) - live_workers(_queue_dir(), n))
    for k in gone:
        gpu = f" (GPU {gpus[k - 1]})" if gpus else ""
        print(
            f"grid: queue worker {k}{gpu} of {n} is gone with experiments waiting; starting it "
            f"again (its log: .dvc/tmp/exps/celery/dvc-exp-worker-{k}.out)",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[k - 1]} if gpus else None
        start_workers(k, env, gpu)
    return gone


def wait_for_queue(
    poll: float | None = None, workers: int = 0, gpus: list[str] | None = None, *,
    clock=time.monotonic, sleep=time.sleep,
) -> None:  # fmt: skip
    """Block until the DVC queue has no queued or running task left; say how many are left when
    that changes. While tasks wait, keep `workers` workers up (> 0), or one per GPU of `gpus`
    (:func:`restart_workers`). DVC's filesystem message broker can kill a worker when two of
    them read and write one message file at once (`Unrecoverable error: JSONDecodeError`,
    treeverse/dvc#7903, treeverse/dvc-task#73; one of the budget study's two workers died so
    after 34 minutes), and the rest of the queue would run on one core, or one GPU fewer.
    `poll`: seconds between reads (None: :func:`poll_after`); `clock`, `sleep`: the time waited
    and the wait (tests pass their own)."""
    want = len(gpus) if gpus else workers
    left, began = None, clock()
    while (state := queue_state()).busy:
        if state.busy != left:
            left = state.busy
            print(f"grid: {left} experiments queued or running", flush=True)
        if want and state.workers < want and state.queued:
            restart_workers(want, gpus)
        sleep(poll_after(clock() - began) if poll is None else poll)
