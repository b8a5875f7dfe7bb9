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
