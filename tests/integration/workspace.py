"""A throw-away working copy of the repository: its own git repo, DVC cache, MLflow store and Ray runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import yaml

from tests.conftest import REPO

GIT = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test"]


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_workspace(target: Path, params: dict) -> Path:
    """Copy the tracked (and new, not ignored) files, apply `params` overrides, commit, import digits."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    values = yaml.safe_load((target / "params.yaml").read_text())
    for section, fields in params.items():
        values[section].update(fields)
    (target / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    run(GIT + ["init", "-q"], target)
    run(GIT + ["add", "-A"], target)
    run(GIT + ["commit", "-qm", "workspace"], target)
    run(["genp", "data", "import", "digits"], target)
    return target


def mlflow_client(workspace: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)
