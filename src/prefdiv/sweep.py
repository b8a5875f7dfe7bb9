"""The grid run on DVC's queue: `prefdiv grid`.

Every configuration of the grid file runs once per seed (and train seed) as a named DVC
experiment (`grid.replicates`), queued with every experiment key set explicitly, so nothing leaks
from the workspace's `params.yaml`. After the queue drains, an experiment counts as succeeded only
if DVC's queue does not list it as failed and it is `usable` (`prefdiv.experiments`: a failed
experiment shows its baseline's metrics in `dvc exp show`). Each failure is reported with the last
lines of its queue log; `run_grid(..., retry_failed=True)` queues only the experiments that did not
succeed.

Everything here drives DVC itself (`dvc exp run --queue`, `dvc exp show --json`, `dvc queue
status|logs`); nothing re-implements the pipeline. (Not `queue.py`: that would shadow the
standard library's `queue`.)
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time

import yaml

from prefdiv import experiments, grid, workers
from prefdiv.config import EXPERIMENT_KEYS as KEYS
from prefdiv.errors import UserError
from prefdiv.names import settings_key, split_name

LOG_LINES = 5  # of each failed experiment's queue log, in the failure report


# --- queue commands ------------------------------------------------------------------------


def _value(v) -> str:
    return "null" if v is None else str(v)


def queue_command(name: str, settings: dict, extra: list[str] = ()) -> list[str]:
    """`dvc exp run --queue -n <name>` with every experiment key of `settings` and then `extra`
    (`KEY=VALUE`, e.g. `scale=paper`) set; `seed` and `train_seed` too, since a plain `-S` would
    persist in the workspace."""
    cmd = ["dvc", "exp", "run", "--queue", "-n", name]
    for key in KEYS:
        if key in settings:
            cmd += ["-S", f"{key}={_value(settings[key])}"]
    for setting in extra:
        cmd += ["-S", setting]
    return cmd


def queue_commands(
    configs: dict[str, dict], extra: list[str] = (), seeds=(0,), train_seeds=(0,)
) -> list[list[str]]:
    """One :func:`queue_command` per replicate (:func:`grid.replicates`), in queue order."""
    wanted = grid.replicates(configs, seeds, train_seeds)
    return [queue_command(n, s, extra) for n, s in wanted.items()]


def with_frontier(configs: dict[str, dict], frontier: dict[str, dict]) -> dict[str, dict]:
    """The level configurations, then every frontier configuration that is not one of them
    under another name (`names.settings_key`: `fr-sigmoid-b0.1` is `l1-sigmoid`), so that the
    whole study runs each configuration once per seed and the analysis finds the frontier's
    β = 0.1 points in the levels' runs."""
    have = {settings_key(s) for s in configs.values()}
    return configs | {n: s for n, s in frontier.items() if settings_key(s) not in have}


