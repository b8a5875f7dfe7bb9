"""`prefdiv` command line: run the experiment grid with DVC's queue, tabulate its results.

    prefdiv grid    [--grid grid.yaml] [--seeds 0,1,2] [--train-seeds 0] [--jobs 1 | --gpus 0,1]
                    [--set scale=paper] [--queue-only]
                                    queue every configuration once per seed, run them, report
    prefdiv table   [--grid grid.yaml] [--readme README.md]   the grid's results table (Markdown),
                                                    replicates grouped
    prefdiv compare [--out reports]   every experiment, replicates grouped: tables, claims,
                                      figures (reports/compare.md)
    prefdiv render  [REV ...] [--out dvc_plots_offline]   dvc.yaml plots → SVG/PNG, offline
    prefdiv bench-sampling [--n-prompts 128]   our sampling vs the reference study's loop
    prefdiv bench-study --policy D --reward D  time every stage on a slice; project the study

All drive DVC itself (`dvc exp run --queue`, `dvc exp show --json`, `dvc plots diff --json`);
nothing here re-implements the pipeline.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from prefdiv import compare, stats
from prefdiv.config import EXPERIMENT_KEYS as KEYS

START, END = "<!-- results:start -->", "<!-- results:end -->"


def load_grid(path: str | Path) -> dict[str, dict]:
    """Configuration name → its experiment-key settings (defaults filled in; no seeds)."""
    spec = yaml.safe_load(Path(path).read_text())
    return {
        name: {**spec.get("defaults", {}), **overrides}
        for name, overrides in spec["experiments"].items()
    }


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
    spec = yaml.safe_load(Path(path).read_text())
    try:
        return check_seeds(spec.get("seeds", [0]))
    except (ValueError, TypeError) as e:
        raise SystemExit(f"{path}: seeds: {e}") from None


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


def queue_commands(
    grid: dict[str, dict], extra: list[str] = (), seeds=(0,), train_seeds=(0,)
) -> list[list[str]]:
    """One `dvc exp run --queue` per replicate (:func:`replicates`), every experiment key set,
    `seed` and `train_seed` included (a plain `-S` would persist in the workspace).

    `extra`: more `KEY=VALUE` settings for every experiment, e.g. `scale=paper`.
    """
    cmds = []
    for name, settings in replicates(grid, seeds, train_seeds).items():
        cmd = ["dvc", "exp", "run", "--queue", "-n", name]
        for key in KEYS:
            if key in settings:
                cmd += ["-S", f"{key}={_value(settings[key])}"]
        for setting in extra:
            cmd += ["-S", setting]
        cmds.append(cmd)
    return cmds


def _dvc(*args: str) -> str:
    out = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def experiments(rev: str | None = None) -> dict[str, dict]:
    """Experiments of baseline `rev` (default HEAD), by name: `{"state", "params", "metrics",
    "rev"}`, `rev` the experiment's git commit (DVC 3: `revs[0]` of an experiment is its tip).

    A failed experiment shows its baseline's metrics in `dvc exp show`: `state` tells them apart.
    """
    out: dict[str, dict] = {}
    for baseline in json.loads(_dvc("exp", "show", "--json", *(["--rev", rev] if rev else []))):
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


def failed_in_queue() -> set[str]:
    """Names `dvc queue status` lists as Failed."""
    text = _dvc("queue", "status")
    return {m.group(1) for m in re.finditer(r"^\S+\s+(\S+)\s+.*\bFailed\b", text, flags=re.M)}


def queue_state() -> tuple[int, int]:
    """(queue workers up, tasks queued or running), from `dvc queue status`."""
    text = _dvc("queue", "status")
    m = re.search(r"Worker status: (\d+) active, (\d+) idle", text)
    pending = len(re.findall(r"\b(?:Queued|Running)\s*$", text, flags=re.M))
    return (int(m.group(1)) + int(m.group(2)) if m else 0), pending


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
                raise SystemExit(f"queue worker {n} (GPU {gpu}) did not start in {timeout:.0f} s")
            time.sleep(1)


def wait_for_queue(poll: float = 5) -> None:
    """Block until the DVC queue has no queued or running task left."""
    while queue_state()[1]:
        time.sleep(poll)


def failure_report(names: list[str], failed: set[str]) -> list[str]:
    """Lines naming the `failed` experiments among `names` (grid order), one per configuration
    and seed, and a line for each seed at which every configuration failed (its shared upstream
    stages are then the likely cause)."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name in names:
        config, seed, _ = split_name(name)
        groups.setdefault((config, seed), []).append(name)
    lines = []
    for (config, seed), members in groups.items():
        bad = [n for n in members if n in failed]
        if bad:
            lines.append(
                f"FAILED: {config} seed {seed}: {', '.join(bad)}  (see `dvc queue logs {bad[0]}`)"
            )
    configs = {config for config, _ in groups}
    for seed in sorted({seed for _, seed in groups}):
        seed_names = [n for (_, s), members in groups.items() if s == seed for n in members]
        if len(configs) > 1 and set(seed_names) <= failed:
            lines.append(
                f"FAILED: seed {seed}: every configuration; look first at the upstream stages "
                "(prompts … pairs) they share"
            )
    return lines


