"""A small Ray Tune search end to end: ASHA stops trials early, MLflow nests a run per trial under the
search's run, and the best trial's model is registered under the champion rule."""

from __future__ import annotations

import json

import pytest

from tests.integration.workspace import make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration
TRIALS, EPOCHS = 6, 2


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("tune"), {})
    for stage in ("prepare", "validate", "features"):
        run(["genp", stage], ws)
    return ws


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_search_registers_the_best_trial(workspace, family):
    # GANs default to a 2-epoch grace period; this 2-epoch search lets ASHA judge after the first.
    result = run(["genp", "tune", "--family", family, "--trials", str(TRIALS), "--epochs", str(EPOCHS),
                  "-s", "tune.grace_epochs=1"], workspace)
    summary = json.loads((workspace / "reports" / "tune.json").read_text())
    assert summary["trials"] == TRIALS and summary["stopped_early"] >= 1
    assert summary["trial_epochs"] < TRIALS * EPOCHS  # early stopping saved compute
    assert summary["metric"] == ("val_neg_elbo" if family == "vae" else "val_fd")
    assert "best trial" in result.stdout

    client = mlflow_client(workspace)
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == TRIALS
    assert sum(child.data.tags["asha_stopped"] == "True" for child in children) == summary["stopped_early"]
    best = client.get_run(parent.data.tags["best_run_id"])
    assert best.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {"fd", "kid", summary["metric"]} <= set(best.data.metrics)  # scored like a trained model
    assert "model_card.md" in {a.path for a in client.list_artifacts(best.info.run_id)}
    assert best.data.tags["data_version"] == parent.data.tags["data_version"] != "untracked"
    assert "search.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    version = client.get_model_version(f"{family}-digits", summary["registration"]["version"])
    assert version.run_id == best.info.run_id
    champion = client.get_model_version_by_alias(f"{family}-digits", "champion")
    assert str(champion.version) == summary["registration"]["version"]  # the first search of the family


def test_second_search_never_installs_a_worse_champion(workspace):
    client = mlflow_client(workspace)
    before = client.get_model_version_by_alias("vae-digits", "champion")
    run(["genp", "tune", "--family", "vae", "--trials", "2", "--epochs", "1"], workspace)
    summary = json.loads((workspace / "reports" / "tune.json").read_text())
    after = client.get_model_version_by_alias("vae-digits", "champion")
    champion_value = float(before.tags["val_neg_elbo"])
    if summary["best_value"] < champion_value:
        assert str(after.version) == summary["registration"]["version"]
    else:
        assert after.version == before.version and not summary["registration"]["promoted"]
