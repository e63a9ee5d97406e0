"""The stack's MLflow server dies while a training runs (killed with SIGKILL, as a crash or an out-of-memory kill
would): the run never hangs. It either gets every epoch into MLflow once the server is back, or fails within the
configured time naming the server, registers nothing, and leaves a run that the restarted stack marks FAILED and
that the next training resumes from its checkpoint (test_fault_tolerance.py). Promotion is serialised across a SQLite URI and the HTTP
server of the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest

from bench._stack_client import local_stack
from tests.integration.workspace import make_workspace, run

pytestmark = pytest.mark.integration
EPOCHS = 5

# Rank 0 waits at the start of epoch 2 until the test has killed the server (a file barrier); the hook is defined
# in the driver's __main__, so Ray ships it to the workers by value.
DRIVER = """
import time
from pathlib import Path
from gen_platform.config import load_params
from gen_platform.stages import train
from gen_platform.training.hooks import EpochHook
from gen_platform.workspace import Workspace

class WaitBeforeEpochTwo(EpochHook):
    def __init__(self, folder):
        self.folder = Path(folder)

    def on_epoch_start(self, state):
        if state.rank == 0 and state.epoch == 1 and not state.resumed:
            (self.folder / "at-epoch-2").touch()
            deadline = time.monotonic() + 300
            while not (self.folder / "server-killed").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

train(load_params("params.yaml"), Workspace.at("."), hooks=(WaitBeforeEpochTwo(Path.cwd().resolve()),))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A prepared workspace and the stack's MLflow server alone, serving the workspace's store."""
    ws = make_workspace(tmp_path_factory.mktemp("outage"), {"train": {"epochs": EPOCHS, "num_workers": 1}})
    for stage in ("prepare", "validate", "features"):
        run(["genp", stage], ws)
    with local_stack(ws, ws / ".stack", services=("mlflow",)) as urls:
        yield ws, urls["mlflow"]


def _env(ws: Path, uri: str, **extra: str) -> dict[str, str]:
    drop = {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "MLFLOW_TRACKING_URI": uri,
            "GENP_STACK_DIR": str(ws / ".stack"), "GENP_MLFLOW_PORT": uri.rsplit(":", 1)[1], **extra}


def _kill_server(ws: Path) -> None:
    pid = json.loads((ws / ".stack" / "stack.json").read_text())["pids"]["mlflow"]
    os.killpg(pid, signal.SIGKILL)  # the server and its workers, with no chance to finish anything


def _restart_server(ws: Path, uri: str) -> str:
    restarted = subprocess.run([sys.executable, "infra/local/stack.py", "restart", "mlflow"], cwd=ws,
                               env=_env(ws, uri), capture_output=True, text=True, timeout=180)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    return restarted.stdout


class Driver:
    """The training process, its output collected line by line so the test can wait for a line."""

    def __init__(self, ws: Path, env: dict[str, str]):
        for name in ("at-epoch-2", "server-killed"):
            (ws / name).unlink(missing_ok=True)
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ws, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, predicate, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.process.poll() is None or predicate(), f"the driver ended before {what}:\n{self.output}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output}"
            time.sleep(0.2)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout)
        self.reader.join(10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _kill_at_epoch_two(ws: Path, driver: Driver) -> None:
    driver.wait_for(lambda: (ws / "at-epoch-2").exists(), "epoch 2")
    _kill_server(ws)
    (ws / "server-killed").touch()


def _steps(client: mlflow.MlflowClient, run_id: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, "val/neg_elbo"))


def test_epochs_logged_during_an_outage_reach_the_restarted_server(server):
    ws, uri = server
    driver = Driver(ws, _env(ws, uri))
    _kill_at_epoch_two(ws, driver)
    # epochs 2..5 train while the server is down; then the driver waits for it, and says so
    driver.wait_for(lambda: "waits up to 120 s for it" in driver.output, "the driver to wait for the server")
    _restart_server(ws, uri)
    assert driver.finish() == 0, driver.output
    assert f"the MLflow tracking server {uri} is back" in driver.output
    run_id = json.loads((ws / "models" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert _steps(client, run_id) == list(range(1, EPOCHS + 1))  # nothing lost, nothing twice


def test_an_outage_beyond_the_timeout_fails_the_run_and_registers_nothing(server):
    ws, uri = server
    (ws / "models" / "mlflow_run.json").unlink(missing_ok=True)
    client = mlflow.MlflowClient(uri)
    versions_before = len(client.search_model_versions("name='vae-digits'"))
    driver = Driver(ws, _env(ws, uri, GENP_TRACKING_OUTAGE_TIMEOUT_S="5"))
    _kill_at_epoch_two(ws, driver)
    assert driver.finish(timeout=240) != 0, driver.output  # ends by itself: no hang
    assert f"TrackingUnavailable: the MLflow tracking server {uri} was unreachable for 5 s" in driver.output
    run_id = json.loads((ws / "models" / "train_in_progress.json").read_text())["run_id"]
    assert not (ws / "models" / "mlflow_run.json").exists()  # the stages after train have nothing to work on
    # the server comes back: the stack marks the run its dead process left RUNNING as FAILED
    assert f"MLflow run {run_id}" in _restart_server(ws, uri)
    failed = client.get_run(run_id)
    assert failed.info.status == "FAILED" and "ended while the run was RUNNING" in failed.data.tags["genp.failure"]
    assert len(client.search_model_versions("name='vae-digits'")) == versions_before  # nothing registered
    # (running `genp train` again resumes it from its checkpoint: test_fault_tolerance.py and the killed flow run
    # in test_stack.py show that for a run whose process died)


# One registration of a constructed model; `hold` makes it wait inside the promotion step (after reading the
# champion, before moving the alias) until the test releases it.
REGISTER = """
import sys, time
from pathlib import Path
import mlflow
from gen_platform.evaluation.bootstrap import Comparison
from gen_platform.tracking.registry import register_and_promote

