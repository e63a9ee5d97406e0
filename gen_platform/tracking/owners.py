"""Which process a RUNNING MLflow run belongs to, and what to do with runs whose process is gone.

A process that dies (SIGKILL, an out-of-memory kill, a lost machine) cannot end its MLflow run, which would show
RUNNING for ever. Every run the platform opens carries an `genp.owner` tag (host, pid, the process's start time,
so a reused pid is not mistaken for the owner). When the platform next opens a run, and when the local stack
starts its MLflow server, RUNNING runs whose owner ran on this host and no longer exists are marked FAILED, with
a `genp.failure` tag saying why. Runs owned by another host are left alone: only that host can tell.

    python -m gen_platform.tracking.owners [--tracking-uri URI]    mark this host's orphaned runs FAILED
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import psutil

from gen_platform.startup import configure_process

OWNER_TAG = "genp.owner"
FAILURE_TAG = "genp.failure"


def _identity(pid: int) -> str | None:
    try:
        return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.2f}"
    except psutil.NoSuchProcess:
        return None


def this_process() -> str:
    """`host:pid:start time` of this process."""
    return _identity(os.getpid()) or ""


def owner_tags() -> dict[str, str]:
    """Tags that name this process as a run's owner."""
    return {OWNER_TAG: this_process()}


def process_gone(owner: str) -> bool:
    """Whether the process `owner` (from `this_process`) is known to have ended: it ran on this host and no
    process with its pid and start time exists. A process of another host is never known to be gone."""
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    return host == socket.gethostname() and pid.isdigit() and _identity(int(pid)) != owner


def fail_orphaned_runs(client) -> list[str]:
    """Mark FAILED every RUNNING run whose owning process on this host is gone; returns their ids."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(experiments, f"attributes.status = 'RUNNING' and tags.`{OWNER_TAG}` LIKE "
                                              f"'{socket.gethostname()}:%'", max_results=1000)
    failed = []
    for run in running:
        owner = run.data.tags[OWNER_TAG]
        if process_gone(owner):
            client.set_tag(run.info.run_id, FAILURE_TAG, f"its process ({owner}) ended while the run was RUNNING")
            client.set_terminated(run.info.run_id, "FAILED")
            print(f"MLflow run {run.info.run_id} ({run.info.run_name}) was left RUNNING by a process that no "
                  "longer exists: marked FAILED", flush=True)
            failed.append(run.info.run_id)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description="Mark MLflow runs left RUNNING by dead processes on this host FAILED.")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else ./mlflow.db")
    args = parser.parse_args()
    configure_process()
    from mlflow import MlflowClient

    from gen_platform.tracking.store import tracking_uri

    uri = args.tracking_uri or tracking_uri(Path.cwd())
    print(f"{len(fail_orphaned_runs(MlflowClient(uri)))} orphaned run(s) marked FAILED in {uri}")


if __name__ == "__main__":
    main()
