"""The local stack: Prefect server, MLflow tracking server, a Ray head node, and the process serving the
deployments, all bound to 127.0.0.1. `up` waits for each to be healthy and prints the URLs; `down` stops
exactly the processes `up` started (recorded in <stack dir>/stack.json, with the environment a client needs).

    python infra/local/stack.py up|down        (make stack-up / make stack-down)
    python infra/local/stack.py up mlflow      only the named services (prefect, mlflow, ray; serve needs all)
    python infra/local/stack.py restart mlflow start a crashed or killed server again, on its port

Whenever the MLflow server starts, MLflow runs left RUNNING by processes of this machine that have died are
marked FAILED (gen_platform/tracking/owners.py).

Settings (environment): GENP_STACK_DIR (.stack), GENP_PREFECT_PORT (4200), GENP_MLFLOW_PORT (5000),
GENP_RAY_PORT (6380), GENP_RAY_DASHBOARD_PORT (8265), GENP_RAY_DASHBOARD_AGENT_PORT (52365, the agent that accepts
Ray jobs), GENP_RAY_CLIENT_PORT (10001), GENP_MLFLOW_STORE_DIR (the repository: its mlflow.db and
mlartifacts/, the store `make run` and `genp` use).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path.cwd()
STACK = Path(os.environ.get("GENP_STACK_DIR", ROOT / ".stack")).resolve()
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PORTS = {name: int(os.environ.get(f"GENP_{name.upper()}_PORT", default))
         for name, default in (("prefect", 4200), ("mlflow", 5000), ("ray", 6380), ("ray_dashboard", 8265),
                               # Ray's fixed defaults: a second Ray head on the machine (another stack, a test's)
                               # would find them taken, and without its agent's port it accepts no job
                               ("ray_dashboard_agent", 52365), ("ray_client", 10001))}
# Ray keeps sockets under its temp dir, whose path must stay short; one per stack directory.
# By default the repository's own MLflow store: runs of `make run`, `genp`, `dvc repro` and of the deployments
# land in one place.
STORE = Path(os.environ.get("GENP_MLFLOW_STORE_DIR", ROOT)).resolve()
RAY_TEMP = Path("/tmp") / f"genp-stack-{hashlib.sha256(str(STACK).encode()).hexdigest()[:8]}"


def urls() -> dict[str, str]:
    return {"prefect": f"http://{HOST}:{PORTS['prefect']}", "mlflow": f"http://{HOST}:{PORTS['mlflow']}",
            "ray": f"{HOST}:{PORTS['ray']}", "ray_dashboard": f"http://{HOST}:{PORTS['ray_dashboard']}"}


def client_env() -> dict[str, str]:
    """What a process needs to use the stack: Prefect API, MLflow server, Ray cluster (token-authenticated)."""
    return {"PREFECT_API_URL": urls()["prefect"] + "/api", "MLFLOW_TRACKING_URI": urls()["mlflow"],
            "RAY_ADDRESS": urls()["ray"], "RAY_AUTH_MODE": "token",
            # A loopback-only Ray head (and its clients): without this Ray replaces 127.0.0.1 with the
            # machine's address and binds agents, metrics and workers on every interface.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_TOKEN_PATH": str(STACK / "ray_auth_token"),
            "RAY_API_SERVER_ADDRESS": urls()["ray_dashboard"]}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"}}
    env.update(PREFECT_HOME=str(STACK / "prefect"), PREFECT_UI_STATIC_DIRECTORY=str(STACK / "prefect" / "ui"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_URL=urls()["prefect"],
               # The browser UI calls this API address (it would assume port 4200 otherwise).
               PREFECT_UI_API_URL=urls()["prefect"] + "/api",
               # SQLite-busy answers (503, retried by clients) are otherwise invisible in prefect.log.
               PREFECT_API_LOG_RETRYABLE_ERRORS="true", **extra)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return env


def _spawn(name: str, command: list[str], env: dict[str, str]) -> int:
    log = open(STACK / "logs" / f"{name}.log", "ab")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    return process.pid


def _wait_http(url: str, what: str, timeout: float = 180, expect: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                body = response.read()
                if response.status == 200 and (expect is None or expect in body):
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not become healthy at {url} within {timeout:.0f} s; see {STACK / 'logs'}")


def _wait_deployments(names: list[str], since: float, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    api = urls()["prefect"] + "/api"
    while time.monotonic() < deadline:
        ready = 0
        for name in names:
            try:
                with urllib.request.urlopen(f"{api}/deployments/name/{name}", timeout=3) as response:
                    deployment = json.loads(response.read())
                polled = deployment.get("last_polled")
                fresh = polled and datetime.fromisoformat(polled.replace("Z", "+00:00")).timestamp() >= since - 5
                ready += bool(fresh and not deployment.get("paused"))
            except (OSError, urllib.error.URLError, ValueError):
                pass
        if ready == len(names):
            return
        time.sleep(1)
    raise SystemExit(f"deployments {names} were not served within {timeout:.0f} s; see {STACK / 'logs' / 'serve.log'}")


SERVICES = ("prefect", "mlflow", "ray", "serve")  # in start order; serve needs the other three


def _start(name: str, state: dict) -> None:
    pids = state["pids"]
    if name == "prefect":
        pids["prefect"] = _spawn("prefect", [str(BIN / "prefect"), "server", "start", "--host", HOST,
                                             "--port", str(PORTS["prefect"]), "--analytics-off"], _env())
    elif name == "mlflow":
        pids["mlflow"] = _spawn("mlflow", [str(BIN / "mlflow"), "server", "--host", HOST, "--port",
                                           str(PORTS["mlflow"]), "--backend-store-uri", f"sqlite:///{STORE / 'mlflow.db'}",
                                           "--artifacts-destination", str(STORE / "mlartifacts"), "--workers", "1"],
                                # without MLflow's server-side GenAI jobs: never used here, eight processes (a runner
                                # and seven consumers)
                                _env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    elif name == "ray":
        ray_env = _env(**{k: v for k, v in client_env().items() if k.startswith(("RAY_AUTH", "RAY_ENABLE"))
                          or k == "RAY_API_SERVER_ADDRESS"},
                       RAY_USAGE_STATS_ENABLED="0")
        # In a session of its own: every daemon `ray start` leaves behind stays in its process group, which `down`
        # stops whole (the agents re-title themselves and the client server never names the temp dir).
        started = subprocess.Popen([str(BIN / "ray"), "start", "--head", f"--port={PORTS['ray']}",
                                    f"--temp-dir={RAY_TEMP}", f"--node-ip-address={HOST}", f"--dashboard-host={HOST}",
                                    f"--dashboard-port={PORTS['ray_dashboard']}",
                                    f"--dashboard-agent-listen-port={PORTS['ray_dashboard_agent']}",
                                    f"--ray-client-server-port={PORTS['ray_client']}", "--disable-usage-stats"],
                                   env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        (STACK / "logs" / "ray.log").write_text(started.communicate()[0])
        state["ray_process_group"] = started.pid
        if started.returncode != 0:
            raise SystemExit(f"Ray head failed to start; see {STACK / 'logs' / 'ray.log'}")
    else:
        pids["serve"] = _spawn("serve", [str(BIN / "python"), "-m", "flows.serve"],
                               _env(**client_env(), PREFECT_RUNNER_POLL_FREQUENCY="2",
                                    PREFECT_RESULTS_PERSIST_BY_DEFAULT="true"))


def _await(names: list[str], since: float) -> None:
    if "prefect" in names:
        _wait_http(urls()["prefect"] + "/api/health", "Prefect server", expect=b"true")
    if "mlflow" in names:
        _wait_http(urls()["mlflow"] + "/health", "MLflow server")
        # runs left RUNNING by processes that died (with the server, or while it was down) are marked FAILED
        subprocess.run([str(BIN / "python"), "-m", "gen_platform.tracking.owners", "--tracking-uri", urls()["mlflow"]],
                       cwd=ROOT, env=_env(), check=True)
    if "serve" in names:
        _wait_deployments(["train/train", "tune/tune", "retrain/retrain"], since)


def _record(state: dict) -> None:
    (STACK / "stack.json").write_text(json.dumps(state, indent=2))


def up(names: list[str]) -> None:
    """Start `names` (default: every service). serve needs the other three."""
    if (STACK / "stack.json").exists():
        raise SystemExit(f"a stack is already recorded in {STACK / 'stack.json'}; run `make stack-down` first")
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        raise SystemExit(f"unknown service(s) {unknown}; choose from {list(SERVICES)}")
    names = [name for name in SERVICES if name in names] if names else list(SERVICES)
    if "serve" in names and names != list(SERVICES):
        raise SystemExit("serve needs prefect, mlflow and ray: start them all (`up` with no names)")
    (STACK / "logs").mkdir(parents=True, exist_ok=True)
    token = STACK / "ray_auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    state = {"services": names, "pids": {}, "ray_temp_dir": str(RAY_TEMP), "urls": urls(),
             "client_env": {k: v for k, v in client_env().items() if k.split("_")[0].lower() in names}}
    servers = [name for name in names if name in {"prefect", "mlflow"}]
    since = time.time()
    for name in servers:
        _start(name, state)
    _record(state)
    if "ray" in names:  # `ray start` returns once the head is up, while the two servers boot
        _start("ray", state)
        _record(state)
    _await(servers, since)
    if "serve" in names:
        since = time.time()
        _start("serve", state)
        _record(state)
        _await(["serve"], since)
    print("stack is up (logs in %s):" % (STACK / "logs"))
    for name, url in urls().items():
        if name.startswith(tuple(names)):
            print(f"  {name:14s} {url}")
    print("use it from a shell: " + " ".join(f"{k}={v}" for k, v in state["client_env"].items()))


def restart(name: str) -> None:
    """Start one recorded server again (after it crashed or was killed), on its port; it is stopped first if it
    still runs."""
    record = STACK / "stack.json"
    if not record.exists():
        raise SystemExit(f"no stack recorded in {record}; run `make stack-up` first")
    state = json.loads(record.read_text())
    if name not in {"prefect", "mlflow"} or name not in state["pids"]:
        raise SystemExit(f"restart takes a server of this stack: {sorted(set(state['pids']) & {'prefect', 'mlflow'})}")
    _stop_groups([state["pids"][name]])
    _start(name, state)
    _record(state)
    _await([name], time.time())
    print(f"{name} is up again at {urls()[name]}")


def _group_members(group: int) -> list[int]:
    """The processes of process group `group` that still run (zombies left out: nothing here reaps them)."""
    if not Path("/proc").is_dir():  # not Linux: only whether the group has any process left, zombies included
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _, process_group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(process_group) == group and state != "Z":
                members.append(int(entry.name))
    return members


def _stop_groups(pids: list[int], timeout: float = 20) -> None:
    """SIGTERM to each process group, SIGKILL to those still alive after `timeout` seconds."""
    alive = [pid for pid in pids if _group_members(pid)]
    for pid in alive:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:  # ended since
            pass
    deadline = time.monotonic() + timeout
    while any(_group_members(pid) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def down() -> None:
    record = STACK / "stack.json"
    if not record.exists():
        print(f"no stack recorded in {record}")
        return
    state = json.loads(record.read_text())
    # serve first, alone: it cancels its runs and pauses schedules through the Prefect server; then the two
    # servers together (each takes 2-3 s to stop)
    for names in (("serve",), ("prefect", "mlflow")):
        _stop_groups([state["pids"][name] for name in names if state["pids"].get(name) is not None])
    if "ray" in state.get("services", SERVICES):
        # Ray's daemons are not our children: they are the process group `ray start` began (gcs_server ignores
        # SIGTERM, hence the short grace)
        if group := state.get("ray_process_group"):  # absent from a record an older version wrote
            _stop_groups([group], timeout=3)
        # and any process that left the group but names this stack's temp dir (a worker in a session of its own)
        subprocess.run(["pkill", "-KILL", "-f", state["ray_temp_dir"]], check=False)
    record.unlink()
    print("stack is down")


if __name__ == "__main__":
    command, names = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("up", [])
    if command == "up":
        up(names)
    elif command == "restart" and len(names) == 1:
        restart(names[0])
    elif command == "down" and not names:
        down()
    else:
        raise SystemExit("usage: stack.py up [prefect|mlflow|ray|serve ...] | restart prefect|mlflow | down")
