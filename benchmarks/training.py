"""DPO optimiser steps as the `train` stage runs them (`trainer.train_policy` with
`trainer.settings(params)`), timed step by step or profiled with `torch.profiler`.

Only the step count and the fast paths (`speed`) differ from the stage; there is no validation,
no checkpoint and no tracking, which the timings leave out.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from prefdiv import config, load, trainer
from prefdiv.config import Params, SpeedParams
from prefdiv.errors import UserError


def dpo_steps(
    policy_dir, train_pairs: list[dict], params: Params, steps: int, *, speed: SpeedParams,
    work_dir, callbacks: list | None = None,
) -> trainer.Trained:  # fmt: skip
    """`steps` optimiser steps of `params`' loss, β and train params on `train_pairs`, with fast
    paths `speed`; `callbacks` go to `trainer.train_policy`, whose result it returns."""
    run = trainer.settings(params)
    if run["loss"] == config.NO_TRAINING:
        raise UserError(
            f"loss = {config.NO_TRAINING!r} trains nothing: set a training loss in the params "
            "(e.g. loss: sigmoid) to time training"
        )
    # No validation pass inside the timed steps (the validation pairs are not passed either).
    run["p"] = dataclasses.replace(run["p"], max_steps=steps, eval_steps=10 * steps)
    run["speed"] = speed
    return trainer.train_policy(
        policy_dir, train_pairs, [], **run, out_dir=f"{work_dir}/policy",
        work_dir=f"{work_dir}/train", callbacks=callbacks,
    )  # fmt: skip


class StepTimer(TrainerCallback):
    """Wall time of the first `warmup` optimiser steps (compilation lands there) and the mean of
    the steps after them (steady state)."""

    def __init__(self, warmup: int):
        self.warmup, self.marks = warmup, {}

    def _mark(self, step: int):
        if load.on_gpu():
            torch.cuda.synchronize()
        self.marks[step] = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, state.max_steps):
            self._mark(state.global_step)

    def result(self, steps: int) -> tuple[float, float]:
        """(seconds of the warm-up steps, seconds per steady step)."""
        m = self.marks
        return m[self.warmup] - m[0], (m[steps] - m[self.warmup]) / (steps - self.warmup)


class StepProfiler(TrainerCallback):
    """`torch.profiler` over optimiser steps start+1 … stop of a training run.

    Writes `train_steps.txt` (operators by their own device time, or CPU time without a GPU) and
    `train_steps.json` (a Chrome / Perfetto trace: where the GPU idles between kernels) to `out`.
    """

    def __init__(self, out, *, start: int, stop: int):
        self.out, self.start, self.stop, self.prof = Path(out), start, stop, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if load.on_gpu():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.start()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop and self.prof is not None:
            self.prof.stop()
            self.out.mkdir(parents=True, exist_ok=True)
            sort = "self_device_time_total" if load.on_gpu() else "self_cpu_time_total"
            table = self.prof.key_averages().table(sort_by=sort, row_limit=40)
            (self.out / "train_steps.txt").write_text(table + "\n")
            self.prof.export_chrome_trace(str(self.out / "train_steps.json"))


def profile_training(
    policy_dir, train_pairs: list[dict], params: Params, speed: SpeedParams, *, out_dir,
    work_dir, warmup: int = 5, steps: int = 5,
) -> None:  # fmt: skip
    """Profile `steps` optimiser steps after `warmup` unprofiled ones (:class:`StepProfiler`)."""
    n = warmup + steps
    profiler = StepProfiler(out_dir, start=warmup, stop=n)
    pairs = train_pairs[: n * params.active.train.batch_size]
    dpo_steps(policy_dir, pairs, params, n, speed=speed, work_dir=work_dir, callbacks=[profiler])
