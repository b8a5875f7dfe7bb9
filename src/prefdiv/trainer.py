"""Preference training: TRL's `DPOTrainer` with the loss taken from `prefdiv.losses`.

TRL 1.16 computes its losses inline in `DPOTrainer._compute_loss` (no public `dpo_loss()`), with
conventions that differ from the papers (length-normalised IPO, α ↔ 1 − α, label smoothing ignored
by `sigmoid`). `PreferenceTrainer` therefore overrides only `compute_loss`: it reuses TRL's
tokenisation, collation, fused log-prob head and precomputed reference log-probs, and dispatches
the loss itself to the registry, so every loss is the pure, tested function of `losses.py`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from accelerate import PartialState
from datasets import Dataset, load_from_disk
from filelock import FileLock
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer

from prefdiv import launch, load, losses, seeds
from prefdiv.config import Params, SpeedParams, TrainParams
from prefdiv.errors import UserError
from prefdiv.files import atomic_dir

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
# logged every step, as TRL's own DPOTrainer names them
METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)


def token_logps(model, input_ids, labels):
    """(N, T − 1) log π(labels[:, t + 1] | input_ids[:, :t + 1]), 0 where the label is −100.

    input_ids, labels: (N, T), right-padded (N = 2B: the B chosen sequences, then the B rejected
    ones). No attention mask: in a causal model a real position never attends to the pads after
    it, so attention can take its causal fast path. The log-softmax runs in float32, instead of
    TRL's chunked head, whose GEMMs ran as old-generation (sm75) kernels on an H100 and whose
    Python-side chunking makes it slower on the CPU too.

    The LM head (V = vocabulary logits per position, most of a small model's compute) runs only
    on the n response positions whose log-prob is summed, not on prompt and padding positions:
    the same log-probs and gradients, less than half the head's work at demo scale. Under
    torch.compile it runs on every position instead: one fixed shape (`fixed_length`), one
    fused reduction over the logits.
    """
    hidden = model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    head, target = model.get_output_embeddings(), labels[:, 1:]
    if torch.compiler.is_compiling():
        logits = head(hidden).float()  # (N, T − 1, V)
        logp = logits.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1) - logits.logsumexp(-1)
        return logp.masked_fill(target == -100, 0.0)
    keep = target != -100  # (N, T − 1)
    logits = head(hidden[keep]).float()  # (n, V)
    picked = PickedLogp.apply(logits, target[keep])  # (n,)
    return picked.new_zeros(target.shape).masked_scatter(keep, picked)


class PickedLogp(torch.autograd.Function):
    """log softmax(logits)[target] of each row: logits (n, V), target (n,) → (n,).

    The forward is `logits.gather(target) − logits.logsumexp()`, the same operations as before.
    The backward writes the gradient −g·softmax + g·onehot(target) into one (n, V) buffer, in
    place; autograd's own graph of that expression allocates five such buffers (the exp, its
    product, the gather's zeros, its scatter and their sum), each a pass over memory: a tenth
    of a demo training step on the CPU. Every element is the same product and the same sum as
    autograd's (IEEE products and sums commute), so gradients and weights stay bit-identical
    (`tests/test_trainer.py`).
    """

    @staticmethod
    def forward(ctx, logits, target):
        lse = logits.logsumexp(-1)
        ctx.save_for_backward(logits, lse, target)
        return logits.gather(-1, target[:, None]).squeeze(-1) - lse

    @staticmethod
    def backward(ctx, g):
        logits, lse, target = ctx.saved_tensors
        # autograd: logsumexp's (−g)·exp(logits − lse), plus the gather's g at each target
        grad = (logits - lse[:, None]).exp_().mul_(-g[:, None])
        rows = torch.arange(len(target), device=grad.device)
        grad.index_put_((rows, target), g, accumulate=True)
        return grad, None


def add_token_logps(model, compiled: bool) -> None:
    """`model(input_ids=…, labels=…, logps=True)` returns :func:`token_logps`, compiled with
    torch.compile in training mode when `compiled` (validation batches, few, run it eagerly rather
    than compile it a second time for eval mode); every other call is the original forward.

    Through the model's own forward, so a DDP wrapper's hooks still run (gradient sync).
    """
    original = model.forward
    compiled_fn = torch.compile(token_logps, dynamic=False) if compiled else token_logps

    def forward(*args, logps=False, **kwargs):
        if not logps:
            return original(*args, **kwargs)
        fn = compiled_fn if model.training else token_logps
        return fn(model, kwargs["input_ids"], kwargs["labels"])

    model.forward = forward


class PreferenceTrainer(DPOTrainer):
    """`DPOTrainer` whose loss is `losses.LOSSES[loss_name]`, with β optionally annealed.

    `lm_head`: "chunked" = TRL's fused, chunked log-prob head; "full" = :func:`token_logps` for
    the policy and the reference log-probs alike. `compile` (with "full"): the policy's
    log-probs through torch.compile (batches must then have one shape).
    """

    def __init__(
        self,
        *,
        model,
        loss_name: str,
        loss_options: dict,
        beta_end=None,
        lm_head="chunked",
        compile=False,
        **kwargs,
    ):
        # Before TRL's __init__, which computes the reference log-probs (with the same function)
        # and wraps the forward with its fused head; that wrapper passes `logps=True` through.
        self.fast_logps = lm_head == "full"
        if self.fast_logps:
            add_token_logps(model, compiled=compile)
        super().__init__(model=model, **kwargs)
        self.loss_fn = losses.get_loss(loss_name)
        self.loss_options = dict(loss_options)
        self.beta_end = beta_end
        self._pending_metrics = {"train": [], "eval": []}  # per-step means, still on the device

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """TRL's tokenised pairs, without the EOS that TRL appends to every response on a
        response cut at the sampling cap (`chosen_truncated` / `rejected_truncated`): an EOS there
        would teach the policy to stop mid-sentence, at the cap, on text that never ended."""
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if "chosen_truncated" not in dataset.column_names:
            return dataset
        return dataset.map(
            strip_eos, fn_kwargs={"eos_id": processing_class.eos_token_id},
            desc=f"Removing EOS from truncated responses of {dataset_name}",
        )  # fmt: skip

    def _logps(self, model, inputs):
        """Summed response log-probs, (2B,): TRL's fused head, or :func:`token_logps`.

        `inputs["input_ids"]`, `inputs["completion_mask"]`: (2B, T), TRL's concatenation of the
        B chosen sequences, then the B rejected ones (so `.chunk(2)` splits them back).
        """
        kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        if self.fast_logps:
            per_token = model(input_ids=inputs["input_ids"], labels=labels, logps=True)
        else:
            per_token = model(
                **kwargs, use_cache=False, labels=labels, fused_lm_head=True
            ).log_probs
        seq_len = inputs["completion_mask"].size(1) - 1
        return per_token[:, -seq_len:].sum(dim=1)

    def compute_ref_log_probs(self, model, inputs):
        if not self.fast_logps:
            return super().compute_ref_log_probs(model, inputs)
        with torch.no_grad(), self.accelerator.autocast():
            return self._logps(model, inputs).chunk(2)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """TRL's log (the mean of each metric since the last one), with this interval's metrics
        copied from the device first, all steps at once."""
        mode = "train" if self.model.training else "eval"
        pending = self._pending_metrics[mode]
        if pending:
            for name, values in zip(METRICS, torch.stack(pending).T.tolist(), strict=True):
                self._metrics[mode][name].extend(values)
            pending.clear()
        super().log(logs, start_time)

    def current_beta(self) -> float:
        return losses.linear_beta(
            self.state.global_step, self.state.max_steps, self.args.beta, self.beta_end
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean over the B pairs of the registry loss; `inputs` holds the (2B, T) concatenated
        batch and, precomputed, the reference log-probs `ref_chosen_logps`/`ref_rejected_logps`,
        (B,) each."""
        mode = "train" if model.training else "eval"
        # Summed response log-probs, as TRL computes them: prompt tokens carry label -100.
        chosen_logps, rejected_logps = self._logps(model, inputs).chunk(2)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(self.ref_model, inputs)

        beta = self.current_beta()
        # Response lengths in tokens (EOS included where there is one): SimPO's normalisation.
        chosen_len, rejected_len = inputs["completion_mask"].sum(1).chunk(2)
        per_pair, chosen_rewards, rejected_rewards = self.loss_fn(
            chosen_logps, rejected_logps, ref_chosen, ref_rejected, beta=beta,
            chosen_lengths=chosen_len, rejected_lengths=rejected_len, **self.loss_options,
        )  # fmt: skip
        loss = per_pair.mean()

        # The six metrics stay on the device until the next log (one gather per step, one
        # device→host copy per logging step): a copy per step would stall the CPU until the GPU
        # caught up, and the CPU could no longer queue the next step's work meanwhile.
        stats = torch.stack([chosen_rewards, rejected_rewards, chosen_logps, rejected_logps], 1)
        c, r, c_logp, r_logp = self.accelerator.gather_for_metrics(stats.detach().float()).T
        margins = c - r
        means = torch.stack([c, r, margins, (margins > 0).float(), c_logp, r_logp]).mean(1)
        self._metrics[mode]["beta"].append(beta)
        self._pending_metrics[mode].append(means)
        outputs = {"chosen_logps": chosen_logps, "rejected_logps": rejected_logps}
        return (loss, outputs) if return_outputs else loss


# --- resumable training -------------------------------------------------------------------------
# A run saves a checkpoint every `train.save_steps` into <root>/<key>/checkpoint-<step>/, where the
# key hashes everything that determines the run; the next run with the same key resumes from the
# last complete one. The code is part of the key: a checkpoint written by other training code is
# never resumed.
_STATE = "trainer_state.json"  # written last by `Trainer._save_checkpoint`: its presence = complete
_RUN_ID = "mlflow_run_id"
# What computes the steps; launch.py sets the processes' precision, compile backend and device.
_CODE = (Path(__file__), Path(losses.__file__), Path(load.__file__), Path(launch.__file__))


def checkpoint_dir(
    root: str | Path, sft_dir: str | Path, pairs: list[list[dict]], run: dict
) -> Path:
    """`root`/<key>: key = sha256 of `run` (the keyword arguments of :func:`train_policy` that set
    the mathematics: loss, β, params, speed, seed), the pairs, the SFT weights, the training code
    and the library versions."""
    import transformers
    import trl

    h = hashlib.sha256()
    for part in (
        json.dumps(run, sort_keys=True, default=asdict),  # the params dataclasses as dicts
        json.dumps(pairs, sort_keys=True),
        *(f.read_text() for f in _CODE),
        f"torch {torch.__version__} transformers {transformers.__version__} trl {trl.__version__}",
    ):
        h.update(hashlib.sha256(part.encode()).digest())
    for f in sorted(Path(sft_dir).iterdir()):
        if f.is_file():
            h.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    return Path(root) / h.hexdigest()[:20]


def last_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step whose trainer state is complete (a kill during a save
    leaves the previous one)."""
    done = []
    for d in Path(ckpt_dir).glob("checkpoint-*"):
        try:
            json.loads((d / _STATE).read_text())
        except (OSError, ValueError):
            continue
        done.append((int(d.name.rsplit("-", 1)[1]), d))
    return max(done)[1] if done else None


def saved_run_id(ckpt_dir: str | Path) -> str | None:
    """The MLflow run that a killed run of this key was logging to (None: no such run)."""
    f = Path(ckpt_dir) / _RUN_ID
    return (f.read_text().strip() or None) if f.exists() else None


def save_run_id(ckpt_dir: str | Path, run_id: str | None) -> None:
    if run_id:
        Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
        (Path(ckpt_dir) / _RUN_ID).write_text(run_id)


def _curves(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) curves from `Trainer.state.log_history`."""
    cols = {"loss": "loss", "rewards/margins": "reward_margin", "rewards/accuracies": "reward_acc"}
    train = [
        {"step": h["step"], "beta": h["beta"], **{v: h[k] for k, v in cols.items()}}
        for h in log_history
        if "loss" in h and "beta" in h
    ]
    val = [
        {"step": h["step"], **{v: h[f"eval_{k}"] for k, v in cols.items()}}
        for h in log_history
        if "eval_loss" in h
    ]
    names = ["step", *cols.values()]
    return (
        pd.DataFrame(train, columns=[names[0], "beta", *names[1:]]),
        pd.DataFrame(val, columns=names),
    )


@dataclass(frozen=True)
class Trained:
    """What :func:`train_policy` returns. The seconds (setup = tokenising + reference log-probs,
    then training) stay out of `metrics`: they would make DVC outputs differ between identical
    runs."""

    curve: pd.DataFrame  # step, beta, loss, reward_margin, reward_acc
    val_curve: pd.DataFrame  # step, loss, reward_margin, reward_acc
    metrics: dict  # final validation metrics, steps, n_processes
    setup_s: float = 0.0
    train_s: float = 0.0


def settings(params: Params) -> dict:
    """The keyword arguments of :func:`train_policy` that decide what it computes (all but
    paths and callbacks), from validated params; the seed is the replicate's."""
    return dict(
        loss=params.loss,
        beta=params.beta,
        beta_end=params.beta_end,
        loss_options={
            "label_smoothing": params.label_smoothing,
            "alpha": params.alpha,
            "hdpo_alpha": params.hdpo_alpha,
            "simpo_ratio": params.simpo_ratio,
        },
        p=params.active.train,
        speed=params.active.speed,
        seed=seeds.replicate_seed(params.seed, params.train_seed),
    )


def train_policy(
    sft_dir: str | Path,
    train_pairs: list[dict],
    val_pairs: list[dict],
    *,
    loss: str,
    beta: float,
    p: TrainParams,
    speed: SpeedParams,
    seed: int,
    out_dir: str | Path,
    work_dir: str | Path,
    beta_end: float | None = None,
    loss_options: dict | None = None,
    dataset_cache: str | Path | None = None,
    callbacks: list | None = None,
    checkpoints: str | Path | None = None,
) -> Trained:
    """Train the SFT policy on preference pairs with `loss`; save it to `out_dir`.

    `loss="sft"` trains nothing: the SFT model is copied, so `evaluate` scores the baseline.
    `dataset_cache`: a directory that keeps the pairs' tokenisation and reference log-probs for
    the next run on the same pairs (see :func:`_pairs_dataset`); None recomputes them every run.
    `callbacks`: `transformers.TrainerCallback`s (MLflow logging, the benchmark's profiler).
    `speed`: `lm_head`, `compile` (see :class:`PreferenceTrainer`), `fixed_length` (every batch
    padded to `p.max_length`), `loader_workers` (batches collated in background processes).
    `checkpoints`: this run's :func:`checkpoint_dir`: a checkpoint every `p.save_steps`, resumed
    from by the next call after a kill, removed once the policy is saved. None: no checkpoints.
    """
    if loss == "sft":
        with atomic_dir(out_dir) as tmp:  # complete or absent, as a trained policy
            shutil.copytree(sft_dir, tmp, dirs_exist_ok=True)
        return Trained(*_curves([]), metrics={})
    if not train_pairs:
        raise UserError(
            "no training pairs: every pair was a tie or no response was kept; "
            "lower pairs.min_margin or sample more (sample.k, generation.min_tokens)"
        )
    state = launch.accelerator_state()
    args = _dpo_config(
        p, speed, beta=beta, seed=seed, world=state.num_processes, validate=bool(val_pairs),
        output_dir=checkpoints or work_dir, checkpoint=checkpoints is not None,
    )  # fmt: skip
    cache = Path(dataset_cache or Path(work_dir) / "pairs")
    started = time.perf_counter()
    trainer = PreferenceTrainer(
        model=load.fuse_gelu(AutoModelForCausalLM.from_pretrained(sft_dir)),
        args=args,
        train_dataset=_pairs_dataset(train_pairs, cache, "train", speed, state),
        eval_dataset=(_pairs_dataset(val_pairs, cache, "val", speed, state) if val_pairs else None),
        processing_class=load.policy_tokenizer(sft_dir),
        loss_name=loss,
        loss_options=loss_options or {},
        beta_end=beta_end,
        lm_head=speed.lm_head,
        compile=speed.compile,
        callbacks=callbacks,
    )
    set_up = time.perf_counter()
    trainer.train(resume_from_checkpoint=_resume_point(checkpoints, state))
    trained = time.perf_counter()
    curve, val_curve = _curves(trainer.state.log_history)
    metrics = _final_metrics(trainer, validate=bool(val_pairs), world=state.num_processes)
    _save_policy(trainer, out_dir, state)
    if checkpoints and state.is_main_process:  # the policy is saved: nothing left to resume
        shutil.rmtree(checkpoints, ignore_errors=True)
    return Trained(curve, val_curve, metrics, set_up - started, trained - set_up)


def _dpo_config(
    p: TrainParams, speed: SpeedParams, *, beta: float, seed: int, world: int, validate: bool,
    output_dir, checkpoint: bool,
) -> DPOConfig:  # fmt: skip
    """TRL's arguments for `p`: the batch split over `world` processes, bf16 on a GPU."""
    if p.batch_size % world:
        raise UserError(f"train.batch_size = {p.batch_size} does not split over {world} processes")
    on_gpu = load.on_gpu()
    return DPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        num_train_epochs=p.num_epochs,
        max_steps=p.max_steps or -1,  # -1: num_train_epochs decides
        per_device_train_batch_size=p.batch_size // world,
        per_device_eval_batch_size=p.batch_size // world,
        learning_rate=p.learning_rate,  # TRL's default 1e-6 learns nothing in a demo's steps
        warmup_steps=p.warmup_steps,
        lr_scheduler_type="cosine",
        adam_beta1=p.adam_beta1,
        adam_beta2=p.adam_beta2,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        bf16=on_gpu,  # TRL defaults bf16=True, which fails on CPU
        use_cpu=not on_gpu,
        beta=beta,
        max_length=p.max_length,
        # Sequences never reach max_length here (prompt_tokens + max_new_tokens + EOS fit). With
        # TRL's default "keep_start", TRL adds a filter whose fingerprint hashes the whole config
        # (β, loss, output dir), so the reference log-probs cached after it would never be reused
        # by another method; "keep_end" adds no filter (see `dataset_cache`).
        truncation_mode="keep_end",
        precompute_ref_log_probs=True,  # the reference forward runs once per pair, not every step
        precompute_ref_batch_size=4 * (p.batch_size // world),  # no gradients: larger batches fit
        # TRL turns activation checkpointing on by default: ~30 % more compute per step, to save
        # memory that GPT-2 small (the study's model, batch 24) does not need.
        activation_checkpointing=False,
        logging_steps=p.logging_steps,
        eval_strategy="steps" if validate else "no",
        eval_steps=p.eval_steps,
        # The filter checks every step's loss for NaN/inf on the host (two syncs per step) to
        # keep them out of the logged average; a NaN loss stays visible in the curve instead.
        logging_nan_inf_filter=False,
        # Model, optimiser, scheduler, RNG states and the log history; the last one only.
        save_strategy="steps" if checkpoint else "no",
        save_steps=p.save_steps,
        save_total_limit=1,
        report_to="none",  # tracking comes as a callback (tracking.hf_callback)
        # One batch shape for a compiled policy: pad to max_length (never exceeded, see above).
        pad_to_multiple_of=p.max_length if speed.fixed_length else None,
        # The collator pads Python lists on the CPU; workers do it while the GPU computes.
        dataloader_num_workers=speed.loader_workers,
        dataloader_persistent_workers=speed.loader_workers > 0,
    )


def _pairs_dataset(rows: list[dict], cache: Path, name: str, speed: SpeedParams, state) -> Dataset:
    """The pairs as an on-disk dataset `<cache>/<name>-<content hash>-<run hash>`, written once.

    On disk, so TRL's caches (tokenised pairs, then reference log-probs, each keyed by the
    dataset's fingerprint and, for the log-probs, the reference weights' hash) land beside it:
    the main process writes them and the others read them. Named by the pairs' content, a
    directory that outlives the run (`dataset_cache`) lets every method trained on the same pairs
    from the same SFT policy reuse both instead of recomputing them. What rounds the reference
    log-probs is in the name too: the head (with lm_head "full" they come from `token_logps`, not
    TRL's head, equal up to rounding), the CPU thread count and the training code, so a run never
    reuses log-probs that another thread count or other code computed.
    """
    keep = [
        {k: r[k] for k in ("prompt", "chosen", "rejected")}
        | {k: bool(r.get(k, False)) for k in ("chosen_truncated", "rejected_truncated")}
        for r in rows
    ]
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
    rounding = f"{speed.lm_head} {speed.threads} " + "".join(f.read_text() for f in _CODE)
    path = cache / f"{name}-{digest}-{hashlib.sha256(rounding.encode()).hexdigest()[:8]}"
    if state.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):  # parallel queue workers may share the pairs
            if not path.exists():
                with atomic_dir(path) as tmp:  # complete or absent, never half-written
                    Dataset.from_list(keep).save_to_disk(tmp)
    state.wait_for_everyone()
    return load_from_disk(path)


