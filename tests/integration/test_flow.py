"""The Prefect flow runs the same stages as `dvc repro`, without a Prefect server, and registers a model."""

from __future__ import annotations

import pytest

from tests.integration.workspace import make_workspace, mlflow_client

pytestmark = pytest.mark.integration


@pytest.fixture()
def prefect_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_training_flow_registers_a_champion(tmp_path, prefect_home):
    import ray

    from flows.parameters import TrainRequest
    from flows.training_flow import train_flow

    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 2}})
    request = TrainRequest(overrides={"model": {"vae": {"beta": 2.0}}, "train": {"num_workers": 1}})
    try:
        decision = train_flow(request, root=str(workspace))
    finally:
        ray.shutdown()
    assert decision["promoted"] and decision["model_name"] == "vae-digits"
    client = mlflow_client(workspace)
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["model.beta"] == "2.0" and run.data.params["train.num_workers"] == "1"
    assert (workspace / "reports" / "validation.html").exists()


def test_flow_rejects_a_bad_parameter_before_any_work(tmp_path, prefect_home):
    from flows.parameters import TrainRequest
    from flows.training_flow import train_flow
    from gen_platform.errors import ConfigError

    workspace = make_workspace(tmp_path / "ws", {})
    with pytest.raises(ConfigError, match=r"train\.epochs: .*greater than or equal to 1"):
        train_flow(TrainRequest(overrides={"train": {"epochs": 0}}), root=str(workspace))
    assert not (workspace / "data" / "prepared").exists() and not (workspace / "mlflow.db").exists()
