"""Lineage: which data version and which code produced a run, as the tags every run carries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from gen_platform.config import PipelineParams
from gen_platform.workspace import Workspace


def data_version(root: Path, dvc_file: str = "data.dvc") -> str:
    """The md5 DVC recorded for data/raw in `data.dvc` ('untracked' if there is none)."""
    try:
        outs = yaml.safe_load((root / dvc_file).read_text())["outs"]
        return str(outs[0]["md5"])
    except (FileNotFoundError, KeyError, IndexError, TypeError):
        return "untracked"


def git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def lineage_tags(ws: Workspace, params: PipelineParams) -> dict[str, str]:
    """Tags of every run that trains (a training, a search and each of its trials): the data version of the
    workspace's own `data.dvc`, the repository's commit. Runs exist only after the validation gate passed, so
    `validation` is always `passed`."""
    return {"data_version": data_version(ws.root), "git_commit": git_commit(ws.repo), "validation": "passed",
            "dataset": params.data.dataset, "family": params.model.family}


def logged_params(params: PipelineParams) -> dict[str, object]:
    """The MLflow params of a training: data, split and train sections, and the chosen family's settings."""
    sections = {f"{section}.{key}": value for section in ("data", "split", "train")
                for key, value in getattr(params, section).model_dump().items()}
    return sections | params.model.logged()
