"""Stage `sft`: the SFT policy, trained here (demo) or resolved from the Hub or a directory."""

import argparse

from prefdiv import config, errors, files, load, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--reviews", required=True, help="training reviews (JSONL)")
    ap.add_argument("--val", required=True, help="held-out reviews (JSONL)")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--metrics", required=True, help="JSON metrics to write")
    args = ap.parse_args()
    params = config.load(args.params)
    load.use_threads(params.active.speed.threads)  # part of what the stage computes
    p = params.active.sft

    val = [r["text"] for r in files.iter_jsonl(args.val)]
    if isinstance(p, config.PretrainedParams):
        metrics = models.resolve_pretrained(p.model, args.out, kind="policy")
        model, tokenizer = load.load_policy(args.out)
        metrics.update(models.perplexity(model, tokenizer, val, block_size=p.block_size))
    else:
        texts = [r["text"] for r in files.iter_jsonl(args.reviews)]
        metrics = models.train_sft(texts, val, p, args.out, seed=params.seed)
    files.write_json(args.metrics, metrics)
    print(f"SFT held-out perplexity {metrics['val_perplexity']:.1f} → {args.out}")


if __name__ == "__main__":
    errors.main(main)
