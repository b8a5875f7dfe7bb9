"""The README's paths and commands exist; dvc.yaml stages match stages/ files."""

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
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
