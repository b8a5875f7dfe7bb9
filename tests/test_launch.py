"""The relaunch decision and the shared work directory, without launching anything (the real
2-process run is tests/test_paper.py's)."""

import os
import sys

from prefdiv import launch


def test_one_process_or_a_launched_one_is_not_relaunched(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch.distributed_launch(1, ["stages/train.py"]) is None
    assert not launch.relaunched(1, ["stages/train.py"])
    monkeypatch.setenv("WORLD_SIZE", "2")  # inside a launched process
    assert launch.distributed_launch(2, ["stages/train.py"]) is None


def test_the_launch_command_reruns_argv_in_n_processes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cmd = launch.distributed_launch(3, ["stages/train.py", "--params", "params.yaml"])
    assert cmd[:4] == [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "3"
    assert cmd[cmd.index("--dynamo_backend") + 1] == "no"
    assert 0 < int(cmd[cmd.index("--main_process_port") + 1]) < 65536
    assert cmd[-3:] == ["stages/train.py", "--params", "params.yaml"]


def test_work_dir_is_the_launchers_shared_one_or_a_fresh_one(monkeypatch, tmp_path):
    monkeypatch.setenv(launch.WORK_DIR_ENV, str(tmp_path))
    with launch.work_dir() as work:
        assert work == str(tmp_path)
    assert tmp_path.exists()  # the launcher removes it, not a launched process
    monkeypatch.delenv(launch.WORK_DIR_ENV)
    with launch.work_dir() as work:
        assert os.path.isdir(work)
    assert not os.path.exists(work)
