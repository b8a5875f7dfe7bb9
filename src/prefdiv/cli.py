"""`prefdiv` command line: run the experiment grid with DVC's queue, tabulate its results.

    prefdiv grid    [--grid grid.yaml] [--seeds 0,1,2] [--train-seeds 0] [--jobs 1 | --gpus 0,1]
                    [--set scale=paper] [--queue-only] [--retry-failed] [--frontier]
                                    queue every configuration once per seed, run them, report
                                    failures with their logs' tails; --retry-failed re-runs
                                    only those that did not succeed
    prefdiv table   [--grid grid.yaml] [--readme README.md]   the grid's results table (Markdown),
                                                    replicates grouped
    prefdiv compare [--out reports] [--grid grid.yaml]   every experiment, replicates grouped,
                                      by the grid's levels: tables, claims, figures
                                      (reports/compare.md)
    prefdiv render  [REV ...] [--out dvc_plots_offline]   dvc.yaml plots → SVG/PNG, offline

All drive DVC itself (`dvc exp run --queue`, `dvc exp show --json`, `dvc plots diff --json`);
nothing here re-implements the pipeline. Each subcommand is a function registered with the
function that adds its arguments (:func:`command`). A user error (`prefdiv.errors.UserError`: a
bad grid file, an unknown revision, a failed DVC command) prints one line, `prefdiv: <message>`,
and exits 2; `PREFDIV_DEBUG=1` shows its traceback. The benchmarks are not subcommands: they
live outside the library (`python -m benchmarks`, see benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefdiv import errors, experiments, grid, plan, sweep
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
        "--frontier",
        action="store_true",
        help="also the grid file's β frontier (every loss at each of its β; a configuration the "
        "levels already run is not run twice)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="queue only the grid's experiments that did not succeed (failed, missing, or "
        "without metrics/eval.json); give the same --seeds, --train-seeds and --set as before",
    )


@command("grid", "queue and run the experiment grid; report failures", _grid_arguments)
def grid_command(args: argparse.Namespace) -> int:
    return sweep.run_grid(
        args.grid,
        jobs=args.jobs,
        extra=args.set,
        queue_only=args.queue_only,
        gpus=args.gpus,
        seeds=args.seeds,
        train_seeds=args.train_seeds,
        retry_failed=args.retry_failed,
        frontier=args.frontier,
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
    from prefdiv import report  # matplotlib: loaded by the commands that report, not by `grid`

    text = report.table(grid.load_grid(args.grid), experiments.show(args.rev))
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
    p.add_argument(
        "--plan",
        default="analysis.yaml",
        help="the analysis plan: the claims' primary metrics, equivalence margins, α, seeds",
    )


@command("compare", "table + figures of every DVC experiment", _compare_arguments)
def compare_command(args: argparse.Namespace) -> int:
    from prefdiv import matched, reference, report  # matplotlib: loaded by the commands that report

    levels = grid.load_levels(args.grid)
    exps = experiments.show(args.rev)
    analysis = plan.load(args.plan, [*(cid for cid, *_ in reference.CLAIMS), matched.LEVEL4])
    tables = experiments.prompt_tables(exps)
    path = report.compare(exps, args.out, levels, args.reference, tables, analysis)
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
    shown = json.loads(experiments.dvc("plots", "diff", *revs, "--json"))
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
    return errors.call(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
