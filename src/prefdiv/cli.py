"""`prefdiv` command line: run the experiment grid with DVC's queue, tabulate its results.

    prefdiv grid    [--grid grid.yaml] [--seeds 0,1,2] [--train-seeds 0] [--jobs 1 | --gpus 0,1]
                    [--set scale=paper] [--queue-only] [--retry-failed]
                                    queue every configuration once per seed, run them, report
                                    failures with their logs' tails; --retry-failed re-runs
                                    only those that did not succeed
    prefdiv table   [--grid grid.yaml] [--readme README.md]   the grid's results table (Markdown),
                                                    replicates grouped
    prefdiv compare [--out reports] [--grid grid.yaml]   every experiment, replicates grouped,
                                      by the grid's levels: tables, claims, figures
                                      (reports/compare.md)
    prefdiv render  [REV ...] [--out dvc_plots_offline]   dvc.yaml plots → SVG/PNG, offline
    prefdiv bench-sampling [--n-prompts 128]   our sampling vs the reference study's loop
    prefdiv bench-study --policy D --reward D  time every stage on a slice; project the study

All drive DVC itself (`dvc exp run --queue`, `dvc exp show --json`, `dvc plots diff --json`);
nothing here re-implements the pipeline. Each subcommand is a function registered with the
function that adds its arguments (:func:`command`). A user error (`prefdiv.errors.UserError`: a
bad grid file, an unknown revision, a failed DVC command) prints one line, `prefdiv: <message>`,
and exits 2; `PREFDIV_DEBUG=1` shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefdiv import compare, errors, grid
from prefdiv.config import EXPERIMENT_KEYS
from prefdiv.errors import UserError

START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the subcommand's arguments
    run: Callable[[argparse.Namespace], int]  # its exit status


COMMANDS: list[Command] = []  # in `prefdiv --help` order


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated `run(args) -> exit status` as subcommand `name`."""

    def register(run):
        COMMANDS.append(Command(name, help, arguments, run))
        return run

    return register


# --- grid ----------------------------------------------------------------------------------


def _seeds(text: str) -> list[int]:
    """argparse type of `--seeds 0,1,2`: a bad value becomes one error line naming it."""
    try:
        return grid.check_seeds(text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _setting(text: str) -> str:
    """argparse type of `--set KEY=VALUE`; the grid's own keys are refused (a --set would
    override every configuration's value)."""
    key, eq, _ = text.partition("=")
    if not key or not eq:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. scale=paper")
    if key in EXPERIMENT_KEYS:
        raise argparse.ArgumentTypeError(
            f"{text}: {key} is set per experiment by the grid "
            "(seeds: --seeds, train seeds: --train-seeds, other keys: the grid file)"
        )
    return text


def _grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="grid.yaml")
    p.add_argument(
        "--seeds",
        type=_seeds,
        metavar="0,1,2",
        help="run every configuration once per seed, named <name>-s<seed> (default: the grid "
        "file's `seeds`)",
    )
    p.add_argument(
        "--train-seeds",
        type=_seeds,
        default=[0],
        metavar="0,1",
        help="also once per train seed (train + evaluate only), named <name>-s<seed>-t<t> "
        "(default: 0, not named)",
    )
    workers = p.add_mutually_exclusive_group()
    workers.add_argument("--jobs", type=int, default=1, help="parallel DVC queue workers")
    workers.add_argument(
        "--gpus",
        type=lambda v: v.split(","),
        metavar="0,1,…",
        help="one DVC queue worker per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES)",
    )
    p.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also set this for every experiment (e.g. scale=paper); repeatable",
    )
    p.add_argument(
        "--queue-only",
        action="store_true",
        help="queue the experiments, start no worker (one worker per GPU, see README)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="queue only the grid's experiments that did not succeed (failed, missing, or "
        "without metrics/eval.json); give the same --seeds, --train-seeds and --set as before",
    )


@command("grid", "queue and run the experiment grid; report failures", _grid_arguments)
def grid_command(args: argparse.Namespace) -> int:
    return grid.run_grid(
        args.grid,
        jobs=args.jobs,
        extra=args.set,
        queue_only=args.queue_only,
        gpus=args.gpus,
        seeds=args.seeds,
        train_seeds=args.train_seeds,
        retry_failed=args.retry_failed,
    )


# --- results -------------------------------------------------------------------------------


def _rev(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rev", help="baseline commit of the experiments (default: HEAD)")


def _table_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="grid.yaml")
    p.add_argument("--readme", help="write the table between the README's results markers")
    _rev(p)


def write_into(readme: Path, text: str) -> None:
    """Replace what lies between the results markers of `readme` with `text`."""
    if not readme.is_file():
        raise UserError(f"{readme}: no such file (--readme names the file to write the table in)")
    doc = readme.read_text()
    if START not in doc or END not in doc:
        raise UserError(
            f"{readme} lacks the markers {START} … {END}; add them where the table goes"
        )
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")