uri, model_dir, value, barrier, hold = sys.argv[1:6]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("promotion-lock")

def compare_with(champion_version):
    if hold == "hold":
        (Path(barrier) / "inside").touch()
        deadline = time.monotonic() + 300
        while not (Path(barrier) / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    return Comparison("val_nll", float(value), float(value) + 1.0, 0.5, 1.5, 0.95, 100, 100)

with mlflow.start_run():
    decision = register_and_promote(Path(model_dir), "lock-test", "champion", "val_nll", float(value), compare_with)
print("DECISION", decision.version, decision.champion_version, decision.promoted, flush=True)
"""


def test_promotion_is_serialised_between_the_sqlite_uri_and_the_http_server(server, tmp_path):
    """A holds the lock through the HTTP server, B arrives through the SQLite file of the same store: B must wait
    (and say so), then compare with A's version, not with the champion A replaced."""
    from dataclasses import asdict

    from gen_platform.checkpoint import save_checkpoint
    from gen_platform.models.vae import ConvVAE, VAEArchitecture

    ws, uri = server
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    model_dir = save_checkpoint(tmp_path / "model", {"model": model.state_dict()}, asdict(model.architecture), "vae")
    sqlite = f"sqlite:///{ws / 'mlflow.db'}"
    env = _env(ws, uri)

    def register(through: str, value: float, hold: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", REGISTER, through, str(model_dir), str(value), str(tmp_path),
                                 hold], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def decision(process: subprocess.Popen) -> list[str]:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output
        return next(line for line in output.splitlines() if line.startswith("DECISION")).split()[1:]

    first = decision(register(sqlite, 30.0, "no"))  # the champion both will compare with
    holder = register(uri, 29.0, "hold")
    deadline = time.monotonic() + 180
    while not (tmp_path / "inside").exists():
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()[0]
        time.sleep(0.1)
    waiter = register(sqlite, 28.0, "no")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(waiter.stdout), daemon=True)
    reader.start()
    while not any("waiting for the promotion lock of lock-test, held by" in line for line in lines):
        assert waiter.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.1)
    (tmp_path / "release").touch()
    held = decision(holder)
    assert waiter.wait(300) == 0, "".join(lines)
    reader.join(10)
    waited = next(line for line in lines if line.startswith("DECISION")).split()[1:]
    assert held == [held[0], first[0], "True"]  # A compared with the first champion and took the alias
    assert waited == [waited[0], held[0], "True"]  # B compared with A's version: it waited for A's decision
    client = mlflow.MlflowClient(uri)
    assert str(client.get_model_version_by_alias("lock-test", "champion").version) == waited[0]
    assert not client.search_registered_models("name='lock-test.promotion-lock'")  # released
