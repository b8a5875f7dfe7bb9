"""`prefdiv` command line: subcommands registered with their parsers, one-line user errors."""

import subprocess

import pytest

from prefdiv import cli, experiments, grid, report, sweep
from prefdiv.errors import UserError

GRID = (
    "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5, hdpo_alpha: 1.0, "
    "simpo_ratio: 0.5, pair_strategy: all, divpo_rho: 0.3}\n"
)
GRID += "experiments: {a: {loss: sft}}\n"


@pytest.mark.parametrize(
    "argv, must_say",
    [
        (["--seeds", "0,-1"], "argument --seeds: -1 is negative"),
        (["--seeds", "-1,2"], "argument --seeds: -1 is negative"),  # not read as an option
        (["--seeds", "0,1,1"], "argument --seeds: 1 is given twice"),
        (["--seeds", "0,a"], "argument --seeds: 'a' is not an integer"),
        (["--seeds", "1.5"], "argument --seeds: '1.5' is not an integer"),
        (["--train-seeds", "0,,1"], "argument --train-seeds: '' is not an integer"),
        (["--set", "seed=3"], "argument --set: seed=3: seed is set per experiment"),
        (["--set", "loss"], "argument --set: 'loss' is not KEY=VALUE"),
    ],
)
def test_bad_seeds_are_one_error_line_naming_the_value(argv, must_say, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "run_grid", lambda *a, **kw: pytest.fail("ran despite a bad value"))
    with pytest.raises(SystemExit) as e:
        cli.main(["grid", *argv])
    assert e.value.code == 2  # argparse's usage error, no traceback
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("prefdiv grid: error: ") and must_say in line
    assert line.endswith("(`prefdiv grid -h`)")


def test_seeds_reach_the_grid_with_gpus_and_extra_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "run_grid", lambda path, **kw: calls.append((path, kw)) or 0)
    argv = ["grid", "--seeds", "2,0", "--gpus", "0,1", "--set", "scale=paper"]
    assert cli.main(argv) == 0
    assert cli.main(["grid", "--train-seeds", "0,1", "--jobs", "2", "--retry-failed"]) == 0
    (path, first), (_, second) = calls
    assert path == "grid.yaml" and first["extra"] == ["scale=paper"] and first["gpus"] == ["0", "1"]
    assert first["seeds"] == [2, 0] and first["train_seeds"] == [0]
    assert not first["retry_failed"] and not first["queue_only"]
    assert second["seeds"] is None and second["train_seeds"] == [0, 1]  # grid file's seeds
    assert second["jobs"] == 2 and second["retry_failed"]


def test_every_subcommand_is_registered_with_its_parser(monkeypatch):
    names = [c.name for c in cli.COMMANDS]
    assert names == ["grid", "table", "compare", "render"]  # benchmarks: python -m benchmarks
    ran = []
    # each parsed command line carries its own command's `run`
    monkeypatch.setattr(
        cli,
        "COMMANDS",
        [
            cli.Command(c.name, c.help, c.arguments, lambda a, n=c.name: ran.append(n) or 0)
            for c in cli.COMMANDS
        ],
    )
    for name in names:
        assert cli.main([name]) == 0
    assert ran == names


def _repo_with_grid(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "grid.yaml").write_text(text)


@pytest.mark.parametrize(
    "argv, grid_text, must_say",
    [
        (["table"], "experiments: [a, b]\n", "grid.yaml: experiments: expected a mapping"),
        (["grid", "--seeds", "0"], "seeds: [0\n", "grid.yaml:2: not valid YAML"),
        (["table", "--rev", "nosuch"], GRID, "unknown revision 'nosuch'"),
        (["compare", "--rev", "nosuch"], GRID, "unknown revision 'nosuch'"),
        (["compare"], "levels: {1: {experiments: {a: {}}}}\n", "grid.yaml: levels.1: no title"),
        (["table"], GRID, "`dvc exp show --json` failed (exit 253): you are not inside"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, argv, grid_text, must_say
):
    _repo_with_grid(tmp_path, monkeypatch, grid_text)
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    (line,) = out.err.splitlines()
    assert line.startswith("prefdiv: ") and must_say in line and out.out == ""


def test_debug_switch_shows_the_traceback(tmp_path, monkeypatch):
    _repo_with_grid(tmp_path, monkeypatch, GRID)
    monkeypatch.setenv("PREFDIV_DEBUG", "1")
    with pytest.raises(UserError, match="unknown revision"):
        cli.main(["table", "--rev", "nosuch"])


def test_table_goes_between_the_readme_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "load_grid", lambda path: {})
    monkeypatch.setattr(experiments, "show", lambda rev: {})
    monkeypatch.setattr(report, "table", lambda configs, exps: "| new |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{cli.START}\n| old |\n{cli.END}\ntail\n")
    assert cli.main(["table", "--readme", str(readme)]) == 0
    assert readme.read_text() == f"head\n{cli.START}\n| new |\n{cli.END}\ntail\n"
    readme.write_text("no markers\n")
    with pytest.raises(UserError, match="lacks the markers"):
        cli.write_into(readme, "| new |\n")
