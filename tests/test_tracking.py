from pathlib import Path

from prefdiv import tracking


def test_repo_root_sees_through_dvc_experiment_copies(tmp_path):
    exp = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    exp.mkdir(parents=True)
    assert tracking.repo_root(exp) == (tmp_path / "repo").resolve()
    assert tracking.repo_root(tmp_path) == tmp_path.resolve()


def test_default_uri_is_absolute_sqlite_in_the_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpx"
    exp.mkdir(parents=True)
    uri = tracking.tracking_uri(exp)
    assert uri == f"sqlite:///{(tmp_path / 'repo').resolve() / 'mlflow.db'}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example:5000")
    assert tracking.tracking_uri(exp) == "http://example:5000"


def test_parallel_first_runs_share_one_fresh_store(tmp_path):
    """Three queue workers starting at once on a store that does not exist yet all land."""
    import os
    import subprocess
    import sys

    code = (
        "from prefdiv import tracking\n"
        "with tracking.run(tags={'loss': 'x'}, params={'i': 1}):\n"
        "    tracking.log_metrics({'m': 1.0})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PREFDIV_TRACKING"] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == tracking.EXPERIMENT]
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_evaluates_calls_on_a_corrupt_store_warn_and_go_on(tmp_path, monkeypatch, capsys):
    """What `evaluate` calls (find_run, run, log_metrics) on a store that is not a database."""
    monkeypatch.setattr(tracking, "_warned", False)
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database" * 100)
    monkeypatch.setenv("PREFDIV_TRACKING", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert tracking.find_run("abc") is None
    with tracking.run(tags={"loss": "x"}, params={}, run_id=None) as run_id:
        tracking.log_metrics({"m": 1.0})
        tracking.set_tags({"t": "1"})
    assert run_id is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "results are unaffected" in err[0], err  # one line per process


def test_training_points_wait_for_a_checkpoint_then_land_in_one_batch(tmp_path, monkeypatch):
    """The MLflow callback keeps the per-step points until a checkpoint, an evaluation or the end,
    then writes them all, with their steps, as MLflowCallback named them."""
    import mlflow
    from transformers import TrainerControl, TrainerState, TrainingArguments

    monkeypatch.setenv("PREFDIV_TRACKING", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    with tracking.run(tags={"loss": "x"}, params={}) as run_id:
        cb = tracking.hf_callback()
        cb.on_train_begin(args, state, control)
        client = mlflow.MlflowClient()
        for step in (1, 2, 3):
            state.global_step = step
            cb.on_log(args, state, control, logs={"loss": 0.5 / step, "rewards/margins": 1.0})
        assert client.get_metric_history(run_id, "loss") == []  # not written yet
        cb.on_save(args, state, control)
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
            (1, 0.5), (2, 0.25), (3, 0.5 / 3)
        ]  # fmt: skip
        state.global_step = 4
        cb.on_log(args, state, control, logs={"eval_loss": 0.7, "epoch": 1.0})
        cb.on_train_end(args, state, control)
        assert [m.value for m in client.get_metric_history(run_id, "eval_loss")] == [0.7]
        assert len(client.get_metric_history(run_id, "rewards/margins")) == 3
        # a save step's points are written in its log, before the checkpoint itself: a kill
        # right after the checkpoint loses none of them (tests/test_resume.py)
        state.global_step, control.should_save = 5, True
        cb.on_log(args, state, control, logs={"loss": 0.1})
        assert [m.step for m in client.get_metric_history(run_id, "loss")][-1] == 5


def test_the_trainers_params_never_overwrite_the_studys(tmp_path, monkeypatch):
    """transformers logs TRL's DPOConfig as params, `label_smoothing` = 0 among them (cDPO's ε
    lives in our loss); MLflow refused the whole batch of 100 that held it beside the study's
    `label_smoothing` = 0.15, and a cDPO run lacked those params. The study's names keep the
    study's values; every other field of the config lands."""
    import mlflow
    from transformers import TrainerControl, TrainerState
    from trl import DPOConfig

    monkeypatch.setenv("PREFDIV_TRACKING", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = DPOConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, seed=7)
    ours = {"loss": "cdpo", "label_smoothing": 0.15, "seed": 0}
    with tracking.run(tags={"loss": "cdpo"}, params=ours) as run_id:
        cb = tracking.hf_callback()
        cb.on_train_begin(args, TrainerState(), TrainerControl())
        mlflow.flush_async_logging()
        logged = mlflow.MlflowClient().get_run(run_id).data.params
    assert not cb.failed
    assert {k: logged[k] for k in ours} == {"loss": "cdpo", "label_smoothing": "0.15", "seed": "0"}
    theirs = {k for k, v in args.to_dict().items() if len(str(v)) <= 250}  # MLflow's limit
    assert theirs - set(ours) <= set(logged), sorted(theirs - set(logged) - set(ours))
    assert logged["learning_rate"] == str(args.learning_rate)
