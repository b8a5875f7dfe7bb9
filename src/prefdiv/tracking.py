"""MLflow tracking: one store per repository, one run per trained policy.

Default store: SQLite `mlflow.db` at the repository root (git-ignored). DVC runs queued and
`--temp` experiments in copies under `<repo>/.dvc/tmp/exps/…`, so the URI is resolved to the
*original* repository's file by absolute path, or those runs would vanish with the copy.
`MLFLOW_TRACKING_URI` overrides; `PREFDIV_TRACKING=0` turns tracking off (tests do).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from prefdiv import errors

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

    # MLflow logs a failing store's traceback itself; :func:`_warn` says it in one line instead.
    if os.environ.get(errors.DEBUG) != "1":
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    lock = Path(uri.removeprefix("sqlite:///") + ".lock") if uri.startswith("sqlite:///") else None
    with FileLock(lock) if lock else contextlib.nullcontext():
        mlflow.set_experiment(EXPERIMENT)
    return mlflow


_warned = False


def _warn(what: str, e: Exception) -> None:
    """Tracking never costs results: a store that fails (locked, read-only, corrupt, unreachable)
    gets one warning line (the first failure of the process) and the stage goes on without it."""
    global _warned
    if _warned:
        return
    _warned = True
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # SQLAlchemy leads with context; the driver's own line ("(sqlite3.X) …") says what went wrong.
    reason = next((line for line in lines if "Error)" in line), lines[0] if lines else "")
    print(
        f"prefdiv: warning: MLflow {what} failed, results are unaffected: "
        f"{type(e).__name__}: {reason[:200]}",
        file=sys.stderr,
    )


@contextlib.contextmanager
def _guarded(what: str):
    """The body's store failure becomes :func:`_warn`'s line; the stage goes on."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - any store failure; the results come first
        _warn(what, e)


@contextlib.contextmanager
def run(*, tags: dict, params: dict, run_id: str | None = None, active: bool = True):
    """An active MLflow run (resumed when `run_id` exists in the store); yields its id or None.

    `active=False` (a DDP process other than the main one) records nothing and yields None; so
    does a store that cannot be written (one warning line).
    """
    if not (active and enabled()):
        yield None
        return
    try:
        import mlflow

        _setup()
        if run_id is not None:
            try:
                mlflow.get_run(run_id)
            except mlflow.exceptions.MlflowException:  # a model pulled from a remote, another store
                run_id = None
        name = os.environ.get("DVC_EXP_NAME") or None
        started = mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
        mlflow.set_tags(
            {"git_commit": _git_commit(), **({"dvc_exp": name} if name else {}), **tags}
        )
        if params:
            mlflow.log_params(params)
    except Exception as e:  # noqa: BLE001 - any store failure; the results come first
        _warn("tracking", e)
        with contextlib.suppress(Exception):
            mlflow.end_run(status="FAILED")  # a NameError when mlflow itself failed to import
        yield None
        return
    status = "FAILED"
    try:
        yield started.info.run_id
        status = "FINISHED"
    finally:
        with _guarded("end of run"):
            mlflow.end_run(status=status)