@command("table", "results table of the grid's experiments (Markdown)", _table_arguments)
def table_command(args: argparse.Namespace) -> int:
    text = grid.results_table(args.grid, args.rev)
    if args.readme:
        write_into(Path(args.readme), text)
    print(text, end="")
    return 0


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="reports")
    p.add_argument("--grid", default="grid.yaml", help="its levels group tables and panels")
    _rev(p)
    p.add_argument(
        "--reference",
        default="reference/reference_results.csv",
        help="reference study's results, for the table of orderings (skipped if absent)",
    )


@command("compare", "table + figures of every DVC experiment", _compare_arguments)
def compare_command(args: argparse.Namespace) -> int:
    levels = grid.load_levels(args.grid)
    exps = grid.experiments(args.rev)
    path = compare.report(exps, args.out, levels, args.reference, grid.prompt_tables(exps))
    print(f"wrote {path}")
    return 0


def _render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("revs", nargs="*", help="revisions / experiment names (default: workspace)")
    p.add_argument("--out", default="dvc_plots_offline")


def render(revs: list[str], out_dir: str) -> list[Path]:
    """Render the `dvc.yaml` plots of `revs` (as `dvc plots diff` would) to SVG and PNG.

    DVC's HTML loads Vega from a CDN, which fails offline; vl-convert bundles Vega instead.
    """
    import vl_convert as vlc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = json.loads(grid.dvc("plots", "diff", *revs, "--json"))
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


@command("render", "render dvc.yaml plots offline (SVG + PNG)", _render_arguments)
def render_command(args: argparse.Namespace) -> int:
    for path in render(args.revs, args.out):
        print(path)
    return 0


# --- benchmarks (to move out of the library) -----------------------------------------------


def _bench_study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--policy", default="models/sft", help="policy model directory")
    p.add_argument("--reward", default="models/reward", help="reward model directory")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="build GPT-2 small and DistilBERT base at random weights instead (no Hub, no models)",
    )
    p.add_argument("--corpus", default="data/reviews/train.jsonl", help="--random-init tokenizers")
    p.add_argument("--tiny", action="store_true", help="--random-init: tiny models (CPU tests)")
    p.add_argument("--grid", default="grid.yaml", help="its methods are the study's")
    p.add_argument("--prompts", default="data/prompts/train.jsonl")
    p.add_argument("--test-prompts", default="data/prompts/test.jsonl")
    p.add_argument("--n-train", type=int, default=128, help="train prompts sampled")
    p.add_argument("--n-test", type=int, default=32, help="test prompts evaluated")
    p.add_argument("--n-reference", type=int, default=32, help="prompts for the reference loop")
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--study-steps", type=int, default=7000, help="steps per method, projected")
    p.add_argument("--out", help="also write the result here (JSON)")
    p.add_argument("--profile", metavar="DIR", help="also profile 5 training steps of each path")


@command("bench-study", "time every stage on a slice; project the study", _bench_study_arguments)
def bench_study(args: argparse.Namespace) -> int:
    """Stage timings of the active scale on a slice, plain path vs fast paths, and projections."""
    import tempfile

    from transformers import AutoTokenizer

    from prefdiv import bench, config, data, files

    params = config.load(args.params)
    s = params.active
    n_tokens = s.prompts.prompt_tokens
    rows = files.read_jsonl(args.prompts)[: args.n_train]
    study = {"n_train": s.prompts.n_train, "n_test": s.prompts.n_test, "steps": args.study_steps}
    study["n_methods"] = len(grid.load_grid(args.grid))
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


def _bench_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--policy", default="models/sft")
    p.add_argument("--prompts", default="data/prompts/train.jsonl")
    p.add_argument("--n-prompts", type=int, default=128)


@command(
    "bench-sampling", "sampling tokens/s: ours vs the reference loop", _bench_sampling_arguments
)
def bench_sampling(args: argparse.Namespace) -> int:
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


# --- entry point ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line too (argparse would print the usage block above it)."""

    def error(self, message: str):
        self.exit(errors.EXIT_USER_ERROR, f"{self.prog}: error: {message} (`{self.prog} -h`)\n")


def parser() -> argparse.ArgumentParser:
    """`prefdiv` with every registered subcommand; parsed arguments carry the command's `run`."""
    ap = _Parser(prog="prefdiv", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help)
        c.arguments(p)
        p.set_defaults(run=c.run)
    return ap


def _negative_values(argv: list[str]) -> list[str]:
    """argparse takes a value such as `-1,2` for an option and says only "expected one
    argument"; passed as `--seeds=-1,2` it reaches the seeds check, whose message names it."""
    joined: list[str] = []
    for a in argv:
        if joined and joined[-1] in ("--seeds", "--train-seeds") and re.match(r"-\d", a):
            joined[-1] += f"={a}"
        else:
            joined.append(a)
    return joined


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line) and run its subcommand; a user error prints one
    line `prefdiv: <message>` and returns 2 (as `errors.main` does for a stage)."""
    args = parser().parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        return args.run(args)
    except UserError as e:
        if os.environ.get(errors.DEBUG) == "1":
            raise
        print(f"prefdiv: {e}", file=sys.stderr)
        return errors.EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
