"""Stage `reward`: train the sentiment reward model (reward = positive-class logit)."""

import argparse

from prefdiv import config, data, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--reviews", required=True, help="labelled training reviews (JSONL)")
    ap.add_argument("--val", required=True, help="labelled held-out reviews (JSONL)")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--metrics", required=True, help="JSON metrics to write")
    args = ap.parse_args()
    params = config.load(args.params)

    rows = data.read_jsonl(args.reviews)
    val = data.read_jsonl(args.val)
    metrics = models.train_reward(rows, val, params.active.reward, args.out, seed=params.seed)
    data.write_json(args.metrics, metrics)
    print(f"reward model held-out accuracy {metrics['val_accuracy']:.3f} → {args.out}")


if __name__ == "__main__":
    main()