def run_grid(
    grid_path: str,
    jobs: int,
    extra: list[str] = (),
    queue_only: bool = False,
    gpus: list[str] | None = None,
    seeds: list[int] | None = None,
    train_seeds: list[int] = (0,),
) -> int:
    """Queue every configuration of the grid once per seed (default: the grid file's `seeds`)
    and train seed, run them (`jobs` workers, or one per GPU), report failures."""
    grid = load_grid(grid_path)
    seeds = grid_seeds(grid_path) if seeds is None else seeds
    names = list(replicates(grid, seeds, train_seeds))
    start = time.time()
    # Re-running the grid replaces its experiments (`exp run -f` would also force every stage);
    # old failed tasks would otherwise still be listed as failures of this run.
    _dvc("queue", "remove", "--failed")
    stale = sorted(set(names) & set(experiments()))
    if stale:
        _dvc("exp", "remove", *stale)
    for cmd in queue_commands(grid, extra, seeds, train_seeds):
        print("+", " ".join(cmd), flush=True)
        _dvc(*cmd[1:])
    if queue_only:
        print(f"queued {len(names)} experiments; run them with `dvc queue start -j N`")
        return 0
    if gpus:
        start_gpu_workers(gpus)
        wait_for_queue()
    else:  # --run-all waits for the queue; shared upstream stages come from the cache, run once.
        subprocess.run(["dvc", "exp", "run", "--run-all", "--jobs", str(jobs)], check=False)
    minutes = (time.time() - start) / 60
    exps = experiments()
    failed = failed_in_queue() & set(names)
    missing = [n for n in names if n not in exps or "metrics/eval.json" not in exps[n]["metrics"]]
    failed |= {n for n in names if exps.get(n, {}).get("state") == "failed"} | set(missing)
    print(
        f"grid: {len(names) - len(failed)}/{len(names)} experiments succeeded in {minutes:.1f} min"
    )
    for line in failure_report(names, failed):
        print(line, file=sys.stderr)
    return 1 if failed else 0


def _ci(metrics: dict, key: str) -> str:
    lo, hi = metrics.get(key + "_ci_low"), metrics.get(key + "_ci_high")
    return f"{metrics[key]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def table(grid_path: str, rev: str | None = None) -> str:
    """Markdown table of the grid's configurations, replicates grouped: reward and entropy as
    the mean over replicates with the seed-aware 95 % CI (as `prefdiv compare`), seeds, tokens.
    Below it, a line per configuration missing replicates."""
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
                f"| {_ci(m, 'reward/mean')} | {_ci(m, 'diversity/entropy_unigram')} "
                f"| {m['length/mean_tokens']:.1f} |"
            )
    failed = {n: e for n, e in exps.items() if n not in usable}
    notes = stats.replicate_notes(configs, failed)
    return "\n".join(rows) + "\n" + "".join(f"\n{line}\n" for line in notes)


def write_into(readme: Path, text: str) -> None:
    """Replace what lies between the results markers of `readme` with `text`."""
    doc = readme.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{readme} lacks the markers {START} … {END}")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")


