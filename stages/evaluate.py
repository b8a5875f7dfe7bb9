"""Stage `evaluate`: the trained policy on held-out test prompts: reward vs diversity."""

import argparse
import json
import sys

import torch

from prefdiv import config, data, errors, evaluation, files, load, seeds, tracking


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--prompts", required=True, help="test-prompt reviews (JSONL)")
    ap.add_argument("--policy", required=True, help="trained policy directory")
    ap.add_argument("--reference", required=True, help="reference (SFT) policy, for the KL")
    ap.add_argument("--reward", required=True, help="reward model directory")
    ap.add_argument("--metrics", required=True, help="metrics to write (JSON)")
    ap.add_argument("--per-prompt", required=True, help="per-prompt plot data to write (CSV)")
    ap.add_argument("--per-sample", required=True, help="per-sample rewards to write (CSV)")
    args = ap.parse_args()
    params = config.load(args.params)
    load.use_threads(params.active.speed.threads)  # part of what the stage computes
    torch.set_flush_denormal(params.active.speed.flush_denormal)  # FTZ/DAZ: docs/speed.md
    s = params.active

    policy, policy_tok = load.load_policy(args.policy)
    reference, _ = load.load_policy(args.reference)
    reward, reward_tok = load.load_reward(args.reward)
    prompts = data.test_prompts(files.read_jsonl(args.prompts), policy_tok, s.prompts.prompt_tokens)
    timings, run_metrics, e = {}, {}, s.evaluate
    df, per_sample = evaluation.per_prompt(
        policy, policy_tok, reference, reward, reward_tok, evaluation.load_embedder(), prompts,
        n=e.n, gen=s.generation, entropy_tokens=e.entropy_tokens, speed=s.speed,
        kl_samples=e.kl_samples, rarefied=e.rarefied_tokens, run_metrics=run_metrics,
        seed=seeds.replicate_seed(params.seed, params.train_seed), timings=timings,  # sampling
    )  # fmt: skip
    metrics = evaluation.summarise(
        df, n=e.n, bootstrap=e.bootstrap, seed=params.seed, run_metrics=run_metrics
    )
    if warning := evaluation.dropped_warning(metrics, s.generation.min_tokens):
        print(warning, file=sys.stderr)
    files.write_json(args.metrics, metrics)
    files.write_csv(args.per_prompt, df)
    files.write_csv(args.per_sample, per_sample)

    run_id = tracking.find_run(tracking.fingerprint(args.policy))
    tags = {k: getattr(params, k) for k in ("loss", "beta", "seed", "train_seed", "scale")}
    with tracking.run(tags={**tags, "evaluate.n": s.evaluate.n}, params={}, run_id=run_id):
        tracking.log_metrics(metrics)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=1))
    print("evaluate, seconds:", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


if __name__ == "__main__":
    errors.main(main)
