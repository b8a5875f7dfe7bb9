"""What DVC holds: the experiments of a baseline commit (`dvc exp show`), their per-prompt tables,
and the one rule for which of them count.

An experiment is :class:`Experiment`: its name, queue state, params, metrics files and git commit.
A failed experiment shows its baseline's metrics in `dvc exp show`, so :func:`usable` (succeeded,
and its commit has `metrics/eval.json`) is the only test of a result that every reader applies:
`prefdiv compare`, `prefdiv table` and `prefdiv grid --retry-failed` alike.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass, field

import pandas as pd

from prefdiv.errors import UserError

EVAL = "metrics/eval.json"  # the evaluate stage's metrics (dvc.yaml)
PROMPTS = "plots/eval_prompts.csv"  # its per-prompt values, committed with each experiment
PAIRS = "metrics/pairs.json"  # the pairs stage's metrics: its seed's reward scale among them


@dataclass(frozen=True)
class Experiment:
    """One DVC experiment. `metrics`: metrics file → its values (`EVAL` among them once the
    experiment evaluated); `rev`: its git commit (None for a failed or queued one)."""

    name: str
    state: str = "success"
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    rev: str | None = None

    @property
    def usable(self) -> bool:
        """Succeeded and evaluated: the one rule for a result that counts."""
        return self.state != "failed" and EVAL in self.metrics

    @property
    def eval(self) -> dict:
        """Its `metrics/eval.json` values ({} without)."""
        return self.metrics.get(EVAL, {})


def usable(exps: dict[str, Experiment]) -> dict[str, Experiment]:
    """The experiments whose results count (:attr:`Experiment.usable`), by name."""
    return {n: e for n, e in exps.items() if e.usable}


def dvc(*args: str) -> str:
    """`dvc ARGS`'s stdout. A failure is a :class:`UserError` with DVC's own error lines."""
    out = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if out.returncode != 0:
        said = [ln.strip() for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        errors = [ln.removeprefix("ERROR: ") for ln in said if ln.startswith("ERROR")]
        reason = "; ".join(dict.fromkeys(errors)) or (said[-1] if said else "no message")
        raise UserError(f"`dvc {' '.join(args)}` failed (exit {out.returncode}): {reason}")
    return out.stdout


def check_rev(rev: str) -> None:
    """A UserError unless `rev` names a commit of this repository."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True
    )
    if found.returncode != 0:
        raise UserError(
            f"unknown revision {rev!r}: --rev takes a commit, branch or tag of this repository "
            "(the commit the experiments were run from)"
        )


def show(rev: str | None = None) -> dict[str, Experiment]:
    """The experiments of baseline `rev` (default HEAD), by name, from `dvc exp show --json`
    (DVC 3: `revs[0]` of an experiment is its tip). `state` tells a failed one apart."""
    if rev:
        check_rev(rev)
    out: dict[str, Experiment] = {}
    for baseline in json.loads(dvc("exp", "show", "--json", *(["--rev", rev] if rev else []))):
        for exp in baseline.get("experiments") or []:
            tip = exp["revs"][0]
            data = tip.get("data") or {}
            state = (exp.get("executor") or {}).get("state") or "success"
            if tip.get("error"):
                state = "failed"
            params = data.get("params", {}).get("params.yaml", {}).get("data", {})
            metrics = {path: m.get("data", {}) for path, m in (data.get("metrics") or {}).items()}
            name = exp.get("name") or tip.get("name")
            out[name] = Experiment(name, state, params, metrics, tip.get("rev"))
    return out


def prompt_tables(exps: dict[str, Experiment]) -> dict[str, pd.DataFrame]:
    """Per experiment, its per-prompt evaluation table from its commit (`git show`); experiments
    without one (failed, or from before the table existed) are left out."""
    out = {}
    for name, e in exps.items():
        if e.state == "failed" or not e.rev:
            continue
        shown = subprocess.run(
            ["git", "show", f"{e.rev}:{PROMPTS}"], capture_output=True, text=True
        )
        if shown.returncode == 0:
            out[name] = pd.read_csv(io.StringIO(shown.stdout))
    return out
