"""Stage `score`: reward (positive-class logit of the reward model) of every kept sample."""

import argparse

from prefdiv import config, errors, files, load, rewards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--samples", required=True, help="samples (JSONL, one row per prompt)")
    ap.add_argument("--reward", required=True, help="reward model directory")
    ap.add_argument("--out", required=True, help="scored samples to write (JSONL)")
    args = ap.parse_args()
    params = config.load(args.params)  # validates the whole file
    load.use_threads(params.active.speed.threads)  # part of what the stage computes

    model, tokenizer = load.load_reward(args.reward)
    rows = files.read_jsonl(args.samples)
    n = rewards.score_rows(model, tokenizer, rows)
    files.write_jsonl(args.out, rows)
    print(f"scored {n} samples → {args.out}")


if __name__ == "__main__":
    errors.main(main)
