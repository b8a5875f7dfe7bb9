"""The experiment grid (`grid.yaml`) run through DVC's queue, and the experiments it leaves.

The grid file lists the configurations (name → experiment-key settings) under the method level
they belong to, `levels: {<n>: {title, experiments}}`, or, without a level, under a top-level
`experiments:`. It is the only source of levels: :func:`load_levels` gives them to `prefdiv
compare` (:class:`Levels`); :func:`load_grid` gives the settings alone, which is what DVC gets.

Every configuration runs once per seed (and train seed) as a named DVC experiment,
`<configuration>-s<seed>[-t<train_seed>]`, queued with every experiment key set explicitly, so
nothing leaks from the workspace's `params.yaml`. After the queue drains, an experiment counts
as succeeded only if DVC's queue does not list it as failed and its commit has
`metrics/eval.json` (a failed experiment shows its baseline's metrics in `dvc exp show`). Each
failure is reported with the last lines of its queue log; `run_grid(..., retry_failed=True)`
queues only the experiments that did not succeed.

Everything here drives DVC itself (`dvc exp run --queue`, `dvc exp show --json`, `dvc queue
status|logs`); nothing re-implements the pipeline.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from prefdiv import compare, stats
from prefdiv.config import EXPERIMENT_KEYS as KEYS
from prefdiv.errors import UserError

SECTIONS = ("seeds", "defaults", "levels", "experiments")  # the keys of a grid file
LEVEL_KEYS = ("title", "experiments")  # the keys of one level
SEED_KEYS = ("seed", "train_seed")  # set per replicate, never in the grid file
SETTINGS = tuple(k for k in KEYS if k not in SEED_KEYS)  # what a configuration sets
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a DVC experiment name (a git ref part)
LOG_LINES = 5  # of each failed experiment's queue log, in the failure report
BUSY = ("Queued", "Running")


# --- the grid file -------------------------------------------------------------------------


def _read(path: str | Path) -> dict:
    """The grid file as a mapping; a missing, malformed or foreign file is a UserError."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such grid file (--grid names it; default grid.yaml)") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a mapping with the keys {', '.join(SECTIONS)}")
    if unknown := [k for k in spec if k not in SECTIONS]:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
    return spec


def _settings(path: str | Path, where: str, settings) -> dict:
    """`settings` checked as a configuration's experiment keys (values are checked by the
    stages' params validation, in the queue)."""
    example = "e.g. {loss: sigmoid, beta: 0.1}"
    if not isinstance(settings, dict):
        raise UserError(f"{path}: {where}: expected a mapping of experiment keys, {example}")
    for key in settings:
        if key in SEED_KEYS:
            raise UserError(
                f"{path}: {where}: {key} is set per experiment by the grid "
                "(the file's `seeds:`, --seeds, --train-seeds)"
            )
        if key not in SETTINGS:
            raise UserError(f"{path}: {where}: unknown key {key!r}; allowed: {', '.join(SETTINGS)}")
    return settings


def _named(path: str | Path, where: str, configs) -> dict:
    """`configs` checked as a mapping of configuration name → settings (settings unchecked)."""
    if not isinstance(configs, dict) or not configs:
        raise UserError(f"{path}: {where}: expected a mapping of name → settings, none empty")
    for name in configs:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UserError(
                f"{path}: experiment name {name!r}: letters, digits, '_', '.' and '-' only, "
                "starting with a letter or digit"
            )
    return configs


def _level(path: str | Path, level, block) -> dict:
    """Level `level` of the file's `levels:` checked: {title, experiments}."""
    where = f"levels.{level}"
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise UserError(f"{path}: levels: {level!r} is not a level; levels are integers ≥ 1")
    if not isinstance(block, dict):
        raise UserError(f"{path}: {where}: expected {{title: …, experiments: {{name: settings}}}}")
    if unknown := [k for k in block if k not in LEVEL_KEYS]:
        raise UserError(
            f"{path}: {where}: unknown key {unknown[0]!r}; allowed: {', '.join(LEVEL_KEYS)}"
        )
    title = block.get("title")
    if not isinstance(title, str) or not title.strip():
        raise UserError(f"{path}: {where}: no title (its figure panel's, e.g. `title: f-DPO`)")
    return block


