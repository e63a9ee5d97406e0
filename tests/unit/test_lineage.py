"""Lineage recorded on a run: the dataset as an MLflow input, the validation it passed, and the exact code."""

from __future__ import annotations

import subprocess

import mlflow
import pytest

from gen_platform.config import parse_params
from gen_platform.tracking.lineage import git_commit, lineage_tags, log_provenance, uncommitted_files
from gen_platform.workspace import Workspace, write_json

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
DATA_DVC = "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n"


@pytest.fixture()
def repo(tmp_path):
    (tmp_path / "train.py").write_text("print('v1')\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "data.dvc").write_text(DATA_DVC)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"]):
        subprocess.run(GIT + command, cwd=tmp_path, check=True)
    return tmp_path


def test_dvc_bookkeeping_is_not_an_uncommitted_change_but_code_is(repo):
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what `dvc repro` does during a run
    assert uncommitted_files(repo) == [] and not git_commit(repo).endswith("-dirty")
    (repo / "train.py").write_text("print('v2')\n")
    assert uncommitted_files(repo) == ["train.py"] and git_commit(repo).endswith("-dirty")


def test_a_run_records_its_dataset_input_validation_and_uncommitted_diff(repo, tmp_path_factory):
    (repo / "train.py").write_text("print('v2')\n")
    ws = Workspace.at(repo, run_id="flow-run-1")
    write_json(ws.metrics("validation"), {"success": True, "expectations": []})
    params = parse_params({})
    store = tmp_path_factory.mktemp("store")
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    experiment = mlflow.create_experiment("lineage", artifact_location=(store / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment, tags=lineage_tags(ws, params)) as active:
        log_provenance(ws, params)
    run = mlflow.get_run(active.info.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "digits" and dataset_input.dataset.digest == "0123456789abcdef0123456789abcdef.dir"
    assert '"path": "data/raw"' in dataset_input.dataset.source
    assert run.data.tags["git_uncommitted"] == "train.py" and run.data.tags["flow_run_id"] == "flow-run-1"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "lineage")}
    assert artifacts == {"lineage/validation.json", "lineage/uncommitted.diff"}
    diff = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/lineage/uncommitted.diff")
    assert "+print('v2')" in diff
