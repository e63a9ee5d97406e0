"""Checkpoint storage is configured once per environment (a cluster's shared volume or bucket) or per run."""

from __future__ import annotations

from gen_platform.config import parse_params
from gen_platform.training.launcher import STORAGE_PATH, storage_path


def test_the_environment_names_the_storage_for_every_run(monkeypatch, tmp_path):
    params = parse_params({"train": {"storage_path": "ray_results"}})
    monkeypatch.delenv(STORAGE_PATH, raising=False)
    assert storage_path(params, tmp_path) == str(tmp_path / "ray_results")  # relative: inside the workspace
    monkeypatch.setenv(STORAGE_PATH, "s3://bucket/checkpoints")
    assert storage_path(params, tmp_path) == "s3://bucket/checkpoints"
    monkeypatch.setenv(STORAGE_PATH, "/mnt/checkpoints")
    assert storage_path(parse_params({"train": {"storage_path": "/elsewhere"}}), tmp_path) == "/mnt/checkpoints"
