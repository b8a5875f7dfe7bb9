"""Stage files: JSONL/JSON/CSV reading and writing, and model directories written whole.

Every writer is atomic: it writes a temporary sibling and renames it into place (`os.replace`, one
step on a POSIX file system), so a stage killed mid-write leaves the old file or none, never a
half-written one that a later stage would read as complete. Readers turn a missing or malformed
input into a :class:`~prefdiv.errors.UserError` that names the file (and the line).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from prefdiv.errors import UserError


def _partial(path: Path, what: str = "partial") -> Path:
    """A temporary sibling of `path` (`.NAME.partial`, ignored by git).

    A fixed name, not a random one: a stage killed mid-write leaves at most one, which its next
    run replaces.
    """
    return path.with_name(f".{path.name}.{what}")


@contextlib.contextmanager
def _atomic_file(path: str | Path):
    """Yield a temporary path to write; on success it is renamed to `path` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """One JSON object per line (not ASCII-escaped); returns the number of rows."""
    n = 0
    with _atomic_file(path) as tmp, tmp.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj) -> None:
    """`obj` as indented JSON with sorted keys (metrics: stable diffs)."""
    with _atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, df) -> None:
    """A pandas DataFrame as CSV (plot data), without its index."""
    with _atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)


def _missing(path: Path, what: str = "input file") -> UserError:
    return UserError(
        f"{what} {str(path)!r} does not exist; an earlier stage writes it: run `dvc repro` "
        "(or `dvc pull` to fetch it from the remote)"
    )


def model_dir(path: str | Path) -> Path:
    """`path`, a model directory an earlier stage wrote; a :class:`UserError` if it is missing."""
    if not Path(path).is_dir():
        raise _missing(Path(path), "model directory")
    return Path(path)


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """The rows of a JSONL file, lazily; blank lines are skipped."""
    path = Path(path)
    try:
        fh = path.open()
    except FileNotFoundError:
        raise _missing(path) from None
    with fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(
                        f"{str(path)!r} line {number} is not valid JSON ({e.msg}, column "
                        f"{e.colno}); the file is damaged: delete it and run `dvc repro` "
                        "(or `dvc pull`)"
                    ) from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Every row of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, writer: bool = True):
    """Yield a temporary sibling directory to fill; when the body returns it becomes `path`.

    A model directory is complete or absent: if the body raises, `path` is untouched and the
    partial directory removed; if the process dies, the next run replaces what it left. An
    existing `path` is replaced whole. `writer=False` (the other processes of a distributed run,
    which write nothing) yields the same name and neither creates nor renames it.
    """
    path = Path(path)
    tmp = _partial(path)
    if not writer:
        yield tmp
        return
    _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.exists():  # a directory cannot replace a non-empty one in one rename: move it aside
        old = _partial(path, "old.partial")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
