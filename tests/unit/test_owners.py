"""Runs left RUNNING by a process that died are marked FAILED; runs of live processes, and of other hosts, stay."""

import subprocess
import sys

import mlflow

from gen_platform.tracking.owners import FAILURE_TAG, OWNER_TAG, fail_orphaned_runs, owner_tags, process_gone


def test_only_runs_whose_process_on_this_host_died_are_marked_failed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "from gen_platform.tracking.owners import this_process; "
                           "print(this_process())"], capture_output=True, text=True, check=True).stdout.strip()
    assert process_gone(dead) and not process_gone(owner_tags()[OWNER_TAG])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("owners", artifact_location=(tmp_path / "artifacts").as_uri())
    runs = {name: client.create_run(experiment, tags={OWNER_TAG: owner}).info.run_id for name, owner in [
        ("dead", dead), ("alive", owner_tags()[OWNER_TAG]), ("elsewhere", "another-host:1:0.00")]}
    finished = client.create_run(experiment, tags={OWNER_TAG: dead}).info.run_id
    client.set_terminated(finished, "FINISHED")

    assert fail_orphaned_runs(client) == [runs["dead"]]
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"dead": "FAILED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    assert dead in client.get_run(runs["dead"]).data.tags[FAILURE_TAG]
    assert client.get_run(finished).info.status == "FINISHED"  # an ended run is never touched
    assert fail_orphaned_runs(client) == []  # once
