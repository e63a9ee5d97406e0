"""The Prefect flow runs the same stages as `dvc repro`, without a Prefect server, in a workspace of its own,
and registers a model."""

from __future__ import annotations

import pytest

from gen_platform.data.arrays import load_npz
from tests.integration.workspace import commit_new_data_version, make_workspace, mlflow_client, run

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
    run_root = workspace / "runs" / decision["workspace"].rsplit("/", 1)[-1]
    assert decision["workspace"] == str(run_root) and (run_root / "reports" / "validation.html").exists()
    for shared in ("data/prepared", "models", "metrics", "reports"):  # the repository's own tree is untouched
        assert not (workspace / shared).exists(), shared
    client = mlflow_client(workspace)
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["model.vae.beta"] == "2.0" and run.data.params["train.num_workers"] == "1"


def test_a_run_at_an_older_data_revision_reads_it_through_dvc_and_changes_nothing(tmp_path):
    from flows.workspaces import run_workspace
    from gen_platform.tracking.lineage import data_version

    workspace = make_workspace(tmp_path / "ws", {})
    old, new = commit_new_data_version(workspace)
    current_images = (workspace / "data" / "raw" / "digits.npz").read_bytes()
    with run_workspace(workspace, "at-old-revision", "digits", revision="HEAD~1") as run_ws:
        assert (run_ws.root / "data.dvc").read_text() == old and data_version(run_ws.root) != data_version(workspace)
        assert len(load_npz(run_ws.raw("digits"))) == len(load_npz(workspace / "data" / "raw" / "digits.npz")) - 50
    assert (workspace / "data.dvc").read_text() == new  # byte-identical: nothing was checked out
    assert (workspace / "data" / "raw" / "digits.npz").read_bytes() == current_images
    assert run(["git", "status", "--porcelain"], workspace).stdout == ""


def test_flow_rejects_a_bad_parameter_before_any_work(tmp_path, prefect_home):
    from flows.parameters import TrainRequest
    from flows.training_flow import train_flow
    from gen_platform.errors import ConfigError

    workspace = make_workspace(tmp_path / "ws", {})
    with pytest.raises(ConfigError, match=r"train\.epochs: .*greater than or equal to 1"):
        train_flow(TrainRequest(overrides={"train": {"epochs": 0}}), root=str(workspace))
    # a dataset the data does not hold, at the current revision or at an older one: named with those it holds
    with pytest.raises(ConfigError, match=r"dataset: 'pets' is not in the current data \(data/raw\); datasets "
                                          r"there: digits \("):
        train_flow(TrainRequest(dataset="pets"), root=str(workspace))
    run(["dvc", "commit", "-f", "data.dvc"], workspace)
    with pytest.raises(ConfigError, match=r"dataset: 'pets' is not in data revision 'HEAD'; datasets there: digits"):
        train_flow(TrainRequest(dataset="pets", data_revision="HEAD"), root=str(workspace))
    assert not (workspace / "data" / "prepared").exists() and not (workspace / "mlflow.db").exists()
    assert not (workspace / "runs").exists()
