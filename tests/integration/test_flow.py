"""The Prefect flow runs the same stages as `dvc repro`, without a Prefect server, in a workspace of its own,
and registers a model."""

from __future__ import annotations

import pytest

from gen_platform.data.arrays import load_npz
from tests.data_changes import removed_class, resized_source, shifted_colour
from tests.integration.workspace import (commit_data_version, commit_new_data_version, make_workspace,
                                         mlflow_client, run)

pytestmark = pytest.mark.integration


@pytest.fixture()
def prefect_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_the_training_flow_registers_a_champion_and_the_retrain_stops_on_drift_until_it_is_accepted(
        tmp_path, prefect_home):
    """The train flow registers a champion, whose registration accepts the data it trained on. Then three
    constructed data versions, each made only of valid images, are each refused by the event-triggered retrain
    for their drift; once the last one is accepted with `genp data accept`, the retrain trains on it and
    registers."""
    import ray

    from flows.parameters import RetrainRequest, TrainRequest
    from flows.training_flow import retrain_flow, train_flow
    from flows.workspaces import list_runs
    from gen_platform.errors import ValidationFailed
    from gen_platform.tracking.accepted_data import accepted_profile
    from gen_platform.tracking.lineage import data_version

    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 1}})
    request = TrainRequest(overrides={"model": {"vae": {"beta": 2.0}}, "train": {"num_workers": 1}})
    try:
        decision = train_flow(request, root=str(workspace))
        assert decision["promoted"] and decision["model_name"] == "vae-digits"
        run_root = workspace / "runs" / decision["workspace"].rsplit("/", 1)[-1]
        assert decision["workspace"] == str(run_root) and (run_root / "reports" / "validation.html").exists()
        for shared in ("data/prepared", "models", "metrics", "reports"):  # the repository's own tree is untouched
            assert not (workspace / shared).exists(), shared
        client = mlflow_client(workspace)
        champion = client.get_model_version_by_alias("vae-digits", "champion")
        params = client.get_run(champion.run_id).data.params
        assert params["model.vae.beta"] == "2.0" and params["train.num_workers"] == "1"
        first, by = accepted_profile(client, "vae-digits")
        assert by == f"registration of version {decision['version']}" and first.data_version == data_version(workspace)

        digits = load_npz(workspace / "data" / "raw" / "digits.npz")
        for change, named in [(shifted_colour, r"drift: [^;]*column=channel_0_mean"),
                              (removed_class, r"drift: [^;]*column=class_3_fraction"),
                              (resized_source, r"drift: [^;]*column=sharpness")]:
            commit_data_version(workspace, change(digits), change.__name__)
            with pytest.raises(ValidationFailed, match=named):
                retrain_flow(RetrainRequest(), root=str(workspace))
            refused, status = list_runs(workspace)[0]
            assert status["status"] == "failed" and not (refused / "models").exists()
            docs = (refused / "gx" / "uncommitted" / "data_docs" / "local_site").rglob("*.html")
            assert any("drift" in page.read_text() for page in docs)
        assert len(client.search_model_versions("name='vae-digits'")) == 1  # nothing trained on drifted data

        accepted = run(["genp", "data", "accept", "--reason", "a new camera"], workspace).stdout
        assert "accepted data version" in accepted and "vae-digits" in accepted
        assert accepted_profile(client, "vae-digits")[1] == "genp data accept: a new camera"
        outcome = retrain_flow(RetrainRequest(), root=str(workspace))
    finally:
        ray.shutdown()
    assert outcome["retrained"] and len(client.search_model_versions("name='vae-digits'")) == 2
    now, by = accepted_profile(client, "vae-digits")
    assert now.data_version == data_version(workspace)
    assert by == f"registration of version {outcome['registration']['version']}"
    assert now.sharpness < first.sharpness * 0.75  # the blurrier source is what the next versions are compared with


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
