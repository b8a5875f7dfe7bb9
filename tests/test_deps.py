"""Each stage's deps in dvc.yaml are exactly the prefdiv modules its script runs: no stale outputs.

The set is derived from the code, never written down here: the `src/prefdiv` modules that
`stages/<stage>.py` imports, directly or through other prefdiv modules. Imports inside functions
count too (a deferred import still runs code that shapes outputs). Modules that cannot change
any output are listed in :data:`EXEMPT`, and their own imports are not followed.
"""

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "src" / "prefdiv"
PREFIX = "src/prefdiv/"

# The one exemption list (dvc.yaml's header points here): modules no output depends on.
EXEMPT = {
    "__init__.py": "environment defaults only (telemetry off, tokenizer threads)",
    "config.py": "validates params.yaml; the values reach a stage as its declared params",
    "errors.py": "the wording and exit status of user errors",
    "tracking.py": "MLflow logging, outside every DVC output",
}


def imported_modules(path: Path, lib: Path = LIB) -> set[str]:
    """File names (`x.py`) of the prefdiv modules (in `lib`) `path` imports anywhere in its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_lib = path.parent == lib
    found: set[str] = set()

    def add(dotted: str) -> None:  # "prefdiv" or "prefdiv.x[.y]"
        parts = dotted.split(".")
        if parts[0] == "prefdiv":
            found.add("__init__.py")  # importing any submodule first runs the package
            if len(parts) > 1:
                found.add(f"{parts[1]}.py")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative, inside the package
                base = "prefdiv" if in_lib and node.level == 1 else None
                module = f"{base}.{node.module}" if base and node.module else base
            else:
                module = node.module
            if module is None:
                continue
            add(module)
            if module == "prefdiv":  # `from prefdiv import x`: x is a module or a package name
                for alias in node.names:
                    if (lib / f"{alias.name}.py").is_file():
                        add(f"prefdiv.{alias.name}")
    missing = {m for m in found if not (lib / m).is_file()}
    assert not missing, f"{path.name} imports no such prefdiv module: {missing}"
    return found


def closure(script: Path, lib: Path = LIB) -> dict[str, list[str]]:
    """{module: import chain from `script`} of every prefdiv module `script` runs, exempt ones
    included (reached, but not followed); breadth first, so each chain is a shortest one."""
    chains: dict[str, list[str]] = {}
    start = f"{script.parent.name}/{script.name}"
    todo = [(m, [start]) for m in sorted(imported_modules(script, lib))]
    while todo:
        module, via = todo.pop(0)
        if module in chains:
            continue
        chains[module] = [*via, module]
        if module not in EXEMPT:
            todo += [(m, chains[module]) for m in sorted(imported_modules(lib / module, lib))]
    return chains


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def script_of(name: str, stage: dict) -> Path:
    scripts = re.findall(r"python\s+(stages/\w+\.py)", stage["cmd"])
    assert len(scripts) == 1, f"stage {name}: expected one `python stages/<x>.py` in its cmd"
    return ROOT / scripts[0]


def derived_deps() -> dict[str, set[str]]:
    """{stage: the `src/prefdiv/*.py` paths it must declare}, from the code."""
    return {
        name: {PREFIX + m for m in closure(script_of(name, st)) if m not in EXEMPT}
        for name, st in stages().items()
    }


def test_exempt_modules_exist():
    assert all((LIB / m).is_file() for m in EXEMPT), "EXEMPT names a module that is gone"


def test_the_derivation_follows_imports_through_modules_and_functions(tmp_path):
    lib = tmp_path / "src" / "prefdiv"
    lib.mkdir(parents=True)
    for name, code in {
        "__init__.py": "",
        "a.py": "from prefdiv import b\n",
        "b.py": "def f():\n    from prefdiv.c import g\n",  # deferred
        "c.py": "import prefdiv.tracking\n",
        "tracking.py": "from prefdiv import d\n",  # exempt: not followed
        "d.py": "",
        "e.py": "",
    }.items():
        (lib / name).write_text(code)
    script = tmp_path / "stage.py"
    script.write_text("from prefdiv import a, config\n")
    (lib / "config.py").write_text("")
    chains = closure(script, lib)
    assert set(chains) == {"__init__.py", "a.py", "b.py", "c.py", "tracking.py", "config.py"}
    assert chains["c.py"] == [f"{tmp_path.name}/stage.py", "a.py", "b.py", "c.py"]


def test_dvc_yaml_declares_exactly_the_modules_each_stage_runs():
    problems = []
    for name, stage in stages().items():
        script = script_of(name, stage)
        deps = set(stage.get("deps", []))
        if script.relative_to(ROOT).as_posix() not in deps:
            problems.append(f"stage {name}: dvc.yaml misses its script {script.relative_to(ROOT)}")
        declared = {d for d in deps if d.startswith(PREFIX)}
        chains = closure(script)
        derived = {PREFIX + m for m in chains if m not in EXEMPT}
        for dep in sorted(derived - declared):
            chain = " → ".join(chains[dep.removeprefix(PREFIX)])
            problems.append(f"stage {name}: dvc.yaml misses {dep} (imported via {chain})")
        for dep in sorted(declared - derived):
            why = EXEMPT.get(dep.removeprefix(PREFIX), "not imported")
            problems.append(f"stage {name}: dvc.yaml over-declares {dep} ({why})")
    assert not problems, "\n".join(problems)


def _repo_copy(dst: Path) -> None:
    """The repository's files (tracked, or new and not ignored) in `dst`, in a fresh git repo."""
    ls = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(ls, cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


def _dvc_status(repo: Path) -> dict:
    out = subprocess.run(
        ["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _modified(status: dict) -> dict[str, set[str]]:
    """{stage: its deps that `dvc status` reports modified}, for stages that have any."""
    found: dict[str, set[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, dict):
                deps = entry.get("changed deps", {})
                found.setdefault(stage, set()).update(d for d, s in deps.items() if s == "modified")
    return {stage: deps for stage, deps in found.items() if deps}


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_editing_a_module_changes_exactly_the_stages_that_import_it(tmp_path):
    """`dvc status` in a copy: an edited module marks as changed exactly the stages that run it.

    The copy has no outputs; stand-ins take their place and `dvc commit -f` records them and the
    current code in the copy's dvc.lock, so that only the edit differs (not a stale lock).
    """
    repo = tmp_path / "repo"
    _repo_copy(repo)
    for stage in stages().values():
        for out in (o if isinstance(o, str) else next(iter(o)) for o in _outs(stage)):
            path = repo / out
            if path.suffix:  # a file; a model directory otherwise
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "stand-in").touch()
    commit = subprocess.run(["dvc", "commit", "-f"], cwd=repo, capture_output=True, text=True)
    assert commit.returncode == 0, commit.stderr
    assert _dvc_status(repo) == {}

    derived = derived_deps()
    want = {name for name, deps in derived.items() if PREFIX + "data.py" in deps}
    assert want, "no stage imports data.py: the check below would be vacuous"
    lib = repo / "src" / "prefdiv"
    with (lib / "data.py").open("a") as fh:
        fh.write("# edited\n")
    got = {
        name for name, deps in _modified(_dvc_status(repo)).items() if PREFIX + "data.py" in deps
    }
    assert got == want, (
        f"after editing data.py, dvc status changes {sorted(got)}, not {sorted(want)}"
    )

    for module in lib.glob("*.py"):  # every module edited: each stage reports exactly its own
        with module.open("a") as fh:
            fh.write("# edited\n")
    assert _modified(_dvc_status(repo)) == {name: deps for name, deps in derived.items() if deps}


def _outs(stage: dict) -> list:
    return [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
