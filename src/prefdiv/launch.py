"""Multi-process training: how the `train` stage re-runs itself under `accelerate launch`.

Its own module, apart from `trainer.py`, which trains within whatever processes it is given: this
one decides how many there are, on which device and backend, and the scratch directory they
share. It does not import the trainer (the trainer imports it for :func:`accelerator_state`).

What it launches still shapes the steps: the launcher's `--mixed_precision` and `--dynamo_backend`
reach each process's `Accelerator` through the environment (ACCELERATE_MIXED_PRECISION where
TRL's bf16 flag is off; ACCELERATE_DYNAMO_BACKEND, where a backend other than "no" would compile
the model), and :func:`accelerator_state` picks the device. So the trainer's checkpoint key hashes
this file too (`trainer._CODE`): a checkpoint written under other launch code is never resumed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile

from accelerate import PartialState

from prefdiv import load

WORK_DIR_ENV = "PREFDIV_TRAIN_WORK_DIR"


def distributed_launch(num_processes: int, argv: list[str]) -> list[str] | None:
    """The `accelerate launch` command that re-runs this script in `num_processes` processes.

    None when one process is asked for, or inside a launched process (WORLD_SIZE is set).
    accelerate's torchrun launcher (`--multi_gpu`) starts the processes: DDP over NCCL with a GPU
    each, or, on a machine without GPUs, gloo on the CPU (each process asks for the CPU, see
    :func:`accelerator_state`). `accelerate launch --cpu --num_processes N` would not do: its
    simple launcher starts one process unless mpirun and a hostfile are set up.
    """
    if num_processes == 1 or "WORLD_SIZE" in os.environ:
        return None
    with socket.socket() as s:  # a free port: parallel queue workers must not share one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", str(num_processes), "--main_process_port", str(port)]
    launch += ["--num_machines", "1", "--dynamo_backend", "no"]
    launch += ["--mixed_precision", "bf16" if load.on_gpu() else "no"]
    return [*launch, *argv]


def relaunched(num_processes: int, argv: list[str]) -> bool:
    """Whether `argv` was re-run in `num_processes` processes (:func:`distributed_launch`), with one
    shared work directory (see :func:`work_dir`). False: this process is to train."""
    cmd = distributed_launch(num_processes, argv)
    if cmd is not None:
        with tempfile.TemporaryDirectory() as shared:
            subprocess.run(cmd, check=True, env={**os.environ, WORK_DIR_ENV: shared})
    return cmd is not None


@contextlib.contextmanager
def work_dir():
    """Scratch directory of a training run: shared by all launched processes, removed after."""
    if WORK_DIR_ENV in os.environ:
        yield os.environ[WORK_DIR_ENV]
    else:
        with tempfile.TemporaryDirectory() as work:
            yield work


def accelerator_state() -> PartialState:
    """accelerate's process state; the CPU (gloo across processes) when there is no GPU."""
    return PartialState(cpu=not load.on_gpu())
