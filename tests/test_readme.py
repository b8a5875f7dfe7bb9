"""The README's paths and commands exist; dvc.yaml stages match stages/ files."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from test_pipeline import copy_project

from prefdiv import config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# README and docs/*.md: the error examples of both are run
DOCS = "\n".join([README, *(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))])
# DVC outputs are made by `dvc repro`, not committed: they need not exist in a fresh clone.
GENERATED = ("data/", "models/", "mlflow.db", "dvc_plots/", ".dvc/config.local", ".dvc/tmp/")


def _blocks():
    """Shell blocks (```bash / ```console); `$ ` prompts stripped, output lines dropped."""
    blocks = re.findall(r"```(bash|console)\n(.*?)```", README, flags=re.S)
    return [
        "\n".join(
            line.removeprefix("$ ")
            for line in body.replace("\\\n", " ").splitlines()  # join `\` continuations
            if lang == "bash" or line.startswith("$ ")
        )
        for lang, body in blocks
    ]


def test_every_named_path_exists():
    names = set(re.findall(r"`([\w./-]+\.(?:py|yaml|json|csv|md|lock|toml|png|txt))`", README))
    names |= set(re.findall(r"`((?:stages|src|tests|metrics|plots|\.ci|\.dvc)/[\w./-]*)`", README))
    missing = [n for n in names if not n.startswith(GENERATED) and not (ROOT / n).exists()]
    assert not missing, missing


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmds = [line for b in _blocks() for line in b.splitlines() if "pytest" in line]
    assert len(test_cmds) == 1, test_cmds
    assert test_cmds[0].strip() in (ROOT / ".ci" / "run").read_text()


def test_readme_commands_parse_and_name_real_stages_and_params():
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for block in _blocks():
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            argv = shlex.split(line)  # every shown command is valid shell
            if argv[:2] == ["dvc", "repro"] and len(argv) > 2 and not argv[2].startswith("-"):
                assert argv[2] in stages, line
            for i, a in enumerate(argv):
                if a == "-S":
                    key = argv[i + 1].split("=")[0]
                    node = params
                    for k in key.split("."):
                        assert k in node, f"{line}: unknown param {key}"
                        node = node[k]


def test_dvc_stages_match_stage_files():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    files = {p.stem for p in (ROOT / "stages").glob("*.py")}
    assert set(dvc) == files
    for name, stage in dvc.items():
        assert f"stages/{name}.py" in stage["cmd"], name
        assert f"stages/{name}.py" in stage["deps"], name


def _error_examples() -> list[tuple[str, str]]:
    """(command, its `prefdiv:` line) of every README/docs console block that shows a user error."""
    examples = []
    for body in re.findall(r"```console\n(.*?)```", DOCS, flags=re.S):
        lines = body.splitlines()
        errors = [ln for ln in lines if ln.startswith("prefdiv: ")]
        if errors:
            (cmd,) = [ln.removeprefix("$ ") for ln in lines if ln.startswith("$ ")]
            (error,) = errors
            examples.append((cmd, error))
    return examples


ERRORS = _error_examples()


def test_readme_shows_its_error_examples():
    shown = " ".join(line for _, line in ERRORS)
    for what in [
        "loss = 'dpoo'",
        "needs a CUDA GPU",
        "dataset 'imdb'",
        "model 'lvwerra/gpt2-imdb'",
    ]:
        assert what in shown, what


@pytest.mark.parametrize("cmd, line", ERRORS, ids=[line[9:40] for _, line in ERRORS])
def test_readme_error_example_is_the_programs_output(cmd, line, tmp_path):
    """The README's command, run in a fresh copy of the project, prints the README's line."""
    import torch

    gpu_check = "needs a CUDA GPU" in line
    if gpu_check and torch.cuda.is_available():
        pytest.skip("the GPU check only stops machines without one")
    repo = tmp_path / "repo"
    copy_project(repo)
    git = {
        f"GIT_{who}_{what}": "t" for who in ("AUTHOR", "COMMITTER") for what in ("NAME", "EMAIL")
    }
    env = {**os.environ, **git, "PREFDIV_TRACKING": "0"}
    # The Hub examples are what a GPU machine without the Hub prints; this one passes the GPU
    # check by the override. The Hub is never reached here (conftest: HF_HUB_OFFLINE=1); the
    # message is the same as after a failed connection.
    if gpu_check:
        env.pop(config.ALLOW_CPU, None)
    else:
        env[config.ALLOW_CPU] = "1"
    for git_cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "project"]):
        subprocess.run(["git", *git_cmd], cwd=repo, env=env, check=True, capture_output=True)
    out = subprocess.run(
        shlex.split(cmd), cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode != 0
    assert line in out.stderr.splitlines(), out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert "exited with 2" in out.stderr  # errors.EXIT_USER_ERROR, through DVC
