"""One MLflow store per repository, whichever way a run starts."""

from __future__ import annotations

from gen_platform.tracking.store import store_root, tracking_uri


def test_a_dvc_temp_experiment_records_into_its_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert store_root(tmp_path / "repo") == tmp_path / "repo"
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC tells the stages of a temp experiment
    assert store_root(copy) == tmp_path / "repo"
    assert tracking_uri(copy) == tracking_uri(tmp_path / "repo") == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"


def test_a_remote_server_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
