from pathlib import Path

from prefdiv import cli

ROOT = Path(__file__).resolve().parents[1]


def test_grid_queues_every_configuration_with_the_extra_settings():
    grid = cli.load_grid(ROOT / "grid.yaml")
    cmds = cli.queue_commands(grid, ["scale=paper"])
    assert len(cmds) == len(grid) == 14
    for name, cmd in zip(grid, cmds, strict=True):
        assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", name]
        assert cmd[-2:] == ["-S", "scale=paper"] and "-S" in cmd[6:-2]  # keys, then the extra
