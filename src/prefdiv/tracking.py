"""MLflow tracking: one store per repository, one run per trained policy.

Default store: SQLite `mlflow.db` at the repository root (git-ignored). DVC runs queued and
`--temp` experiments in copies under `<repo>/.dvc/tmp/exps/…`, so the URI is resolved to the
*original* repository's file by absolute path, or those runs would vanish with the copy.
`MLFLOW_TRACKING_URI` overrides; `PREFDIV_TRACKING=0` turns tracking off (tests do).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

EXPERIMENT = "prefdiv"
# Tag linking a policy's files to its training run. The run id is not written into the model
# directory: that would make a DVC output differ on every run of an otherwise identical stage.
POLICY_TAG = "policy_sha256"
_EXPS = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def enabled() -> bool:
    return os.environ.get("PREFDIV_TRACKING", "1") != "0"


def repo_root(cwd: str | Path | None = None) -> Path:
    """The repository that owns `cwd`, seen through DVC's experiment copies."""
    cwd = str(Path(cwd or os.getcwd()).resolve())
    if _EXPS in cwd + os.sep:
        return Path((cwd + os.sep).split(_EXPS)[0])
    return Path(cwd)


def tracking_uri(cwd: str | Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root(cwd) / 'mlflow.db'}"


def _git_commit() -> str:
    # DVC sets the baseline commit for experiments; fall back to git for plain `dvc repro`.
    rev = os.environ.get("DVC_EXP_BASELINE_REV")
    if rev:
        return rev
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _setup():
    """Point MLflow (and HF's MLflow callback, which reads the env) at the store, creating it once.

    Creating a fresh SQLite store runs migrations; parallel queue workers doing that at once crash,
    so the first creation is serialised with a file lock next to the database.
    """
    import mlflow
    from filelock import FileLock

    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    lock = Path(uri.removeprefix("sqlite:///") + ".lock") if uri.startswith("sqlite:///") else None
    with FileLock(lock) if lock else contextlib.nullcontext():
        mlflow.set_experiment(EXPERIMENT)
    return mlflow


@contextlib.contextmanager
def run(*, tags: dict, params: dict, run_id: str | None = None, active: bool = True):
    """An active MLflow run (resumed when `run_id` exists in the store); yields its id or None.

    `active=False` (a DDP process other than the main one) records nothing and yields None.
    """
    if not (active and enabled()):
        yield None
        return
    mlflow = _setup()
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except mlflow.exceptions.MlflowException:  # a model pulled from a remote, another store
            run_id = None
    name = os.environ.get("DVC_EXP_NAME") or None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name) as active:
        mlflow.set_tags(
            {"git_commit": _git_commit(), **({"dvc_exp": name} if name else {}), **tags}
        )
        if params:
            mlflow.log_params(params)
        yield active.info.run_id


def fingerprint(model_dir: str | Path) -> str:
    """sha256 of a model directory's weights (`*.safetensors`, sorted by name)."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def find_run(policy_sha256: str) -> str | None:
    """Latest run whose policy has this fingerprint (None: tracking off or no such run)."""
    if not enabled():
        return None
    mlflow = _setup()
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        filter_string=f"tags.{POLICY_TAG} = '{policy_sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


def set_tags(tags: dict) -> None:
    if enabled():
        import mlflow

        mlflow.set_tags(tags)


def log_metrics(metrics: dict, step: int | None = None) -> None:
    if enabled():
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
