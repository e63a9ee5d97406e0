"""A small Ray Tune search end to end: ASHA stops trials early, MLflow nests a run per trial under the
search's run, and the best trial's model is registered under the champion rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from gen_platform.tracking.registry import retrain_needed
from tests.integration.workspace import make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration
TRIALS, EPOCHS = 8, 2


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("tune"), {})
    for stage in ("prepare", "validate", "features"):
        run(["genp", stage], ws)
    return ws


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_search_registers_the_best_trial(workspace, family, ray_head):
    # GANs default to a 2-epoch grace period; this 2-epoch search lets ASHA judge after the first.
    result = run(["genp", "tune", "--family", family, "--trials", str(TRIALS), "--epochs", str(EPOCHS),
                  "-s", "tune.grace_epochs=1"], workspace, env=ray_head)
    summary = json.loads((workspace / "reports" / "tune.json").read_text())
    # Every trial is accounted for: it ran all its epochs or ASHA stopped it; none failed.
    assert summary["trials"] == TRIALS and summary["trials_failed"] == 0
    assert summary["trials_finished"] + summary["trials_stopped"] == TRIALS and summary["trials_stopped"] >= 1
    assert summary["trial_epochs"] < TRIALS * EPOCHS  # early stopping saved compute
    assert summary["metric"] == ("val_neg_elbo" if family == "vae" else "val_fd")
    assert "best trial" in result.stdout and "0 failed" in result.stdout
    # trials ran in fewer processes than trials: a process whose trial ended ran the next one (reuse_actors)
    results = (workspace / "ray_results" / f"tune-{summary['parent_run_id']}").glob("*/result.json")
    pids = {json.loads(line)["pid"] for path in results for line in path.read_text().splitlines()}
    assert 1 <= len(pids) < TRIALS, pids

    client = mlflow_client(workspace)
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == TRIALS
    assert sum(child.data.tags["asha_stopped"] == "True" for child in children) == summary["trials_stopped"]
    assert {child.info.status for child in children} == {"FINISHED"}
    assert all(child.data.tags["data_version"] == parent.data.tags["data_version"] for child in children)
    best = client.get_run(parent.data.tags["best_run_id"])
    assert best.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {"eval/fd", "eval/kid", "val/" + summary["metric"].removeprefix("val_")} <= set(best.data.metrics)  # scored like a trained model
    assert "model_card.md" in {a.path for a in client.list_artifacts(best.info.run_id)}
    assert best.data.tags["data_version"] == parent.data.tags["data_version"] != "untracked"
    assert "search.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    version = client.get_model_version(f"{family}-digits", summary["registration"]["version"])
    assert version.run_id == best.info.run_id
    champion = client.get_model_version_by_alias(f"{family}-digits", "champion")
    assert str(champion.version) == summary["registration"]["version"]  # the first search of the family
    # A tuned champion carries the lineage of a trained one, so the nightly retrain skips on the same data.
    assert not retrain_needed(f"{family}-digits", parent.data.tags["data_version"])[0]
    lineage = json.loads(run(["genp", "lineage", f"{family}-digits@champion", "--json"], workspace).stdout)
    assert lineage["search"] == {"parent_run_id": parent.info.run_id, "trial_id": best.data.tags["trial_id"]}
    assert lineage["data"]["md5"] == parent.data.tags["data_version"] and lineage["code"]["git_commit"]
    assert lineage["validation"]["report"].endswith("/lineage/validation.html")  # the search's, on its parent
    assert {"val/" + summary["metric"].removeprefix("val_"), "eval/fd"} <= set(lineage["metrics"])


def test_second_search_never_installs_a_worse_champion(workspace, ray_head):
    """A one-epoch, two-trial search cannot match the champion of the eight-trial search above: the case
    is checked first, then the rule."""
    client = mlflow_client(workspace)
    before = client.get_model_version_by_alias("vae-digits", "champion")
    run(["genp", "tune", "--family", "vae", "--trials", "2", "--epochs", "1"], workspace, env=ray_head)
    summary = json.loads((workspace / "reports" / "tune.json").read_text())
    after = client.get_model_version_by_alias("vae-digits", "champion")
    assert summary["best_value"] > float(before.tags["val_neg_elbo"])  # the challenger is worse
    assert after.version == before.version and not summary["registration"]["promoted"]


def _search_runs(client, experiment_id):
    return client.search_runs([experiment_id], "tags.search = 'true'")


def test_a_killed_search_resumes_in_its_parent_run(workspace):
    client = mlflow_client(workspace)
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    before = {run.info.run_id for run in _search_runs(client, experiment_id)}
    args = ["genp", "tune", "--family", "vae", "--trials", "8", "--epochs", "3", "-s", "tune.seed=7"]
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}}
    driver = subprocess.Popen(args, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:  # until Tune has saved a search state that holds three trials
            new = [run for run in _search_runs(client, experiment_id) if run.info.run_id not in before]
            states = list((workspace / "ray_results").glob(f"tune-{new[0].info.run_id}/experiment_state-*.json")) if new else []
            if states and len(json.loads(states[0].read_text())["trial_data"]) >= 3:
                break
            assert time.monotonic() < deadline and driver.poll() is None, "the search did not get going"
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started die together
        driver.wait()
    parent_id = new[0].info.run_id
    assert client.get_run(parent_id).info.status == "RUNNING"
    time.sleep(2)

    result = run(args + ["--resume"], workspace)
    assert f"resuming the search of {parent_id}" in result.stdout
    summary = json.loads((workspace / "reports" / "tune.json").read_text())
    assert summary["parent_run_id"] == parent_id and summary["trials"] == 8 and summary["trials_failed"] == 0
    assert {run.info.run_id for run in _search_runs(client, experiment_id)} - before == {parent_id}  # one parent
    assert client.get_run(parent_id).info.status == "FINISHED"
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    finished = [child for child in children if child.info.status == "FINISHED"]
    assert len({child.data.tags["trial_id"] for child in finished}) == len(finished) == 8
