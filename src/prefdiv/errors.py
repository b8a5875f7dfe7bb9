"""User errors: one line on stderr naming what is wrong and what is allowed, no traceback.

A mistake a user can fix (a bad param, a missing or malformed input file, an unreachable Hub id,
a paper-scale run without a GPU) raises :class:`UserError`; a stage's entry point runs through
:func:`main`, which prints `prefdiv: <message>` and exits with status 2. Any other exception is a
bug and keeps its traceback. `PREFDIV_DEBUG=1` shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG = "PREFDIV_DEBUG"
EXIT_USER_ERROR = 2  # argparse's status for a bad command line


class UserError(Exception):
    """A mistake the user can fix; the message says what is wrong and what is allowed."""


def call(fn: Callable[..., int | None], *args) -> int | None:
    """`fn(*args)`; a :class:`UserError` becomes one line on stderr and the status
    :data:`EXIT_USER_ERROR` (the `prefdiv` CLI returns it, a stage exits with it)."""
    try:
        return fn(*args)
    except UserError as e:
        if os.environ.get(DEBUG) == "1":
            raise
        print(f"prefdiv: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


def main(fn: Callable[[], object]) -> None:
    """Run a stage's `main`; a :class:`UserError` becomes one line and exit status 2."""
    if call(fn) == EXIT_USER_ERROR:
        sys.exit(EXIT_USER_ERROR)
