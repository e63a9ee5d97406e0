"""One workspace per flow run: `<repo>/runs/<flow-run-id>/`, so that runs started at the same moment (from the
UI, the schedule, a data-change trigger) never read or write each other's files.

A run workspace holds its own `data.dvc` and `data/raw/<dataset>.npz`: the repository's current ones, or the
ones recorded at a git revision, read through DVC's API from the cache (or the remote: GENP_DVC_REMOTE where it is
set, see gen_platform/data/remote.py). Nothing in the
repository's working tree changes. Prepared data, models, metrics and reports of the run live under it; its
results live in MLflow. When a run ends, finished workspaces beyond the newest `GENP_KEEP_RUNS` (default 10)
are removed; a running one is never touched.

A workspace records the process that runs it. One whose process died without marking it (SIGKILL, an
out-of-memory kill, a killed serve process) is marked `crashed` as soon as anything lists the workspaces (the
serve process does when it starts, every run does when it ends) and is pruned like any finished one. A retried
flow run (the same id) takes its workspace back, and its training resumes from the last checkpoint.

    python -m flows.workspaces [--keep N]      list the run workspaces, then prune finished ones beyond N
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from gen_platform.data.manifest import RAW_DIR, DatasetManifest, manifest_path, raw_path
from gen_platform.data.remote import dvc_remote_config
from gen_platform.errors import ConfigError
from gen_platform.tracking.owners import process_gone, this_process
from gen_platform.workspace import Workspace, write_json

RUNS_DIR = "runs"
STATUS_FILE = "run.json"
FINISHED = {"completed", "failed", "crashed"}


def keep_runs() -> int:
    return int(os.environ.get("GENP_KEEP_RUNS", "10"))


def _git_show(repo: Path, revision: str, path: str) -> str:
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=repo, capture_output=True, text=True)
    if shown.returncode != 0:
        raise ConfigError(f"data_revision: {revision!r} does not resolve to a commit with {path} in {repo}")
    return shown.stdout


def _revision_files(repo: Path, revision: str | None) -> Any:
    """The data of `revision` as a filesystem (DVC's, through the git history and the cache); None: the working
    tree's data/raw, the version data.dvc tracks now."""
    if revision is None:
        return None
    from dvc.api import DVCFileSystem

    _git_show(repo, revision, "data.dvc")  # names a bad revision plainly
    return DVCFileSystem(str(repo), rev=revision, config=dvc_remote_config())


def _datasets_in(repo: Path, files: Any) -> list[str]:
    if files is None:
        names = [path.name for path in (repo / RAW_DIR).glob("*.npz")]
    else:
        names = [Path(path).name for path in files.ls(RAW_DIR.as_posix(), detail=False)] if files.exists(
            RAW_DIR.as_posix()) else []
    return sorted(name.removesuffix(".npz") for name in names if name.endswith(".npz"))


def datasets_at(repo: Path, revision: str | None = None) -> list[str]:
    """The datasets in the DVC-tracked data at `revision` (default: the current data): data/raw/<name>.npz."""
    return _datasets_in(repo, _revision_files(repo, revision))


def dataset_manifest(repo: Path, dataset: str, revision: str | None = None) -> DatasetManifest:
    """The manifest of `dataset` at `revision`; a dataset absent there is refused naming those present."""
    repo = Path(repo).resolve()
    files = _revision_files(repo, revision)
    present = _datasets_in(repo, files)
    where = f"data revision {revision!r}" if revision else "the current data (data/raw)"
    if dataset not in present:
        raise ConfigError(f"dataset: {dataset!r} is not in {where}; datasets there: {', '.join(present) or 'none'} "
                          "(add one with `genp data import` or `genp data import-folder`, then `dvc add data/raw`)")
    if files is None:
        return DatasetManifest.read(repo, dataset)
    manifest = manifest_path(Path(), dataset)
    if not files.exists(manifest.as_posix()):
        raise ConfigError(f"data_revision: {revision!r} has no {manifest.as_posix()} (its data was imported before "
                          "datasets had manifests); train a revision whose data has one")
    return DatasetManifest.parse(files.read_text(manifest.as_posix()), f"{manifest.as_posix()} at {revision!r}")


def _materialise_data(repo: Path, root: Path, dataset: str, revision: str | None) -> None:
    """The dataset's array file and its manifest beside it (`dataset_manifest` has checked they exist)."""
    paths = [raw_path(Path(), dataset), manifest_path(Path(), dataset)]
    (root / RAW_DIR).mkdir(parents=True, exist_ok=True)
    files = _revision_files(repo, revision)
    if files is None:
        if (repo / "data.dvc").exists():
            shutil.copy2(repo / "data.dvc", root / "data.dvc")
        for path in paths:
            shutil.copy2(repo / path, root / path)
        return
    (root / "data.dvc").write_text(_git_show(repo, revision, "data.dvc"))
    for path in paths:
        files.get_file(path.as_posix(), str(root / path))


def _status(root: Path) -> dict:
    """The workspace's record; a `running` one whose process is gone is marked `crashed` (on disk too)."""
    try:
        record = json.loads((root / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {"status": "unknown"}
    if record["status"] == "running" and process_gone(record.get("owner", "")):
        record |= {"status": "crashed", "finished": time.time()}
        write_json(root / STATUS_FILE, record)
    return record


@contextlib.contextmanager
def run_workspace(repo: str | Path, run_id: str, dataset: str, revision: str | None = None) -> Iterator[Workspace]:
    """The workspace of flow run `run_id` with its data in place; marked completed or failed on exit, after
    which older finished workspaces are pruned. A retried flow run (same id) finds its own directory again,
    so an interrupted training resumes from its checkpoints."""
    repo = Path(repo).resolve()
    root = repo / RUNS_DIR / run_id
    root.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "dataset": dataset, "data_revision": revision, "started": time.time(),
              "owner": this_process()}
    write_json(root / STATUS_FILE, record | {"status": "running"})
    status = "failed"
    try:
        _materialise_data(repo, root, dataset, revision)
        print(f"run workspace {root}")
        yield Workspace.at(root, repo, run_id)
        status = "completed"
    finally:
        write_json(root / STATUS_FILE, record | {"status": status, "finished": time.time()})
        prune(repo, keep_runs())


def list_runs(repo: Path) -> list[tuple[Path, dict]]:
    """Run workspaces, newest first."""
    runs_dir = repo / RUNS_DIR
    found = [(path, _status(path)) for path in runs_dir.iterdir() if path.is_dir()] if runs_dir.exists() else []
    return sorted(found, key=lambda item: item[1].get("started", 0), reverse=True)


def prune(repo: Path, keep: int) -> list[Path]:
    """Remove finished run workspaces beyond the newest `keep`; running (or unreadable) ones stay."""
    finished = [path for path, status in list_runs(repo) if status["status"] in FINISHED]
    removed = finished[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def crashed_runs(repo: Path) -> list[Path]:
    """The workspaces whose process died before it could mark them (marked `crashed` on the way)."""
    return [path for path, status in list_runs(repo) if status["status"] == "crashed"]


def main() -> None:
    parser = argparse.ArgumentParser(description="List run workspaces and prune finished ones.")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--keep", type=int, default=keep_runs(), help="finished workspaces to keep")
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    for path, status in list_runs(repo):
        print(f"{status['status']:10s} {path}")
    for path in prune(repo, args.keep):
        print(f"removed    {path}")


if __name__ == "__main__":
    main()
