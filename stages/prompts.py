"""Stage `prompts`: split IMDB by review into disjoint pools: prompts (train/test), model data.

Demo: every pool comes from the packaged train split. Paper: train prompts from the dataset's
train split; test prompts and held-out model-evaluation reviews from its test split.
"""

import argparse

from prefdiv import config, data, errors, files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--train", required=True, help="train-prompt reviews (JSONL)")
    ap.add_argument("--test", required=True, help="test-prompt reviews (JSONL)")
    ap.add_argument("--model-train", required=True, help="reviews to train SFT + reward (JSONL)")
    ap.add_argument("--model-val", required=True, help="held-out reviews for model metrics (JSONL)")
    args = ap.parse_args()
    params = config.load(args.params)
    p = params.active.prompts

    has_test_split = p.dataset != data.BUILTIN
    pools = data.split_pools(
        data.load_reviews(p.dataset, "train"),
        test_reviews=data.load_reviews(p.dataset, "test") if has_test_split else None,
        n_train=p.n_train,
        n_test=p.n_test,
        n_model_train=p.n_model_train,
        n_model_val=p.n_model_val,
        seed=params.seed,
    )
    for name, path in [
        ("train", args.train),
        ("test", args.test),
        ("model_train", args.model_train),
        ("model_val", args.model_val),
    ]:
        n = files.write_jsonl(path, pools[name])
        print(f"{name}: {n} reviews → {path}")


if __name__ == "__main__":
    errors.main(main)
