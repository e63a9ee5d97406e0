"""Data and checkpoints in S3-compatible object storage, as on a cluster whose pods share no disk with the machine
that made the data: `dvc push` to an S3 remote and `dvc pull` from it in a fresh clone; a flow run at a data
revision that only the remote holds (GENP_DVC_REMOTE), with its checkpoints in a bucket (GENP_STORAGE_PATH).
The store is moto's S3 server on loopback (the `s3_store` fixture). A driver resuming from checkpoints in a bucket
is tested in test_fault_tolerance.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from gen_platform.data.remote import DVC_REMOTE
from gen_platform.tracking.lineage import data_version
from gen_platform.training.launcher import STORAGE_PATH
from tests.integration.conftest import keys, make_bucket
from tests.integration.workspace import GIT, commit_new_data_version, make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration


def test_dvc_push_to_an_s3_remote_and_pull_in_a_fresh_clone(tmp_path, s3_store):
    client = make_bucket(s3_store, "dvc-remote")
    workspace = make_workspace(tmp_path / "ws", {})
    run(["dvc", "remote", "add", "--default", "bucket", "s3://dvc-remote/store"], workspace)
    run(["dvc", "commit", "-f", "data.dvc"], workspace)
    run(GIT + ["commit", "-qam", "data in the bucket"], workspace)
    run(["dvc", "push"], workspace, env=s3_store)
    assert keys(client, "dvc-remote", "store/files/md5/")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    assert not (clone / "data" / "raw").exists() and not (clone / ".dvc" / "cache").exists()
    run(["dvc", "pull", "data.dvc"], clone, env=s3_store)  # the data (dvc.lock also names pipeline outputs)
    for name in ("digits.npz", "digits.manifest.json"):
        assert (clone / "data" / "raw" / name).read_bytes() == (workspace / "data" / "raw" / name).read_bytes()


def test_a_flow_run_at_a_revision_only_the_remote_holds_trains_with_checkpoints_in_a_bucket(tmp_path, s3_store):
    client = make_bucket(s3_store, "cluster")
    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 1, "num_workers": 1, "cpus_per_worker": 1}})
    old, new = commit_new_data_version(workspace)
    (tmp_path / "old.dvc").write_text(old)
    old_version = data_version(tmp_path, "old.dvc")
    # both versions to the bucket, then out of this machine's cache: the repository's own remote (.dvc/config's
    # `local`) has never held them either, so only the bucket can serve the older one
    run(["dvc", "remote", "add", "bucket", "s3://cluster/dvc"], workspace)
    for version in (old, new):  # `dvc push data.dvc` sends the version data.dvc names, from the cache
        (workspace / "data.dvc").write_text(version)
        run(["dvc", "push", "--remote", "bucket", "data.dvc"], workspace, env=s3_store)
    shutil.rmtree(workspace / ".dvc" / "cache")
    assert not (workspace / ".dvc-storage").exists()

    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"}}
    env |= s3_store | {"PREFECT_HOME": str(tmp_path / "prefect"), DVC_REMOTE: "s3://cluster/dvc",
                       STORAGE_PATH: "s3://cluster/checkpoints"}
    older = run(["git", "rev-parse", "HEAD~1"], workspace).stdout.strip()
    flow = subprocess.run([sys.executable, "-m", "flows.training_flow", "--root", str(workspace),
                           "--data-revision", older], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=600)
    assert flow.returncode == 0, flow.stdout + flow.stderr

    mlflow = mlflow_client(workspace)
    champion = mlflow.get_model_version_by_alias("vae-digits", "champion")
    tags = mlflow.get_run(champion.run_id).data.tags
    assert tags["data_version"] == old_version != data_version(workspace)
    assert tags["ray_checkpoint"].startswith("s3://cluster/checkpoints/")
    assert any("/checkpoint_" in key for key in keys(client, "cluster", "checkpoints/"))
    assert not (workspace / "ray_results").exists()