def log_tail(name: str, n: int = LOG_LINES) -> list[str]:
    """The last `n` non-blank lines of `dvc queue logs <name>` ([] when the queue has no task of
    that name). DVC prints its final ERROR line twice; consecutive repeats are kept once."""
    out = subprocess.run(["dvc", "queue", "logs", name], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    lines = [ln.rstrip() for ln in out.stdout.splitlines() if ln.strip()]
    return [ln for i, ln in enumerate(lines) if i == 0 or ln != lines[i - 1]][-n:]


# --- outcome -------------------------------------------------------------------------------


def unfinished(
    names: list[str], exps: dict[str, experiments.Experiment], failed: set[str]
) -> list[str]:
    """The `names` (in order) that did not succeed: `failed` in DVC's queue, absent from `exps`,
    failed there, or without `metrics/eval.json`."""
    return [n for n in names if n in failed or n not in exps or not exps[n].usable]


def failure_report(
    names: list[str], failed: set[str], logs: dict[str, list[str]] | None = None
) -> list[str]:
    """Lines naming the `failed` experiments among `names` (grid order), one per configuration
    and seed, each followed by the tail of every failed experiment's queue log (`logs`: name →
    lines), and a line for each seed at which every configuration failed (its shared upstream
    stages are then the likely cause)."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name in names:
        config, seed, _ = split_name(name)
        groups.setdefault((config, seed), []).append(name)
    lines = []
    for (config, seed), members in groups.items():
        bad = [n for n in members if n in failed]
        if not bad:
            continue
        lines.append(
            f"FAILED: {config} seed {seed}: {', '.join(bad)}  (see `dvc queue logs {bad[0]}`)"
        )
        for n in bad if logs is not None else []:
            lines += [f"  {n} | {ln}" for ln in logs.get(n) or ["(no log in DVC's queue)"]]
    configs = {config for config, _ in groups}
    for seed in sorted({seed for _, seed in groups}):
        seed_names = [n for (_, s), members in groups.items() if s == seed for n in members]
        if len(configs) > 1 and set(seed_names) <= failed:
            lines.append(
                f"FAILED: seed {seed}: every configuration; look first at the upstream stages "
                "(prompts … pairs) they share"
            )
    return lines


# --- the grid run --------------------------------------------------------------------------


def _to_retry(names: list[str]) -> list[str]:
    """The `names` that did not succeed; a UserError if any is still queued or running."""
    tasks = workers.queue_tasks()
    if busy := [n for n in names if tasks.get(n, set()) & set(workers.BUSY)]:
        raise UserError(
            f"still queued or running: {', '.join(busy)}; let the queue finish "
            "(`dvc queue status`) before --retry-failed"
        )
    return unfinished(names, experiments.show(), workers.failed_in_queue(tasks))


def _head() -> str | None:
    """The commit queued experiments are based on (None outside a git repository)."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def enqueue(todo: list[str], wanted: dict[str, dict], extra: list[str] = ()) -> None:
    """Queue the experiments `todo` with their settings (`wanted`: name → settings), replacing
    any experiment of the same name (`exp run -f` would also force every stage) and dropping the
    queue's failed tasks, which would otherwise still be listed as failures of this run."""
    experiments.dvc("queue", "remove", "--failed")
    if stale := sorted(set(todo) & set(experiments.show())):
        experiments.dvc("exp", "remove", *stale)
    with lock_without(unrestorable()) as dropped:
        if dropped:
            print(
                f"grid: the outputs dvc.lock names for {', '.join(dropped)} are not in this "
                "machine's DVC cache (a fresh clone, or another CPU type, whose rounding gives "
                "other bits: docs/results.md); the experiments are queued without those entries, "
                "so each seed computes them once and its other experiments restore them from "
                "DVC's run cache. `dvc pull` first would fetch them instead",
                file=sys.stderr, flush=True,
            )  # fmt: skip
        for name in todo:
            cmd = queue_command(name, wanted[name], extra)
            print("+", " ".join(cmd), flush=True)
            queue_here(cmd)


def unrestorable() -> list[str]:
    """The stages whose `dvc.lock` entry names outputs missing from the DVC cache (DVC's own
    test, `Stage.outs_cached`), in pipeline order.

    Why it matters: for a stage whose dependencies and parameters match its `dvc.lock` entry,
    DVC restores that entry's outputs or, if they are not cached, runs the stage again; it does
    not look in its run cache (`dvc/stage/cache.py`, `StageCache.restore`; treeverse/dvc#9420).
    On a fresh clone that is not the machine type that wrote `dvc.lock` (another CPU rounds
    the SFT policy's training differently, and every output after it differs), the first
    experiment at the workspace's seed computes other bits than the lock's, and every other
    experiment at that seed then trained the SFT policy and the reward model again: 13.8
    instead of ≈ 1.5 minutes each (docs/speed.md)."""
    from dvc.repo import Repo

    with Repo() as repo:
        return [
            s.name for s in repo.index.stages
            if getattr(s, "name", None) and any(o.hash_info for o in s.outs)
            and not s.outs_cached()
        ]  # fmt: skip


@contextlib.contextmanager
def lock_without(stages: list[str], path: str = "dvc.lock"):
    """While the block runs, `dvc.lock` without the entries of `stages` (:func:`unrestorable`):
    an experiment queued meanwhile finds no entry for them and restores them from DVC's run
    cache once one experiment has computed them. The file's bytes are put back afterwards,
    also on an error. Yields `stages`."""
    if not stages:
        yield stages
        return
    original = open(path, "rb").read()
    lock = yaml.safe_load(original)
    for name in stages:
        lock["stages"].pop(name, None)
    try:
        with open(path, "w") as f:
            yaml.safe_dump(lock, f, sort_keys=False)
        yield stages
    finally:
        with open(path, "wb") as f:
            f.write(original)


def queue_here(cmd: list[str]) -> None:
    """Run one `dvc exp run --queue …` (:func:`queue_command`) through DVC's own command line
    in this process. A `dvc` process per experiment spent ≈ 1 s importing DVC while no queue
    worker had started yet: 2.4 of the budget study's 133.5 minutes went to queueing its 180
    experiments (docs/speed.md); in one process each takes ≈ 0.3 s. DVC's "Queued …" lines
    are dropped (the caller prints the command); its ERROR lines go to stderr as they would."""
    from dvc.cli import main as dvc_main

    with contextlib.redirect_stdout(io.StringIO()):
        rc = dvc_main(cmd[1:])
    if rc != 0:
        raise UserError(f"`{' '.join(cmd)}` failed (exit {rc}); DVC said why above")


def run_queue(jobs: int = 1, gpus: list[str] | None = None) -> None:
    """Run DVC's queue to its end: `jobs` workers, kept up while experiments wait, or one per
    GPU. Shared upstream stages come from the run cache: each seed's run once."""
    if gpus:
        workers.start_gpu_workers(gpus)
        workers.wait_for_queue(gpus=gpus)
    else:
        workers.start_workers(jobs)
        workers.wait_for_queue(workers=jobs)


def outcome(names: list[str], minutes: float, rev: str | None = None) -> int:
    """Print how many of `names` succeeded and, on stderr, :func:`failure_report` with each
    failed experiment's log tail; 1 if any failed, else 0. `rev`: the commit they were queued
    from (a commit made while they ran would otherwise hide them from `dvc exp show`)."""
    failed = unfinished(names, experiments.show(rev), workers.failed_in_queue())
    print(
        f"grid: {len(names) - len(failed)}/{len(names)} experiments succeeded in {minutes:.1f} min"
    )
    for line in failure_report(names, set(failed), {n: log_tail(n) for n in failed}):
        print(line, file=sys.stderr)
    return 1 if failed else 0


def run_grid(
    grid_path: str,
    jobs: int = 1,
    extra: list[str] = (),
    queue_only: bool = False,
    gpus: list[str] | None = None,
    seeds: list[int] | None = None,
    train_seeds: list[int] = (0,),
    retry_failed: bool = False,
    frontier: bool = False,
) -> int:
    """Queue every configuration of the grid once per seed (default: the grid file's `seeds`)
    and train seed, run them (`jobs` workers, or one per GPU), report failures with their logs'
    tails; exit status 1 if any failed.

    `retry_failed`: queue only the replicates that did not succeed (:func:`unfinished`); the
    others are neither removed nor re-run. With none to retry, say so and return 0.
    `frontier`: the grid's β frontier too (:func:`with_frontier`).
    """
    configs = grid.load_grid(grid_path)
    if frontier:
        configs = with_frontier(configs, grid.load_frontier(grid_path))
    seeds = grid.grid_seeds(grid_path) if seeds is None else seeds
    wanted = grid.replicates(configs, seeds, train_seeds)
    names = list(wanted)
    todo = _to_retry(names) if retry_failed else names
    if not todo:
        print(f"grid: all {len(names)} experiments succeeded; nothing to retry")
        return 0
    if retry_failed:
        print(f"grid: retrying {len(todo)} of {len(names)} experiments: {', '.join(todo)}")
    start = time.time()
    baseline = _head()  # the experiments hang off it, whatever is committed meanwhile
    enqueue(todo, wanted, extra)
    if queue_only:
        print(f"queued {len(todo)} experiments; run them with `dvc queue start -j N`")
        return 0
    run_queue(jobs, gpus)
    return outcome(names, (time.time() - start) / 60, baseline)
