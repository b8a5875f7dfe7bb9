"""`prefdiv grid --gpus`: one DVC queue worker per GPU, each started with its own
CUDA_VISIBLE_DEVICES, and every experiment runs with the GPU of the worker that took it.

Checked with the environment variable alone (no GPU needed): a stage records what it sees.
"""

import os
import subprocess

import pytest

from prefdiv import sweep
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
    sweep.start_gpu_workers(["0", "1"])
    assert sweep.queue_state().workers == 2  # both workers up, the first still busy
    sweep.wait_for_queue(poll=1)
    status = _run(["dvc", "queue", "status"], tmp_path)
    assert status.count("Success") == len(names), status
    head = _run(["git", "rev-parse", "HEAD"], tmp_path).strip()
    seen = [
        _run(["git", "show", f"refs/exps/{head[:2]}/{head[2:]}/{n}:seen.txt"], tmp_path).strip()
        for n in names
    ]
    assert set(seen) == {"0", "1"}, seen  # every experiment saw its worker's GPU; both worked