def render(revs: list[str], out_dir: str) -> list[Path]:
    """Render the `dvc.yaml` plots of `revs` (as `dvc plots diff` would) to SVG and PNG.

    DVC's HTML loads Vega from a CDN, which fails offline; vl-convert bundles Vega instead.
    """
    import vl_convert as vlc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = json.loads(_dvc("plots", "diff", *revs, "--json"))
    written = []
    for plot_id, items in shown.get("data", {}).items():
        for i, item in enumerate(items):
            if item.get("type") != "vega":
                continue
            stem = re.sub(r"[^\w.-]+", "_", plot_id) + (f"_{i}" if i else "")
            spec = item["content"]
            (out / f"{stem}.svg").write_text(vlc.vegalite_to_svg(spec))
            (out / f"{stem}.png").write_bytes(vlc.vegalite_to_png(spec, scale=1.5))
            written += [out / f"{stem}.svg", out / f"{stem}.png"]
    return written


def bench_sampling(args) -> int:
    from prefdiv import bench, config, data, files, load

    params = config.load(args.params)
    s = params.active
    model, tok = load.load_policy(args.policy)
    rows = files.read_jsonl(args.prompts)[: args.n_prompts]
    prompts = [data.truncate_prompt(tok, r["text"], s.prompts.prompt_tokens) for r in rows]
    result = bench.compare_throughput(
        model, tok, prompts, k=s.sample.k, gen=s.generation, seed=params.seed
    )
    print(json.dumps(result, indent=1))
    return 0