def strip_eos(example: dict, eos_id: int) -> dict:
    """`example` (TRL's tokenised pair) with the final EOS removed from each response flagged as
    truncated; a response that ended by itself keeps its EOS."""
    for side in ("chosen", "rejected"):
        ids = example[f"{side}_ids"]
        if example[f"{side}_truncated"] and ids and ids[-1] == eos_id:
            example[f"{side}_ids"] = ids[:-1]
    return example


def _resume_point(checkpoints: str | Path | None, state: PartialState) -> Path | None:
    resume = last_checkpoint(checkpoints) if checkpoints else None
    if resume and state.is_main_process:
        print(f"train: resuming from {resume} (a run with the same params, pairs and code)")
    return resume


def _final_metrics(trainer: PreferenceTrainer, *, validate: bool, world: int) -> dict:
    """Validation metrics after the last step (`val/…`), without the timings TRL adds.

    When the periodic evaluation already ran after the last step (`eval_steps` divides the step
    count), its logged metrics are those same numbers (same weights, eval mode, same batches), so
    they are reused instead of evaluating the validation pairs a second time.
    """
    final = {}
    if validate:
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
        if evals and evals[-1]["step"] == trainer.state.global_step:
            final = {k: v for k, v in evals[-1].items() if k != "step"}
        else:
            final = trainer.evaluate()
    timing = ("runtime", "samples_per_second", "steps_per_second", "epoch")  # not reproducible
    metrics = {
        f"val/{k.removeprefix('eval_')}": v
        for k, v in final.items()
        if k.removeprefix("eval_") not in timing
    }
    return metrics | {"steps": trainer.state.global_step, "n_processes": world}


def _save_policy(trainer: PreferenceTrainer, out_dir, state: PartialState) -> None:
    """The trained policy and its tokenizer; complete or absent (a run killed while saving leaves
    no policy that a later stage would load)."""
    with atomic_dir(out_dir, writer=state.is_main_process) as tmp:
        trainer.save_model(str(tmp))  # main process only
        if state.is_main_process:
            trainer.processing_class.save_pretrained(tmp)
            # TRL's pickled arguments name the temporary work dir: drop them, or the output would
            # differ on every run.
            (tmp / "training_args.bin").unlink(missing_ok=True)
