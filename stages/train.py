"""Stage `train`: preference-train the SFT policy with `loss` (or copy it when loss=sft)."""

import argparse
import tempfile
from pathlib import Path

from prefdiv import config, data, tracking, trainer


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
    args = ap.parse_args()
    params = config.load(args.params)
    p = params.active.train

    tags = {
        "loss": params.loss,
        "beta": params.beta,
        "beta_end": params.beta_end,
        "label_smoothing": params.label_smoothing,
        "alpha": params.alpha,
        "scale": params.scale,
    }
    hparams = {"seed": params.seed, **{f"train.{k}": v for k, v in vars(p).items()}}
    with tracking.run(tags=tags, params={**tags, **hparams}) as run_id:
        with tempfile.TemporaryDirectory() as work:
            curve, val_curve, final = trainer.train_policy(
                args.sft,
                data.read_jsonl(args.pairs),
                data.read_jsonl(args.val_pairs),
                loss=params.loss,
                beta=params.beta,
                beta_end=params.beta_end,
                loss_options={"label_smoothing": params.label_smoothing, "alpha": params.alpha},
                p=p,
                seed=params.seed,
                out_dir=args.out,
                work_dir=work,
                report_to=["mlflow"] if run_id else [],
            )
        # `evaluate` finds this run by the policy's fingerprint and logs into it.
        tracking.set_tags({tracking.POLICY_TAG: tracking.fingerprint(args.out)})
    for df, path in [(curve, args.curve), (val_curve, args.val_curve)]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    data.write_json(args.metrics, final)


if __name__ == "__main__":
    main()