def bench_study(args) -> int:
    """Stage timings of the active scale on a slice, plain path vs fast paths, and projections."""
    import tempfile

    from transformers import AutoTokenizer

    from prefdiv import bench, config, data, files

    params = config.load(args.params)
    s = params.active
    n_tokens = s.prompts.prompt_tokens
    rows = files.read_jsonl(args.prompts)[: args.n_train]
    study = {"n_train": s.prompts.n_train, "n_test": s.prompts.n_test, "steps": args.study_steps}
    study["n_methods"] = len(load_grid(args.grid))
    result = {"params": {"scale": params.scale, "speed": vars(s.speed)}, "study": study}
    with tempfile.TemporaryDirectory() as work:
        policy, reward, corpus = args.policy, args.reward, None
        if args.random_init:
            corpus = [r["text"] for r in files.read_jsonl(args.corpus)]
            sizes = bench.TINY if args.tiny else {}
            policy, reward = bench.random_init_models(work, corpus, seed=params.seed, **sizes)
        tok = AutoTokenizer.from_pretrained(policy)  # the model itself loads in bench
        train = [data.truncate_prompt(tok, r["text"], n_tokens) for r in rows]
        test = data.test_prompts(files.read_jsonl(args.test_prompts)[: args.n_test], tok, n_tokens)
        lengths = None
        if corpus:  # a random-weight policy never stops: also time real continuation lengths
            max_new = s.generation.max_new_tokens
            lengths = bench.continuation_lengths(tok, corpus[:2000], n_tokens, max_new)
            result["imdb_mean_continuation_tokens"] = sum(lengths) / len(lengths)
        for path, speed in (("plain", config.SpeedParams()), ("fast", s.speed)):
            result[path] = bench.study_timings(
                policy,
                reward,
                train,
                test,
                s,
                speed,
                seed=params.seed,
                train_steps=args.train_steps,
                study=study,
                work_dir=f"{work}/{path}",
                lengths=lengths,
                n_reference=args.n_reference if path == "plain" else 0,
                profile_dir=f"{args.profile}/{path}" if args.profile else None,
            )
            print(json.dumps(result[path], indent=1), flush=True)
    result["speedup"] = bench.speedups(result["plain"], result["fast"])
    print(json.dumps(result["speedup"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _seeds_arg(text: str) -> list[int]:
    """argparse type of `--seeds 0,1,2`: a bad value becomes one error line naming it."""
    try:
        return check_seeds(text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prefdiv", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid", help="queue and run the experiment grid; report failures")
    g.add_argument("--grid", default="grid.yaml")
    g.add_argument(
        "--seeds",
        type=_seeds_arg,
        metavar="0,1,2",
        help="run every configuration once per seed, named <name>-s<seed> (default: the grid "
        "file's `seeds`)",
    )
    g.add_argument(
        "--train-seeds",
        type=_seeds_arg,
        default=[0],
        metavar="0,1",
        help="also once per train seed (train + evaluate only), named <name>-s<seed>-t<t> "
        "(default: 0, not named)",
    )
    workers = g.add_mutually_exclusive_group()
    workers.add_argument("--jobs", type=int, default=1, help="parallel DVC queue workers")
    workers.add_argument(
        "--gpus",
        type=lambda v: v.split(","),
        metavar="0,1,…",
        help="one DVC queue worker per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES)",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also set this for every experiment (e.g. scale=paper); repeatable",
    )
    g.add_argument(
        "--queue-only",
        action="store_true",
        help="queue the experiments, start no worker (one worker per GPU, see README)",
    )
    t = sub.add_parser("table", help="results table of the grid's experiments (Markdown)")
    t.add_argument("--grid", default="grid.yaml")
    t.add_argument("--readme", help="write the table between the README's results markers")
    t.add_argument("--rev", help="baseline commit of the experiments (default: HEAD)")
    c = sub.add_parser("compare", help="table + figures of every DVC experiment")
    c.add_argument("--out", default="reports")
    c.add_argument("--rev", help="baseline commit of the experiments (default: HEAD)")
    c.add_argument(
        "--reference",
        default="reference/reference_results.csv",
        help="reference study's results, for the table of orderings (skipped if absent)",
    )
    r = sub.add_parser("render", help="render dvc.yaml plots offline (SVG + PNG)")
    r.add_argument("revs", nargs="*", help="revisions / experiment names (default: workspace)")
    r.add_argument("--out", default="dvc_plots_offline")
    bs = sub.add_parser("bench-study", help="time every stage on a slice; project the study")
    bs.add_argument("--params", default="params.yaml")
    bs.add_argument("--policy", default="models/sft", help="policy model directory")
    bs.add_argument("--reward", default="models/reward", help="reward model directory")
    bs.add_argument(
        "--random-init",
        action="store_true",
        help="build GPT-2 small and DistilBERT base at random weights instead (no Hub, no models)",
    )
    bs.add_argument("--corpus", default="data/reviews/train.jsonl", help="--random-init tokenizers")
    bs.add_argument("--tiny", action="store_true", help="--random-init: tiny models (CPU tests)")
    bs.add_argument("--grid", default="grid.yaml", help="its methods are the study's")
    bs.add_argument("--prompts", default="data/prompts/train.jsonl")
    bs.add_argument("--test-prompts", default="data/prompts/test.jsonl")
    bs.add_argument("--n-train", type=int, default=128, help="train prompts sampled")
    bs.add_argument("--n-test", type=int, default=32, help="test prompts evaluated")
    bs.add_argument("--n-reference", type=int, default=32, help="prompts for the reference loop")
    bs.add_argument("--train-steps", type=int, default=100)
    bs.add_argument("--study-steps", type=int, default=7000, help="steps per method, projected")
    bs.add_argument("--out", help="also write the result here (JSON)")
    bs.add_argument("--profile", metavar="DIR", help="also profile 5 training steps of each path")
    b = sub.add_parser("bench-sampling", help="sampling tokens/s: ours vs the reference loop")
    b.add_argument("--params", default="params.yaml")
    b.add_argument("--policy", default="models/sft")
    b.add_argument("--prompts", default="data/prompts/train.jsonl")
    b.add_argument("--n-prompts", type=int, default=128)
    # argparse takes a value such as `-1,2` for an option and says only "expected one argument";
    # passed as `--seeds=-1,2` it reaches the seeds check, whose message names the bad seed.
    joined: list[str] = []
    for a in sys.argv[1:] if argv is None else argv:
        if joined and joined[-1] in ("--seeds", "--train-seeds") and re.match(r"-\d", a):
            joined[-1] += f"={a}"
        else:
            joined.append(a)
    args = ap.parse_args(joined)
    if args.cmd == "bench-sampling":
        return bench_sampling(args)
    if args.cmd == "bench-study":
        return bench_study(args)
    if args.cmd == "grid":
        for setting in args.set:
            key = setting.split("=", 1)[0]
            if key in KEYS:  # the grid sets it per experiment; a --set would override them all
                g.error(
                    f"--set {setting}: {key} is set per experiment by the grid "
                    "(seeds: --seeds, train seeds: --train-seeds)"
                )
        return run_grid(
            args.grid, args.jobs, args.set, args.queue_only, args.gpus, args.seeds, args.train_seeds
        )
    if args.cmd == "compare":
        exps = experiments(args.rev)
        path = compare.report(exps, args.out, args.reference, prompt_tables(exps))
        print(f"wrote {path}")
        return 0
    if args.cmd == "render":
        for path in render(args.revs, args.out):
            print(path)
        return 0
    text = table(args.grid, args.rev)
    if args.readme:
        write_into(Path(args.readme), text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
