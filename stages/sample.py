"""Stage `sample`: the SFT policy writes k continuations of every train prompt."""

import argparse

from prefdiv import config, data, errors, files, load, sampling


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--prompts", required=True, help="train-prompt reviews (JSONL)")
    ap.add_argument("--policy", required=True, help="SFT model directory")
    ap.add_argument("--out", required=True, help="samples to write (JSONL, one row per prompt)")
    args = ap.parse_args()
    params = config.load(args.params)
    load.use_threads(params.active.speed.threads)  # part of what the stage computes
    s = params.active

    model, tokenizer = load.load_policy(args.policy)
    rows = files.read_jsonl(args.prompts)
    prompts = [data.truncate_prompt(tokenizer, r["text"], s.prompts.prompt_tokens) for r in rows]
    samples = sampling.sample(
        model, tokenizer, prompts, n=s.sample.k, gen=s.generation, seed=params.seed, desc="sample",
        static=s.speed.static_decode, logp=True,  # logp: DivPO's pairs rank by −log π_SFT(y)
    )  # fmt: skip
    out = sampling.sample_rows(rows, prompts, samples, s.generation.min_tokens)
    n_kept = sum(len(r["responses"]) for r in out)
    files.write_jsonl(args.out, out)
    print(f"kept {n_kept}/{len(rows) * s.sample.k} samples (≥ {s.generation.min_tokens} tokens)")


if __name__ == "__main__":
    errors.main(main)
