"""Lineage: which data version and which code produced a run, as the tags every run carries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

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


# DVC rewrites dvc.lock and the metrics files while `dvc repro` runs: outputs, not a change to the code that ran.
BOOKKEEPING = ("dvc.lock", "metrics/")


def uncommitted_files(repo: Path) -> list[str]:
    """Tracked files that differ from the commit (DVC's bookkeeping aside)."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                            capture_output=True, text=True).stdout
    return sorted(name for line in status.splitlines() if not (name := line[3:].strip()).startswith(BOOKKEEPING))


def uncommitted_diff(repo: Path) -> str:
    files = uncommitted_files(repo)
    return subprocess.run(["git", "diff", "HEAD", "--", *files], cwd=repo, capture_output=True,
                          text=True).stdout if files else ""


def git_commit(repo: Path) -> str:
    """The commit, suffixed `-dirty` when tracked files (other than DVC's bookkeeping) were changed."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if uncommitted_files(repo) else "")


def lineage_tags(ws: Workspace, params: PipelineParams) -> dict[str, str]:
    """Tags of every run that trains (a training, a search and each of its trials): the data version of the
    workspace's own `data.dvc`, the repository's commit (and which files were uncommitted), the orchestrator
    run the workspace serves. Runs exist only after the validation gate passed, so `validation` is always
    `passed`."""
    tags = {"data_version": data_version(ws.root), "data_path": "data/raw", "git_commit": git_commit(ws.repo),
            "validation": "passed", "dataset": params.data.dataset, "family": params.model.family}
    uncommitted = uncommitted_files(ws.repo)
    if uncommitted:
        tags["git_uncommitted"] = ", ".join(uncommitted)[:4000]
    if ws.run_id:
        tags["flow_run_id"] = ws.run_id
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run` for its stages
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def log_dataset_input(dataset: Any, attempts: int = 3) -> None:
    """`mlflow.log_input` that survives a race in MLflow's store: it looks for the experiment's dataset of that
    name and digest, then inserts it when missing, so two runs that log the same data version at once (two
    trainings of the stack on one data version) can both miss it, and the later insert fails on the unique key.
    By then the dataset exists: logging again links it to this run."""
    import mlflow

    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context="training")
            return
        except mlflow.exceptions.MlflowException as error:
            if attempt == attempts or "unique constraint" not in str(error).lower() or "datasets" not in str(error):
                raise


def log_provenance(ws: Workspace, params: PipelineParams) -> None:
    """Into the active run: the dataset as an MLflow input (name, DVC md5 as digest, source = git revision +
    DVC path), and under `lineage/` the validation verdict and report the run was gated on and the
    uncommitted diff when the code was not committed."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    source = CodeDatasetSource({"git_commit": git_commit(ws.repo), "dvc_file": "data.dvc", "path": "data/raw",
                                "file": f"data/raw/{params.data.dataset}.npz"})
    log_dataset_input(MetaDataset(source, name=params.data.dataset, digest=data_version(ws.root)))

    for path in (ws.metrics("validation"), ws.report("validation.html")):
        if path.exists():
            mlflow.log_artifact(str(path), "lineage")
    diff = uncommitted_diff(ws.repo)
    if diff:
        mlflow.log_text(diff, "lineage/uncommitted.diff")


def run_name(params: PipelineParams) -> str:
    """Family, dataset and the hyperparameters the family searches over, e.g. `vae-digits model.vae.beta=1 ... e20`."""
    from gen_platform.models import get_family

    settings, family = params.model.settings, get_family(params.model.family)
    searched = [f"{family.parameter_name(key)}={value:g}" if isinstance(value, float)
                else f"{family.parameter_name(key)}={value}"
                for key in family.search_space() if (value := getattr(settings, key, None)) is not None]
    return " ".join([params.registered_model_name, *searched, f"e{params.train.epochs}"])


def logged_params(params: PipelineParams) -> dict[str, object]:
    """The MLflow params of a training: data, split and train sections, and the chosen family's settings."""
    sections = {f"{section}.{key}": value for section in ("data", "split", "train")
                for key, value in getattr(params, section).model_dump().items()}
    return sections | params.model.logged()
