"""`python -m benchmarks …` (see `benchmarks.cli`)."""

from benchmarks import cli
from prefdiv import errors

errors.main(cli.main)
