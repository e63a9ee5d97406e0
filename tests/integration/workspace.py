"""A throw-away working copy of the repository: its own git repo, DVC cache, MLflow store and Ray runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import yaml

from gen_platform.data.arrays import ImageArrays, load_npz, write_npz
from gen_platform.data.manifest import DatasetManifest
from gen_platform.data.sources import BUILTIN_CLASS_NAMES

from tests.conftest import REPO

GIT = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test"]


def run(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`args` in `cwd` with the workspace's own MLflow store and a local Ray runtime, unless `env` (e.g. the
    `ray_head` fixture's) names others."""
    env = {**{k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}}, **(env or {})}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


# Where a test checks what a run does rather than how precisely its model is scored, evaluation draws fewer
# samples: the defaults (1000 images, 1000 resamples, 100 importance samples) cost about 15 s of CPU per run,
# and the stack's tests alone make a dozen runs.
QUICK_EVALUATION = {"metric_samples": 200, "bootstrap_resamples": 200, "nll_importance_samples": 10}


def pipeline_outputs(repo: Path) -> list[str]:
    """Every path dvc.yaml declares as a stage's output (outs, metrics, plots), relative to `repo`."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return sorted({next(iter(entry)) if isinstance(entry, dict) else entry
                   for stage in stages.values() for kind in ("outs", "metrics", "plots")
                   for entry in stage.get(kind, [])})


def source_files(repo: Path) -> list[str]:
    """What a test workspace is made of: the tracked files and new ones not ignored by git (work in progress),
    never a pipeline's outputs, which a user's `make run` leaves in the working tree (metrics/ is not ignored:
    DVC metrics are meant to be committed, and a user may have committed them)."""
    outputs = [Path(path) for path in pipeline_outputs(repo)]
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], repo).stdout.split()
    return sorted({name for name in listed
                   if not any(Path(name) == out or out in Path(name).parents for out in outputs)})


def make_workspace(target: Path, params: dict) -> Path:
    """Copy the repository's source files (`source_files`), apply QUICK_EVALUATION and then `params` overrides,
    commit, import digits (untracked, as after `genp data import digits`)."""
    for name in source_files(REPO):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    values = yaml.safe_load((target / "params.yaml").read_text())
    for section, fields in [("evaluate", QUICK_EVALUATION), *params.items()]:
        values[section].update(fields)
    (target / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    run(GIT + ["init", "-q"], target)
    run(GIT + ["add", "-A"], target)
    run(GIT + ["commit", "-qm", "workspace"], target)
    _import_digits(target)
    return target


_digits_files: dict[str, bytes] = {}


def _import_digits(target: Path) -> None:
    """`genp data import digits`, run for the first workspace of the test process; later ones get a copy of the
    files it wrote, the npz and its manifest (the command's process, with torch and scikit-learn to import, cost
    2.7 s of CPU each time)."""
    raw = target / "data" / "raw"
    if not _digits_files:
        run(["genp", "data", "import", "digits"], target)
        _digits_files.update({path.name: path.read_bytes() for path in raw.glob("digits.*")})
    else:
        raw.mkdir(parents=True, exist_ok=True)
        for name, content in _digits_files.items():
            (raw / name).write_bytes(content)


def mlflow_client(workspace: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def commit_data_version(workspace: Path, arrays: ImageArrays, message: str) -> tuple[str, str]:
    """Cache and commit the current digits (if not yet), then commit `arrays` as the next version of them, with
    its manifest: HEAD~1 holds the old one. Returns both data.dvc texts."""
    run(["dvc", "commit", "-f", "data.dvc"], workspace)
    if run(["git", "status", "--porcelain", "data.dvc"], workspace).stdout.strip():
        run(GIT + ["commit", "-qm", "current data", "data.dvc"], workspace)
    old = (workspace / "data.dvc").read_text()
    write_npz(workspace / "data" / "raw" / "digits.npz", arrays)
    DatasetManifest.describe("digits", arrays, BUILTIN_CLASS_NAMES["digits"], "built-in: digits").write(workspace)
    run(["dvc", "commit", "-f", "data.dvc"], workspace)
    run(GIT + ["commit", "-qm", message, "data.dvc"], workspace)
    return old, (workspace / "data.dvc").read_text()


def commit_new_data_version(workspace: Path) -> tuple[str, str]:
    """`commit_data_version` of the digits with transposed copies of 50 of them appended."""
    data = load_npz(workspace / "data" / "raw" / "digits.npz")
    # 50 transposed images drawn afresh for every size, so that versions rarely add the same image twice (the
    # suite tolerates 1 % duplicates; repeating a whole batch would exceed it).
    chosen = np.random.default_rng(len(data)).choice(len(data), 50, replace=False)
    new = ImageArrays(np.concatenate([data.images, np.swapaxes(data.images[chosen], 1, 2)]),
                      np.concatenate([data.labels, data.labels[chosen]]))
    return commit_data_version(workspace, new, "new data")
