"""Lineage tags: which data version and which code produced a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


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
