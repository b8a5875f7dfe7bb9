"""Stage files: round trips, atomic writes (complete or absent), one-line errors for bad inputs."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prefdiv import files
from prefdiv.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_jsonl_json_csv_round_trip(tmp_path):
    rows = [{"a": 1, "t": "é"}, {"a": 2, "t": "x"}]
    assert files.write_jsonl(tmp_path / "deep" / "x.jsonl", rows) == 2
    assert files.read_jsonl(tmp_path / "deep" / "x.jsonl") == rows
    files.write_json(tmp_path / "m.json", {"b": 1, "a": 0.5})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 0.5,\n  "b": 1\n}\n'
    df = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    files.write_csv(tmp_path / "p.csv", df)
    assert (tmp_path / "p.csv").read_text() == "x,y\n1,a\n2,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "m.json", "p.csv"]


def test_a_writer_that_dies_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "x.jsonl"
    files.write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise KeyboardInterrupt  # killed mid-write, after a row reached the temporary file

    with pytest.raises(KeyboardInterrupt):
        files.write_jsonl(path, rows())
    assert files.read_jsonl(path) == [{"a": 1}]
    assert os.listdir(tmp_path) == ["x.jsonl"]  # no partial file left either


def test_missing_and_malformed_inputs_are_user_errors_naming_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"'.*nope\.jsonl' does not exist.*dvc repro.*dvc pull"):
        files.read_jsonl(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(UserError, match=r"'.*bad\.jsonl' line 3 is not valid JSON"):
        files.read_jsonl(bad)


def test_atomic_dir_is_complete_or_absent(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with files.atomic_dir(out) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("killed while saving")
    assert os.listdir(tmp_path) == []  # no output, and no partial directory either
    (tmp_path / ".model.partial").mkdir()  # what a killed run leaves
    (tmp_path / ".model.partial" / "half").write_text("")
    with files.atomic_dir(out) as tmp:  # the next run replaces it
        (tmp / "weights").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert os.listdir(out) == ["weights"]
    with files.atomic_dir(out) as tmp:  # an existing directory is replaced whole
        (tmp / "other").write_text("2")
    assert os.listdir(out) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _stage(name: str, *args: str, cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("PREFDIV_DEBUG", None)
    cmd = [sys.executable, str(ROOT / "stages" / f"{name}.py"), "--params", "params.yaml", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", ["missing", "malformed"])
def test_a_stage_reports_a_bad_input_file_in_one_line(damage, tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    scored = tmp_path / "data" / "scored.jsonl"
    if damage == "malformed":
        scored.parent.mkdir()
        row = '{"prompt_id": "p", "label": 1, "prompt": "x", "responses": []}\n'
        scored.write_text(row + row + '{"prompt_id": "q", "label": 0, "pro\n')  # cut off mid-row
    out = tmp_path / "out"
    paths = ["--train", str(out / "t.jsonl"), "--val", str(out / "v.jsonl")]
    result = _stage(
        "pairs", "--scored", "data/scored.jsonl", *paths, "--metrics", "m.json", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("prefdiv: ") and "'data/scored.jsonl'" in lines[0]
    if damage == "missing":
        assert "does not exist" in lines[0] and "dvc repro" in lines[0]
    else:
        assert "line 3 is not valid JSON" in lines[0]
    assert not out.exists()  # nothing written