def fingerprint(model_dir: str | Path) -> str:
    """sha256 of a model directory's weights (`*.safetensors`, sorted by name)."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def find_run(policy_sha256: str) -> str | None:
    """Latest run whose policy has this fingerprint (None: tracking off, no such run, or a store
    that cannot be read)."""
    if not enabled():
        return None
    runs = []
    with _guarded("search"):
        runs = _setup().search_runs(
            experiment_names=[EXPERIMENT],
            filter_string=f"tags.{POLICY_TAG} = '{policy_sha256}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
    return runs[0].info.run_id if runs else None


def set_tags(tags: dict) -> None:
    if enabled() and _active():
        import mlflow

        with _guarded("set_tags"):
            mlflow.set_tags(tags)


def log_metrics(metrics: dict, step: int | None = None) -> None:
    if enabled() and _active():
        import mlflow

        with _guarded("log_metrics"):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def hf_callback():
    """transformers' `MLflowCallback` (logs the training curve into the active run), except that a
    store failing mid-training warns once and stops logging instead of stopping the training."""
    import re
    import time

    import torch
    from mlflow.entities import Metric
    from transformers.integrations import MLflowCallback

    class SafeMLflowCallback(MLflowCallback):
        failed = False

        def setup(self, args, state, model):
            # transformers logs every TrainingArguments field and the model's config as params.
            # Some share a name with the study's own (`label_smoothing`: TRL's, 0, since cDPO's
            # ε lives in our loss), and MLflow rejects a whole batch of 100 params when one of
            # them would change a value: our names keep our values, the rest land.
            ml = self._ml_flow
            run = ml.active_run()
            own = set(ml.MlflowClient().get_run(run.info.run_id).data.params) if run else set()
            self._ml_flow = _ParamsExcept(ml, own)
            try:
                super().setup(args, state, model)
            finally:
                self._ml_flow = ml
            # transformers logs asynchronously; a run killed before the queue drained would lose
            # the points logged before its last checkpoint, which the resumed run does not redo.
            self._async_log = False
            self._pending = []  # (metrics, step, ms timestamp), written in one batch per flush

        def on_log(self, args, state, control, logs, model=None, **kwargs):
            # A store transaction per step (logging_steps = 1) cost more than the step's own
            # bookkeeping: the points wait here and go in one batch before each checkpoint is
            # written (the step's log comes before its save, and a kill right after the save
            # must not lose them: a resumed run does not redo those steps), at each evaluation
            # and at the end, stamped with the time they were logged. Names and values as
            # MLflowCallback's.
            if not self._initialized:
                self.setup(args, state, model)
            if state.is_world_process_zero:
                stamp = int(time.time() * 1000)
                for k, v in logs.items():
                    if isinstance(v, torch.Tensor) and v.numel() == 1:
                        v = v.item()
                    if isinstance(v, (int, float)):
                        name = re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k)
                        self._pending.append(Metric(name, float(v), stamp, state.global_step))
                if control.should_save or control.should_training_stop:
                    self.flush()

        def flush(self):
            points, self._pending = getattr(self, "_pending", []), []
            if points:
                run_id = self._ml_flow.active_run().info.run_id
                client = self._ml_flow.MlflowClient()
                for i in range(0, len(points), 1000):  # MLflow's limit per batch
                    client.log_batch(run_id, metrics=points[i : i + 1000])

        def on_save(self, args, state, control, **kwargs):
            self.flush()
            return super().on_save(args, state, control, **kwargs)

        def on_evaluate(self, args, state, control, **kwargs):
            self.flush()

        def on_train_end(self, args, state, control, **kwargs):
            self.flush()
            return super().on_train_end(args, state, control, **kwargs)

    def guard(name):
        method = getattr(SafeMLflowCallback, name)

        def call(self, *args, **kwargs):
            if self.failed:
                return None
            try:
                return method(self, *args, **kwargs)
            except Exception as e:  # noqa: BLE001
                self.failed = True
                _warn(f"logging ({name})", e)
                return None

        return call

    for name in {*vars(MLflowCallback), *vars(SafeMLflowCallback)}:
        if name.startswith("on_") or name == "setup":
            setattr(SafeMLflowCallback, name, guard(name))
    return SafeMLflowCallback()


class _ParamsExcept:
    """The `mlflow` module, whose `log_params` leaves out the names in `skip`."""

    def __init__(self, mlflow, skip: set[str]):
        self._mlflow, self._skip = mlflow, skip

    def __getattr__(self, name):
        return getattr(self._mlflow, name)

    def log_params(self, params: dict, **kwargs):
        kept = {k: v for k, v in params.items() if k not in self._skip}
        return self._mlflow.log_params(kept, **kwargs) if kept else None


def _active() -> bool:
    """Whether a run is open (not one that a failing store, or a missing mlflow, left unopened)."""
    try:
        import mlflow
    except ImportError:
        return False
    return mlflow.active_run() is not None
