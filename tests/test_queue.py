"""`prefdiv grid --gpus`: one DVC queue worker per GPU, each started with its own
CUDA_VISIBLE_DEVICES, and every experiment runs with the GPU of the worker that took it.

Checked with the environment variable alone (no GPU needed): a stage records what it sees.
"""

import os
import subprocess

import pytest

from prefdiv import sweep, workers
from prefdiv.errors import UserError

STAGE = """stages:
  probe:
    cmd: bash probe.sh
    deps: [probe.sh]
    params: [x]
    outs:
      - seen.txt:
          cache: false
"""
# Long enough that the second worker is up while the first is still busy.
PROBE = 'sleep 6\necho "${CUDA_VISIBLE_DEVICES:-unset}" > seen.txt\n'


def _run(cmd, cwd, **env):
    return subprocess.run(
        cmd, cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, **env}
    ).stdout


def test_one_queue_worker_per_gpu(tmp_path, monkeypatch):
    for who in ("AUTHOR", "COMMITTER"):  # the workers commit experiments, on any machine
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@t")
    _run(["git", "init", "-q"], tmp_path)
    _run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text(STAGE)
    (tmp_path / "probe.sh").write_text(PROBE)
    (tmp_path / "params.yaml").write_text("x: 0\n")
    _run(["git", "add", "-A"], tmp_path)
    _run(["git", "commit", "-qm", "probe"], tmp_path)
    names = [f"e{i}" for i in range(4)]
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(names):  # queued in this process, as `prefdiv grid` queues
        sweep.queue_here(["dvc", "exp", "run", "--queue", "-S", f"x={i}", "-n", name])
    with pytest.raises(UserError, match="-n a b` failed"):
        sweep.queue_here(["dvc", "exp", "run", "--queue", "-S", "x=9", "-n", "a b"])  # bad name
    workers.start_gpu_workers(["0", "1"])
    assert workers.queue_state().workers == 2  # both workers up, the first still busy
    # the watchdog finds both by their processes, under DVC's names for them
    assert workers.live_workers(workers._queue_dir(), 2) == {1, 2}
    assert workers._queue_dir() == str(tmp_path / ".dvc" / "tmp" / "exps" / "celery")
    workers.wait_for_queue(poll=1)
    status = _run(["dvc", "queue", "status"], tmp_path)
    assert status.count("Success") == len(names), status
    head = _run(["git", "rev-parse", "HEAD"], tmp_path).strip()
    seen = [
        _run(["git", "show", f"refs/exps/{head[:2]}/{head[2:]}/{n}:seen.txt"], tmp_path).strip()
        for n in names
    ]
    assert set(seen) == {"0", "1"}, seen  # every experiment saw its worker's GPU; both worked


UNSTABLE = """stages:
  up:
    cmd: echo up >> {runs} && python -c "import uuid; print(uuid.uuid4())" > up.txt
    params: [x]
    outs: [up.txt]
  down:
    cmd: cat up.txt > down.txt && echo ${{y}} >> down.txt
    deps: [up.txt]
    params: [y]
    outs: [down.txt]
"""


def test_a_lock_this_machine_cannot_restore_is_computed_once_per_seed(tmp_path, monkeypatch):
    """A fresh clone on a machine whose bits differ from those `dvc.lock` names (here a stage
    that writes a new UUID each run): DVC runs a stage that matches its lock entry again when
    the entry's outputs are not cached, without looking in its run cache, so every experiment
    at the workspace's parameters recomputed the upstream stage (the SFT policy and the reward
    model, 13.8 min each on 2026-12-05's host). `prefdiv grid` queues them without those lock
    entries: the first computes `up`, the others restore it; the workspace's dvc.lock is left
    as it was."""
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@t")
    src, clone, runs = tmp_path / "src", tmp_path / "clone", tmp_path / "runs.txt"
    src.mkdir()
    _run(["git", "init", "-q"], src)
    _run(["dvc", "init", "-q"], src)
    (src / "dvc.yaml").write_text(UNSTABLE.format(runs=runs))
    (src / "params.yaml").write_text("x: 0\ny: 0\n")
    _run(["dvc", "repro", "-q"], src)
    _run(["git", "add", "-A"], src)
    _run(["git", "commit", "-qm", "baseline"], src)
    _run(["git", "clone", "-q", str(src), str(clone)], tmp_path)  # an empty DVC cache
    runs.unlink()
    monkeypatch.chdir(clone)
    lock = (clone / "dvc.lock").read_bytes()
    assert sweep.unrestorable() == ["up", "down"]
    names = [f"y{i}" for i in (1, 2, 3)]
    monkeypatch.setattr(
        sweep,
        "queue_command",
        lambda n, s, extra: ["dvc", "exp", "run", "--queue", "-n", n, "-S", f"y={n[1:]}"],
    )
    sweep.enqueue(names, {n: {} for n in names})
    assert (clone / "dvc.lock").read_bytes() == lock
    workers.start_workers(1)
    workers.wait_for_queue(poll=1)
    status = _run(["dvc", "queue", "status"], clone)
    assert status.count("Success") == len(names), status
    assert runs.read_text().split() == ["up"]  # once, not once per experiment
