"""A stage's driver run on a Ray cluster through Ray's Jobs API, the supported way to run Train and Tune drivers
on a remote cluster (Ray Client, `ray://`, is not).

The job runs `genp <stage>` on the cluster's head against the same workspace path, so the workspace must be on
storage the head shares with the caller (infra/k8s: the `gen-platform-workspace` volume at /mnt/workspace; on one
machine, the same directory). The caller follows the job: its log lines are printed as they come, its end state
becomes the call's outcome, and a caller that is stopped (an exception, SIGTERM on a cancelled flow run) stops
the job before it re-raises, so no driver trains on for a run nobody waits for.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import yaml

from gen_platform.config import PipelineParams
from gen_platform.errors import GenPlatformError
from gen_platform.workspace import Workspace

JOBS_ADDRESS = "GENP_RAY_JOBS_ADDRESS"  # the Ray dashboard's URL, e.g. http://raycluster-head-svc:8265
STOP_WAIT_S = 30
SUBMIT_WAIT_S = 120


def jobs_address() -> str | None:
    """Where stages are submitted as Ray jobs (None: they run in this process)."""
    return os.environ.get(JOBS_ADDRESS) or None


def _entrypoint(stage: str, params: PipelineParams, ws: Workspace) -> str:
    # beside the run's data: `load_params` reads the dataset's manifest from the file's directory
    params_file = ws.root / f"{stage}.job-params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    command = ["genp", stage, "--params", str(params_file), "--root", str(ws.root), "--repo", str(ws.repo)]
    if ws.run_id:
        command += ["--run-id", ws.run_id]
    return shlex.join(command)


def _job_env() -> dict[str, str]:
    """What the job's driver needs from this process: the tracking server and MLflow's client settings. The
    driver's `ray.init` forwards some of the same variables to its workers, and Ray refuses a job whose runtime
    env and its driver's name one key twice unless told to merge them (the driver's values win: the same ones)."""
    return {"PYTHONUNBUFFERED": "1", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
            **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}}


def run_stage_as_job(address: str, stage: str, params: PipelineParams, ws: Workspace, poll_s: float = 1.0) -> str:
    """Submit `genp <stage>` for `ws` to the Ray cluster at `address`, print its logs until it ends, and return
    its id; GenPlatformError when it fails or is stopped. Each submission of a workspace gets the next free id
    (`genp-<stage>-<workspace>-<n>`), so a retried flow run's job sits beside the one it retries."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    prefix = f"genp-{stage}-{Path(ws.root).name}-"
    taken = {job.submission_id for job in client.list_jobs() if (job.submission_id or "").startswith(prefix)}
    job_id = next(f"{prefix}{n}" for n in range(1, len(taken) + 2) if f"{prefix}{n}" not in taken)
    entrypoint = _entrypoint(stage, params, ws)
    _submit(client, entrypoint=entrypoint, submission_id=job_id, runtime_env={"env_vars": _job_env()},
            metadata={"stage": stage, "workspace": str(ws.root), "flow_run_id": ws.run_id or ""})
    print(f"Ray job {job_id} submitted to {address}: {entrypoint}", flush=True)
    shown = 0
    try:
        while True:
            status = client.get_job_status(job_id)
            logs = client.get_job_logs(job_id)
            if len(logs) > shown:
                print(logs[shown:].rstrip("\n"), flush=True)
                shown = len(logs)
            if status == JobStatus.SUCCEEDED:
                return job_id
            if status in (JobStatus.FAILED, JobStatus.STOPPED):
                info = client.get_job_info(job_id)
                raise GenPlatformError(f"Ray job {job_id} ({stage}) ended {status.value}: {info.message}")
            time.sleep(poll_s)
    except BaseException:
        _stop(client, job_id)
        raise


def _submit(client, **job) -> None:
    """Ray answers "No available agent to submit job, please try again later" until the head's job agent is up
    (a head that just started, or one the autoscaler brought back): it is retried for up to SUBMIT_WAIT_S."""
    deadline = time.monotonic() + SUBMIT_WAIT_S
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as error:
            if "try again later" not in str(error) or time.monotonic() > deadline:
                raise GenPlatformError(f"could not submit Ray job {job['submission_id']}: {error}") from error
            time.sleep(2)


def _stop(client, job_id: str) -> None:
    """Stop the job if it still runs, and wait (bounded) until Ray reports it ended."""
    if client.get_job_status(job_id).is_terminal():
        return
    print(f"stopping Ray job {job_id}", flush=True)
    client.stop_job(job_id)
    deadline = time.monotonic() + STOP_WAIT_S
    while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not client.get_job_status(job_id).is_terminal():
        print(f"Ray job {job_id} did not stop within {STOP_WAIT_S} s", flush=True)