def _entries(path: str | Path, spec: dict) -> list[tuple[str, int | None, str, object]]:
    """(name, level or None, where in the file, raw settings) of every configuration, in file
    order within `levels:` (level by level), then those of the top-level `experiments:`."""
    levels = spec.get("levels") or {}
    if not isinstance(levels, dict):
        raise UserError(f"{path}: levels: expected a mapping of level → {{title, experiments}}")
    entries = []
    for level, block in levels.items():
        configs = _named(
            path, f"levels.{level}.experiments", _level(path, level, block).get("experiments")
        )
        entries += [(n, level, f"levels.{level}.experiments.{n}", s) for n, s in configs.items()]
    if not entries and "experiments" not in spec:
        raise UserError(
            f"{path}: no configuration; list them (name → settings) under `levels: <n>: "
            "experiments:` or, without a level, under `experiments:`"
        )
    if "experiments" in spec:
        configs = _named(path, "experiments", spec["experiments"])
        entries += [(n, None, f"experiments.{n}", s) for n, s in configs.items()]
    seen: dict[str, str] = {}
    for name, _, where, _ in entries:
        if name in seen:
            raise UserError(f"{path}: {where}: {name} is also {seen[name]}; names are unique")
        seen[name] = where
    return entries


@dataclass(frozen=True)
class Levels:
    """The method levels of a grid file, by which `prefdiv compare` orders its tables and draws
    one figure panel each. The file is their only source: no level is inferred from a loss.

    `titles`: level → its title, ascending (panel `level <n>: <title>`); `configs`:
    configuration name → its level; `by_settings`: `compare._exp_key` of a configuration's
    settings → its level, to place results known only by their settings (the reference study's
    published points). Configurations of the top-level `experiments:` have no level.
    """

    titles: dict[int, str]
    configs: dict[str, int]
    by_settings: dict[tuple, int]

    def of(self, experiment: str) -> int | None:
        """Level of `experiment` by its configuration's name (replicate suffix stripped,
        :func:`split_name`; a name without one is taken whole). None for a configuration in no
        level, or none of the grid (an ad hoc `dvc exp run -S loss=…`)."""
        split = split_name(experiment)
        return self.configs.get(split[0] if split else experiment)


def _load(path: str | Path) -> tuple[dict[str, dict], Levels]:
    spec = _read(path)
    defaults = _settings(path, "defaults", spec.get("defaults") or {})
    grid, levels = {}, {}
    for name, level, where, overrides in _entries(path, spec):
        grid[name] = {**defaults, **_settings(path, where, overrides)}
        if missing := [k for k in SETTINGS if k not in grid[name]]:
            raise UserError(
                f"{path}: {where}: no {', '.join(missing)} (set it there or under "
                "defaults:), so it would come from the workspace's params.yaml"
            )
        if level is not None:
            levels[name] = level
    titles = {lvl: spec["levels"][lvl]["title"].strip() for lvl in sorted(set(levels.values()))}
    by_settings: dict[tuple, int] = {}
    for name, level in levels.items():
        by_settings.setdefault(compare._exp_key(grid[name]), level)
    return grid, Levels(titles, levels, by_settings)


def load_grid(path: str | Path) -> dict[str, dict]:
    """Configuration name → its experiment-key settings (defaults filled in; no seeds), every
    level's configurations in file order, then the top-level `experiments:`.

    Every configuration must set every key of `SETTINGS` (itself or through `defaults`): a key
    left out would come from whatever the workspace's `params.yaml` holds.
    """
    return _load(path)[0]


def load_levels(path: str | Path) -> Levels:
    """The grid file's method levels (:class:`Levels`)."""
    return _load(path)[1]


def check_seeds(values) -> list[int]:
    """`values` (ints, or their decimal strings) as seeds: each an integer ≥ 0, none repeated.

    Raises ValueError naming the first bad value.
    """
    seeds: list[int] = []
    for v in values:
        text = str(v).strip()
        if isinstance(v, bool) or not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"{v!r} is not an integer; seeds are integers ≥ 0, e.g. 0,1,2")
        seed = int(text)
        if seed < 0:
            raise ValueError(f"{seed} is negative; seeds are integers ≥ 0, e.g. 0,1,2")
        if seed in seeds:
            raise ValueError(f"{seed} is given twice; each seed runs once")
        seeds.append(seed)
    if not seeds:
        raise ValueError("no seed given, e.g. 0,1,2")
    return seeds


def grid_seeds(path: str | Path) -> list[int]:
    """The study's seeds: `seeds` of the grid file ([0] when it has none)."""
    seeds = _read(path).get("seeds", [0])
    if not isinstance(seeds, list):
        raise UserError(f"{path}: seeds: expected a list of integers ≥ 0, e.g. [0, 1, 2]")
    try:
        return check_seeds(seeds)
    except ValueError as e:
        raise UserError(f"{path}: seeds: {e}") from None


# --- replicates ----------------------------------------------------------------------------


def replicate_name(config: str, seed: int, train_seed: int | None = None) -> str:
    """`<config>-s<seed>`, or `<config>-s<seed>-t<train_seed>` when train seeds are named."""
    return f"{config}-s{seed}" + ("" if train_seed is None else f"-t{train_seed}")


def split_name(name: str) -> tuple[str, int, int] | None:
    """(configuration, seed, train seed) of an experiment named by :func:`replicate_name`; the
    train seed is 0 when the name has none. None for any other name."""
    m = stats.SUFFIX.search(name)
    if m is None or m.start() == 0:
        return None
    return name[: m.start()], int(m[1]), int(m[2] or 0)


def replicates(grid: dict[str, dict], seeds=(0,), train_seeds=(0,)) -> dict[str, dict]:
    """Experiment name → settings: every configuration once per seed and train seed, with both
    seeds set. Names carry the train seed only when more than one, or a nonzero one, is asked.

    Ordered by configuration, then seed: the first experiments of a queue are one configuration
    at every seed, so parallel workers start by computing each seed's upstream stages once;
    every later configuration of a seed finds them in DVC's run cache.
    """
    named = len(train_seeds) > 1 or any(train_seeds)
    return {
        replicate_name(config, seed, t if named else None): {
            **settings,
            "seed": seed,
            "train_seed": t,
        }
        for config, settings in grid.items()
        for seed in seeds
        for t in train_seeds
    }


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
    grid: dict[str, dict], extra: list[str] = (), seeds=(0,), train_seeds=(0,)
) -> list[list[str]]:
    """One :func:`queue_command` per replicate (:func:`replicates`), in queue order."""
    return [queue_command(n, s, extra) for n, s in replicates(grid, seeds, train_seeds).items()]


# --- DVC: experiments and queue ------------------------------------------------------------


def dvc(*args: str) -> str:
    """`dvc ARGS`'s stdout. A failure is a :class:`UserError` with DVC's own error lines."""
    out = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if out.returncode != 0:
        said = [ln.strip() for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        errors = [ln.removeprefix("ERROR: ") for ln in said if ln.startswith("ERROR")]
        reason = "; ".join(dict.fromkeys(errors)) or (said[-1] if said else "no message")
        raise UserError(f"`dvc {' '.join(args)}` failed (exit {out.returncode}): {reason}")
    return out.stdout


def check_rev(rev: str) -> None:
    """A UserError unless `rev` names a commit of this repository."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True
    )
    if found.returncode != 0:
        raise UserError(
            f"unknown revision {rev!r}: --rev takes a commit, branch or tag of this repository "
            "(the commit the experiments were run from)"
        )


def experiments(rev: str | None = None) -> dict[str, dict]:
    """Experiments of baseline `rev` (default HEAD), by name: `{"state", "params", "metrics",
    "rev"}`, `rev` the experiment's git commit (DVC 3: `revs[0]` of an experiment is its tip).

    A failed experiment shows its baseline's metrics in `dvc exp show`: `state` tells them apart.
    """
    if rev:
        check_rev(rev)
    out: dict[str, dict] = {}
    for baseline in json.loads(dvc("exp", "show", "--json", *(["--rev", rev] if rev else []))):
        for exp in baseline.get("experiments") or []:
            tip = exp["revs"][0]
            data = tip.get("data") or {}
            state = (exp.get("executor") or {}).get("state") or "success"
            if tip.get("error"):
                state = "failed"
            params = data.get("params", {}).get("params.yaml", {}).get("data", {})
            metrics = {path: m.get("data", {}) for path, m in (data.get("metrics") or {}).items()}
            out[exp.get("name") or tip.get("name")] = dict(
                state=state, params=params, metrics=metrics, rev=tip.get("rev")
            )
    return out


def prompt_tables(exps: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Per experiment, its per-prompt evaluation table from its commit (`git show`); experiments
    without one (failed, or from before the table existed) are left out."""
    out = {}
    for name, e in exps.items():
        if e["state"] == "failed" or not e.get("rev"):
            continue
        shown = subprocess.run(
            ["git", "show", f"{e['rev']}:{compare.PROMPTS}"], capture_output=True, text=True
        )
        if shown.returncode == 0:
            out[name] = pd.read_csv(io.StringIO(shown.stdout))
    return out


def _queue_status() -> tuple[list[tuple[str, str]], int]:
    """(tasks as (name, status) in `dvc queue status` order, queue workers up)."""
    text = dvc("queue", "status")
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


def queue_state() -> tuple[int, int]:
    """(queue workers up, tasks queued or running), from `dvc queue status`."""
    tasks, workers = _queue_status()
    return workers, sum(status in BUSY for _, status in tasks)


def start_gpu_workers(gpus: list[str], timeout: float = 120) -> None:
    """One DVC queue worker per GPU, started with `CUDA_VISIBLE_DEVICES=<gpu>`, which the worker
    and every experiment it runs inherit.

    `dvc queue start -j N` tops the workers up to N, counting those that answer a ping, and a new
    worker takes seconds to answer. So each start waits for the previous worker: a second start
    right after the first spawns worker 1 again, with the second GPU (once, every experiment then
    ran on the first GPU).
    """
    for n, gpu in enumerate(gpus, 1):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        subprocess.run(["dvc", "queue", "start", "-j", str(n)], env=env, check=True)
        deadline = time.monotonic() + timeout
        while (state := queue_state())[0] < n and state[1] > 0:
            if time.monotonic() > deadline:
                raise UserError(
                    f"queue worker {n} (GPU {gpu}) did not start in {timeout:.0f} s; "
                    "see `dvc queue status`"
                )
            time.sleep(1)


def wait_for_queue(poll: float = 5) -> None:
    """Block until the DVC queue has no queued or running task left."""
    while queue_state()[1]:
        time.sleep(poll)


def log_tail(name: str, n: int = LOG_LINES) -> list[str]:
    """The last `n` non-blank lines of `dvc queue logs <name>` ([] when the queue has no task of
    that name). DVC prints its final ERROR line twice; consecutive repeats are kept once."""
    out = subprocess.run(["dvc", "queue", "logs", name], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    lines = [ln.rstrip() for ln in out.stdout.splitlines() if ln.strip()]
    return [ln for i, ln in enumerate(lines) if i == 0 or ln != lines[i - 1]][-n:]


# --- outcome -------------------------------------------------------------------------------


def unfinished(names: list[str], exps: dict[str, dict], failed: set[str]) -> list[str]:
    """The `names` (in order) that did not succeed: `failed` in DVC's queue, absent from `exps`,
    failed there, or without `metrics/eval.json`."""
    return [
        n
        for n in names
        if n in failed
        or n not in exps
        or exps[n]["state"] == "failed"
        or compare.EVAL not in exps[n]["metrics"]
    ]


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
    tasks = queue_tasks()
    if busy := [n for n in names if tasks.get(n, set()) & set(BUSY)]:
        raise UserError(
            f"still queued or running: {', '.join(busy)}; let the queue finish "
            "(`dvc queue status`) before --retry-failed"
        )
    return unfinished(names, experiments(), failed_in_queue(tasks))


def queue(todo: list[str], wanted: dict[str, dict], extra: list[str] = ()) -> None:
    """Queue the experiments `todo` with their settings (`wanted`: name → settings), replacing
    any experiment of the same name (`exp run -f` would also force every stage) and dropping the
    queue's failed tasks, which would otherwise still be listed as failures of this run."""
    dvc("queue", "remove", "--failed")
    if stale := sorted(set(todo) & set(experiments())):
        dvc("exp", "remove", *stale)
    for name in todo:
        cmd = queue_command(name, wanted[name], extra)
        print("+", " ".join(cmd), flush=True)
        dvc(*cmd[1:])


def run_queue(jobs: int = 1, gpus: list[str] | None = None) -> None:
    """Run DVC's queue to its end: `jobs` workers, or one per GPU."""
    if gpus:
        start_gpu_workers(gpus)
        wait_for_queue()
    else:  # --run-all waits for the queue; shared upstream stages come from the cache, run once.
        subprocess.run(["dvc", "exp", "run", "--run-all", "--jobs", str(jobs)], check=False)


def report(names: list[str], minutes: float) -> int:
    """Print how many of `names` succeeded and, on stderr, :func:`failure_report` with each
    failed experiment's log tail; 1 if any failed, else 0."""
    failed = unfinished(names, experiments(), failed_in_queue())
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
) -> int:
    """Queue every configuration of the grid once per seed (default: the grid file's `seeds`)
    and train seed, run them (`jobs` workers, or one per GPU), report failures with their logs'
    tails; exit status 1 if any failed.

    `retry_failed`: queue only the replicates that did not succeed (:func:`unfinished`); the
    others are neither removed nor re-run. With none to retry, say so and return 0.
    """
    grid = load_grid(grid_path)
    seeds = grid_seeds(grid_path) if seeds is None else seeds
    wanted = replicates(grid, seeds, train_seeds)
    names = list(wanted)
    todo = _to_retry(names) if retry_failed else names
    if not todo:
        print(f"grid: all {len(names)} experiments succeeded; nothing to retry")
        return 0
    if retry_failed:
        print(f"grid: retrying {len(todo)} of {len(names)} experiments: {', '.join(todo)}")
    start = time.time()
    queue(todo, wanted, extra)
    if queue_only:
        print(f"queued {len(todo)} experiments; run them with `dvc queue start -j N`")
        return 0
    run_queue(jobs, gpus)
    return report(names, (time.time() - start) / 60)


# --- results -------------------------------------------------------------------------------


def results_table(grid_path: str | Path, rev: str | None = None) -> str:
    """Markdown table of the grid's configurations, replicates grouped: reward and entropy as
    the mean over replicates with the seed-aware 95 % CI (:func:`compare.cell`, as `prefdiv
    compare`), seeds, tokens. Below it, a line per configuration missing replicates."""
    grid, exps = load_grid(grid_path), experiments(rev)
    usable = {
        n: e for n, e in exps.items() if e["state"] != "failed" and compare.EVAL in e["metrics"]
    }
    configs, _ = stats.group(usable)
    pooled = compare.pooled(configs, usable)
    found: dict[tuple, list[tuple[str, dict]]] = {}
    for key, c in configs.items():
        found.setdefault(key[1:], []).append((key[0], pooled[c.label]))
    rows = [
        "| experiment | loss | β | options | seeds | reward (95 % CI) | entropy, nats (95 % CI) "
        "| tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, settings in grid.items():
        matches = found.get(compare._exp_key(settings), [])
        if not matches:
            rows.append(f"| {name} | {settings['loss']} | | | | not run / failed | | |")
        for scale, e in matches:
            m, p = e["metrics"][compare.EVAL], e["params"]
            beta, opts = compare.describe(p)
            label = name if len(matches) == 1 else f"{name} ({scale})"
            rows.append(
                f"| {label} | {p['loss']} | {beta} | {opts} | {compare.seeds(e)} "
                f"| {compare.cell(m, 'reward/mean', 3)} "
                f"| {compare.cell(m, 'diversity/entropy_unigram', 3)} "
                f"| {m['length/mean_tokens']:.1f} |"
            )
    failed = {n: e for n, e in exps.items() if n not in usable}
    notes = stats.replicate_notes(configs, failed)
    return "\n".join(rows) + "\n" + "".join(f"\n{line}\n" for line in notes)
