"""Driving the local stack (`infra/local/stack.py`) over HTTP, for the stack tests and the load benchmark:
start and stop it on free ports, create flow runs through the Prefect API and wait for them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Iterator

from gen_platform.training.loopback import free_loopback_port

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _group_members(group: int) -> list[int]:
    """Processes of process group `group` that still run (zombies are not)."""
    import psutil

    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _served(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def local_stack(root: Path, stack_dir: Path, services: tuple[str, ...] = (), python: str = sys.executable,
                **settings: str) -> Iterator[dict]:
    """`stack.py up` (of `services`, default all) for the repository at `root` on free ports, with `settings`
    (GENP_* variables) in its environment; yields the servers' URLs and, under "client_env", the environment a
    process needs to use the stack; `down` on exit, which must leave nothing behind: no process naming `stack_dir`,
    none of the Ray head's process group, nothing serving one of the stack's ports. The stack's processes run
    with `python`'s environment (another clone's virtual environment, say)."""
    ports = {f"GENP_{name}_PORT": str(free_loopback_port())
             for name in ("PREFECT", "MLFLOW", "RAY", "RAY_DASHBOARD", "RAY_DASHBOARD_AGENT", "RAY_CLIENT")}
    env = {**os.environ, **ports, **settings, "GENP_STACK_DIR": str(stack_dir)}
    command = [python, str(root / "infra" / "local" / "stack.py")]
    started = subprocess.run(command + ["up", *services], cwd=root, env=env, capture_output=True, text=True, timeout=400)
    urls = {"prefect": f"http://127.0.0.1:{ports['GENP_PREFECT_PORT']}",
            "mlflow": f"http://127.0.0.1:{ports['GENP_MLFLOW_PORT']}"}
    try:
        if started.returncode != 0:
            raise RuntimeError(f"stack.py up failed:\n{started.stdout}\n{started.stderr}")
        yield {**urls, "client_env": json.loads((stack_dir / "stack.json").read_text())["client_env"]}
    finally:
        record = stack_dir / "stack.json"
        group = json.loads(record.read_text()).get("ray_process_group") if record.exists() else None
        subprocess.run(command + ["down"], cwd=root, env=env, timeout=120)
        leftovers = subprocess.run(["pgrep", "-f", str(stack_dir)], capture_output=True, text=True).stdout.split()
        if group:  # Ray's daemons: the agents and the client server never name the stack's directory
            leftovers += [str(pid) for pid in _group_members(group)]
        leftovers += [f"a process serving port {port}" for port in ports.values() if _served(int(port))]
        if leftovers:
            raise RuntimeError(f"processes left behind by the stack in {stack_dir}: {leftovers}")


def api(base: str, method: str, path: str, body: dict | None = None, attempts: int = 6):
    """One Prefect API call, retried as Prefect's own client does: the server answers 503 when its SQLite
    database is briefly busy (the serve process and running flows write to it too) and rolls the request back."""
    request = urllib.request.Request(f"{base}/api{path}", method=method, headers={"Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(2 ** attempt)


def create_run(base: str, deployment: str, parameters: dict) -> dict:
    found = api(base, "GET", f"/deployments/name/{deployment}")
    return api(base, "POST", f"/deployments/{found['id']}/create_flow_run", {"parameters": parameters})


def wait(base: str, flow_run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = api(base, "GET", f"/flow_runs/{flow_run_id}")
        if flow_run["state_type"] in TERMINAL:
            return flow_run
        time.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s")


def run_together(base: str, deployment: str, requests: list[dict], timeout: float) -> list[dict]:
    """Create one flow run per request back to back (the serve process sees them all queued), then wait for all."""
    created = [create_run(base, deployment, parameters) for parameters in requests]
    deadline = time.monotonic() + timeout
    return [wait(base, flow_run["id"], max(1.0, deadline - time.monotonic())) for flow_run in created]


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def artifact(base: str, flow_run_id: str, key: str) -> str:
    """An artifact's data; unlike logs, which Prefect ships in the background, artifacts exist once the run ends."""
    artifacts = api(base, "POST", "/artifacts/filter",
                    {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}})
    if len(artifacts) != 1:
        raise AssertionError(f"flow run {flow_run_id} has {len(artifacts)} artifacts keyed {key!r}")
    return artifacts[0]["data"]


def reported_mlflow_run(base: str, flow_run_id: str) -> str:
    """The MLflow run id that a train run's report artifact names."""
    report = artifact(base, flow_run_id, "run-report")
    line = next(line for line in report.splitlines() if line.startswith("- MLflow run:"))
    return line.split("[", 1)[1].split("]", 1)[0] if "[" in line else line.split("`")[1]


def logs(base: str, flow_run_id: str) -> str:
    entries = api(base, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    return "\n".join(entry["message"] for entry in entries)
