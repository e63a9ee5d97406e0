"""The train flow's training as a Ray job (Jobs API) on a Ray head on loopback (the local stack's, with token
authentication): the job's logs appear in the flow's output, the flow registers its model, and a flow that is
stopped as a cancelled run's process is (SIGTERM) leaves no job running."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.integration.workspace import make_workspace, mlflow_client

pytestmark = pytest.mark.integration

# Asked in a process of its own: Ray keeps one auth token per process, and this test process may have used others.
JOBS = """
import json, sys
from ray.job_submission import JobSubmissionClient
jobs = JobSubmissionClient(sys.argv[1]).list_jobs()
print(json.dumps([{"id": j.submission_id, "status": j.status.value, "metadata": j.metadata} for j in jobs]))
"""


def _flow_env(ray_head: dict, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"}}
    return env | {"PREFECT_HOME": str(tmp_path / "prefect"), "GENP_RAY_JOBS_ADDRESS": ray_head["RAY_API_SERVER_ADDRESS"],
                  "RAY_AUTH_MODE": ray_head["RAY_AUTH_MODE"], "RAY_AUTH_TOKEN_PATH": ray_head["RAY_AUTH_TOKEN_PATH"],
                  "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _jobs(env: dict, workspace) -> list[dict]:
    listed = subprocess.run([sys.executable, "-c", JOBS, env["GENP_RAY_JOBS_ADDRESS"]], env=env, capture_output=True,
                            text=True, check=True)
    return [job for job in json.loads(listed.stdout) if job["metadata"].get("workspace", "").startswith(str(workspace))]


def _running(processes: list[psutil.Process]) -> list[str]:
    """The command lines of those of `processes` still running (a zombie has ended: nothing here may reap it)."""
    running = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(" ".join(process.cmdline())[:160])
        except psutil.NoSuchProcess:
            continue
    return running


def test_a_train_flow_trains_as_a_ray_job_and_registers(ray_head, tmp_path):
    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 2, "num_workers": 1, "cpus_per_worker": 1}})
    env = _flow_env(ray_head, tmp_path)
    flow = subprocess.run([sys.executable, "-m", "flows.training_flow", "--root", str(workspace)], cwd=workspace,
                          env=env, capture_output=True, text=True, timeout=600)
    output = flow.stdout + flow.stderr
    assert flow.returncode == 0, output
    (job,) = _jobs(env, workspace)
    assert job["status"] == "SUCCEEDED" and job["id"].startswith("genp-train-")
    assert f"Ray job {job['id']} submitted" in output and "epoch 2/2" in output  # the job's log, in the flow's
    client = mlflow_client(workspace)
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    tags = client.get_run(champion.run_id).data.tags
    assert tags["flow_run_id"] == job["metadata"]["flow_run_id"] != ""  # lineage reaches the job's run
    assert len(tags["git_commit"]) >= 40


def test_a_stopped_flow_run_stops_its_ray_job(ray_head, tmp_path):
    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 200, "num_workers": 1, "cpus_per_worker": 1}})
    env = _flow_env(ray_head, tmp_path)
    flow = subprocess.Popen([sys.executable, "-m", "flows.training_flow", "--root", str(workspace)], cwd=workspace,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in flow.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any("epoch 1/200" in line for line in seen):  # the job's driver is training
            assert time.monotonic() < deadline and flow.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        started = psutil.Process(flow.pid).children(recursive=True)  # its temporary Prefect server among them
        assert any("prefect.server" in " ".join(child.cmdline()) for child in started), started
        flow.send_signal(signal.SIGTERM)  # what Prefect's runner sends a cancelled flow run's process
        flow.wait(timeout=120)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode != 0
    (job,) = _jobs(env, workspace)
    assert job["status"] == "STOPPED", job
    deadline = time.monotonic() + 30  # nothing the flow started runs on
    while (left := _running(started)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []
