"""Stage `train`: preference-train the SFT policy with `loss` (or copy it when loss=sft).

With `train.num_processes` > 1 it re-runs itself under `accelerate launch` (DDP, one process per
GPU; gloo on CPU); only the main process writes outputs and tracks.
"""

import argparse
import sys

import torch

from prefdiv import config, errors, files, launch, load, tracking, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True)
    ap.add_argument("--sft", required=True, help="SFT model directory (policy and reference)")
    ap.add_argument("--pairs", required=True, help="training pairs (JSONL)")
    ap.add_argument("--val-pairs", required=True, help="validation pairs (JSONL)")
    ap.add_argument("--out", required=True, help="trained policy directory to write")
    ap.add_argument("--curve", required=True, help="training curve to write (CSV)")
    ap.add_argument("--val-curve", required=True, help="validation curve to write (CSV)")
    ap.add_argument("--metrics", required=True, help="final validation metrics (JSON)")
    ap.add_argument("--dataset-cache", required=True, help="reused tokenised pairs + ref log-probs")
    ap.add_argument("--checkpoints", required=True, help="checkpoints of unfinished runs (resumed)")
    args = ap.parse_args()
    params = config.load(args.params)
    load.use_threads(params.active.speed.threads)  # part of what the stage computes
    torch.set_flush_denormal(params.active.speed.flush_denormal)  # FTZ/DAZ: docs/speed.md
    p = params.active.train
    if params.loss != config.NO_TRAINING and launch.relaunched(p.num_processes, sys.argv):
        return
    main_process = launch.accelerator_state().is_main_process
    pairs = files.read_jsonl(args.pairs), files.read_jsonl(args.val_pairs)
    run = trainer.settings(params)
    root = tracking.repo_root()  # caches outlive a queued experiment's copy of the repository
    ckpt = trainer.checkpoint_dir(root / args.checkpoints, args.sft, pairs, run)
    tags = {k: getattr(params, k) for k in (*config.EXPERIMENT_KEYS, "scale")}
    hparams = {f"train.{k}": v for k, v in vars(p).items()}  # tags hold seed and train_seed
    # A run resumed from a checkpoint logs on into the MLflow run it started.
    resumed = trainer.saved_run_id(ckpt)
    with tracking.run(tags=tags, params=tags | hparams, run_id=resumed, active=main_process) as r:
        trainer.save_run_id(ckpt, r)
        with launch.work_dir() as work:
            out = trainer.train_policy(
                args.sft, *pairs, **run, out_dir=args.out, work_dir=work, checkpoints=ckpt,
                dataset_cache=root / args.dataset_cache,  # tokenised pairs, reference log-probs
                callbacks=[tracking.hf_callback()] if r else None,
            )  # fmt: skip
        if main_process:  # `evaluate` finds this run by the policy's fingerprint, logs into it
            tracking.set_tags({tracking.POLICY_TAG: tracking.fingerprint(args.out)})
    if main_process:  # setup = tokenising + reference log-probs (≈ 0 from the dataset cache)
        print(f"train: setup {out.setup_s:.1f} s, training {out.train_s:.1f} s")
        files.write_csv(args.curve, out.curve)
        files.write_csv(args.val_curve, out.val_curve)
        files.write_json(args.metrics, out.metrics)


if __name__ == "__main__":
    errors.main(main)
