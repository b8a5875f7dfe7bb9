"""`python -m benchmarks`, run from the repository root:

    python -m benchmarks sampling [--params params.yaml] [--policy models/sft] [--n-prompts 128]
        our `sample` stage's sampling vs the reference study's loop, new tokens/s
    python -m benchmarks study [--policy models/sft --reward models/reward | --random-init
                               [--tiny] [--corpus data/reviews/train.jsonl]]
                               [--n-train 128] [--n-test 32] [--n-reference 32] [--train-steps 100]
                               [--study-steps N] [--grid grid.yaml] [--out F.json] [--profile DIR]
        every compute stage timed on a slice, plain vs fast paths; the full study projected

The study's sizes come from the params' active scale (`prompts.n_train`, `prompts.n_test`,
`train.max_steps`, unless --study-steps) and its method count from the grid file. A user error
prints one line, `prefdiv: <message>`, and exits 2 (as a stage does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from prefdiv import config, data, files


def _sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--policy", default="models/sft")
    p.add_argument("--prompts", default="data/prompts/train.jsonl")
    p.add_argument("--n-prompts", type=int, default=128)


def sampling_command(args: argparse.Namespace) -> None:
    """New tokens/s of the `sample` stage's sampling and of the reference loop (JSON)."""
    from benchmarks import sampling
    from prefdiv import load

    params = config.load(args.params)
    s = params.active
    model, tok = load.load_policy(args.policy)
    rows = files.read_jsonl(args.prompts)[: args.n_prompts]
    prompts = [data.truncate_prompt(tok, r["text"], s.prompts.prompt_tokens) for r in rows]
    result = sampling.compare_throughput(
        model, tok, prompts, k=s.sample.k, gen=s.generation, seed=params.seed,
        static=s.speed.static_decode,
    )  # fmt: skip
    print(json.dumps(result, indent=1))


def _study_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--train-steps", type=int, default=100, help="DPO steps timed")
    p.add_argument(
        "--study-steps", type=int, help="steps per method, projected (default: train.max_steps)"
    )
    p.add_argument("--out", help="also write the result here (JSON)")
    p.add_argument("--profile", metavar="DIR", help="also profile 5 training steps of each path")


def study_command(args: argparse.Namespace) -> None:
    """Stage timings of the active scale on a slice, plain path vs fast paths, and projections."""
    from benchmarks import random_init, study
    from prefdiv import grid, load, sweep

    params = config.load(args.params)
    s = params.active
    levels = grid.load_grid(args.grid)
    whole = sweep.with_frontier(levels, grid.load_frontier(args.grid))
    trained = [len([c for c in g.values() if c["loss"] != "sft"]) for g in (levels, whole)]
    sizes = study.study_sizes(
        params, trained[0], args.study_steps, n_frontier=trained[1],
        n_seeds=len(grid.grid_seeds(args.grid)),
    )  # fmt: skip
    result = {"params": {"scale": params.scale, "speed": vars(s.speed)}, "study": sizes}
    train = files.read_jsonl(args.prompts)[: args.n_train]
    test = files.read_jsonl(args.test_prompts)[: args.n_test]
    with tempfile.TemporaryDirectory() as work:
        policy, reward, lengths = args.policy, args.reward, None
        if args.random_init:
            corpus = [r["text"] for r in files.read_jsonl(args.corpus)]
            tiny = random_init.TINY if args.tiny else {}
            policy, reward = random_init.random_init_models(work, corpus, seed=params.seed, **tiny)
            # a random-weight policy never stops: also time real continuation lengths
            lengths = random_init.continuation_lengths(
                load.policy_tokenizer(policy), corpus[:2000], s.prompts.prompt_tokens,
                s.generation.max_new_tokens,
            )  # fmt: skip
            result["imdb_mean_continuation_tokens"] = sum(lengths) / len(lengths)
        for path, speed in (("plain", config.SpeedParams()), ("fast", s.speed)):
            result[path] = study.study_timings(
                policy, reward, train, test, params, speed, train_steps=args.train_steps,
                study=sizes, work_dir=f"{work}/{path}", lengths=lengths,
                n_reference=args.n_reference if path == "plain" else 0,
                profile_dir=f"{args.profile}/{path}" if args.profile else None,
            )  # fmt: skip
            print(json.dumps(result[path], indent=1), flush=True)
    result["speedup"] = study.speedups(result["plain"], result["fast"])
    print(json.dumps(result["speedup"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


DESCRIPTION = "Time the pipeline's own stage functions (run from the repository root)."
# Each command imports what it runs (torch, transformers) itself, so that `-h` answers at once.
COMMANDS = {
    "sampling": (sampling_command, _sampling_arguments),
    "study": (study_command, _study_arguments),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, (run, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=run.__doc__.split("\n")[0], description=run.__doc__)
        arguments(p)
        p.set_defaults(run=run)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line) and run its benchmark; 0 when it ran."""
    args = parser().parse_args(argv)
    args.run(args)
    return 0
