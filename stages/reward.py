"""Stage `reward`: the sentiment reward model (reward = positive-class logit): trained here (demo)
or resolved from the Hub / a directory (paper)."""

import argparse

from prefdiv import config, errors, files, load, models, rewards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--reviews", required=True, help="labelled training reviews (JSONL)")
    ap.add_argument("--val", required=True, help="labelled held-out reviews (JSONL)")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--metrics", required=True, help="JSON metrics to write")
    args = ap.parse_args()
    params = config.load(args.params)
    load.use_threads(params.active.speed.threads)  # part of what the stage computes
    p = params.active.reward

    val = files.read_jsonl(args.val)
    if isinstance(p, config.PretrainedParams):
        metrics = models.resolve_pretrained(p.model, args.out, kind="reward")
        metrics.update(rewards.accuracy(*load.load_reward(args.out), val))
    else:
        metrics = models.train_reward(files.read_jsonl(args.reviews), val, p, args.out, params.seed)
    files.write_json(args.metrics, metrics)
    print(f"reward model held-out accuracy {metrics['val_accuracy']:.3f} → {args.out}")


if __name__ == "__main__":
    errors.main(main)
