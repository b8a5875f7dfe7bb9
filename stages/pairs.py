"""Stage `pairs`: scored samples of a prompt → (chosen, rejected) pairs, ties dropped: every pair
(`pair_strategy: all`) or DivPO's one (`divpo`)."""

import argparse

from prefdiv import config, errors, files, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--scored", required=True, help="scored samples (JSONL)")
    ap.add_argument("--train", required=True, help="training pairs to write (JSONL)")
    ap.add_argument("--val", required=True, help="validation pairs to write (JSONL)")
    ap.add_argument("--metrics", required=True, help="pair counts to write (JSON)")
    args = ap.parse_args()
    params = config.load(args.params)
    p = params.active.pairs

    all_pairs, counts = pairs.make_pairs(
        files.read_jsonl(args.scored), p.min_margin, params.pair_strategy, params.divpo_rho
    )
    train, val = pairs.split_by_prompt(
        all_pairs, p.val_fraction, seed=params.seed, max_val=p.max_val_pairs
    )
    files.write_jsonl(args.train, train)
    files.write_jsonl(args.val, val)
    counts.update(n_train_pairs=len(train), n_val_pairs=len(val))
    files.write_json(args.metrics, counts)
    print(counts)


if __name__ == "__main__":
    errors.main(main)
