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


def test_experiments_are_model_training_ones_and_links_open_that_view(tmp_path, monkeypatch):
    """A new experiment carries the model-training kind; one made before the tag existed gets it when next used;
    a run's link opens the model-training view (MLflow 3 opens its GenAI overview otherwise)."""
    import mlflow

    from gen_platform.tracking.links import EXPERIMENT_KIND_TAG, MODEL_TRAINING, run_page
    from gen_platform.tracking.store import use_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    created = use_experiment(tmp_path, "digits")
    client = mlflow.MlflowClient()
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    older = client.create_experiment("older")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    assert use_experiment(tmp_path, "older") == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING

    with mlflow.start_run(experiment_id=created) as run:
        pass
    page = run_page(run.info.run_id)
    assert page.startswith(f"http://127.0.0.1:5000/#/experiments/{created}/runs/{run.info.run_id}"
                           "?workflowType=machine_learning (after `mlflow ui --backend-store-uri sqlite:///")
