"""A training as it runs: a lost worker costs at most one epoch; a lost driver resumes from the same storage path
(an S3 bucket) and MLflow run; a watcher sees per-epoch metrics while the run is RUNNING; a local DDP training listens on
loopback only. The tests share one prepared workspace and run in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gen_platform.training.launcher import STORAGE_PATH
from tests.conftest import REPO
from tests.integration.conftest import keys, make_bucket
from tests.integration.sockets import beyond_loopback, listening, process_trees
from tests.integration.workspace import make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration
EPOCHS = 4
WORKER_IMAGE_IMPORTS = REPO / "tests" / "worker_image"  # its sitecustomize.py


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # two DDP workers: the group loses one of them and restarts both from the checkpoint
    ws = make_workspace(tmp_path_factory.mktemp("faults"),
                        {"train": {"epochs": EPOCHS, "max_failures": 2, "num_workers": 2, "cpus_per_worker": 1}})
    for stage in ("prepare", "validate", "features"):
        run(["genp", stage], ws)
    return ws


def _runs(ws):
    client = mlflow_client(ws)
    experiment = client.get_experiment_by_name("digits")
    return client, client.search_runs([experiment.experiment_id])


# The hook is defined in the driver's __main__, so Ray ships it to the workers by value.
LOSE_A_WORKER = """
import os, time
from gen_platform.config import load_params
from gen_platform.stages import train
from gen_platform.training.hooks import EpochHook
from gen_platform.workspace import Workspace

class LoseLastWorker(EpochHook):
    def on_epoch_start(self, state):
        if state.epoch + 1 == 3 and not state.resumed and state.rank == state.world_size - 1:
            print("fault injection: worker process exits at the start of epoch 3", flush=True)
            time.sleep(1.0)  # let the controller take the previous epoch's report first
            os._exit(1)

train(load_params("params.yaml"), Workspace.at("."), hooks=(LoseLastWorker(),))
"""


def test_worker_loss_resumes_from_the_last_checkpoint(workspace):
    result = run([sys.executable, "-c", LOSE_A_WORKER], workspace)
    output = result.stdout + result.stderr
    assert "fault injection: worker process exits at the start of epoch 3" in output
    assert "resumed from the checkpoint of epoch 2" in output
    assert output.count("epoch 1/4") == 1 and output.count("epoch 4/4") == 1  # nothing repeated from zero
    for stage in ("evaluate", "register"):
        run(["genp", stage], workspace)

    client, runs = _runs(workspace)
    assert len(runs) == 1
    # each epoch once; epochs the lost group's rank 0 had not logged yet (it logs in the background) are filled
    # in by the driver after the training, so the history is not in epoch order
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val/neg_elbo"))
    assert steps == [1, 2, 3, 4]
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    assert champion.run_id == runs[0].info.run_id


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_driver_loss_resumes_the_same_run_from_checkpoints_in_object_storage(workspace, s3_store):
    """The checkpoints are in an S3 bucket (GENP_STORAGE_PATH, as a cluster's manifests set it): the killed driver
    wrote them there, and the new one finds and resumes from them there. Both drivers and their Ray workers import
    as on a node of the worker image (no DVC, Great Expectations, Prefect or MLflow server)."""
    client = make_bucket(s3_store, "driver-loss")
    in_progress = workspace / "models" / "train_in_progress.json"
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}}
    env |= s3_store | {STORAGE_PATH: "s3://driver-loss/checkpoints", "PYTHONPATH": str(WORKER_IMAGE_IMPORTS)}
    driver = subprocess.Popen(["genp", "train", "-s", "train.epochs=12"], cwd=workspace, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        run_id = _wait_for(lambda: in_progress.exists() and json.loads(in_progress.read_text())["run_id"], 120,
                           "the training run to start")
        checkpoints = lambda: {key.split("/")[2] for key in keys(client, "driver-loss", f"checkpoints/{run_id}/")
                               if key.split("/")[2].startswith("checkpoint_")}  # noqa: E731
        _wait_for(lambda: len(checkpoints()) >= 2, 180, "two checkpoints in the bucket")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started die together
        driver.wait()
    time.sleep(2)
    assert not (workspace / "ray_results" / run_id).exists()  # nothing of it on the local disk

    result = run(["genp", "train", "-s", "train.epochs=12"], workspace, env=env)
    output = result.stdout + result.stderr
    assert f"resuming the interrupted MLflow run {run_id}" in output
    assert "resumed from the checkpoint of epoch" in output and "epoch 1/12" not in output
    mlflow = mlflow_client(workspace)
    # each epoch once; the history is in logging order, and an epoch whose live logging failed is filled in last
    steps = sorted(m.step for m in mlflow.get_metric_history(run_id, "val/neg_elbo"))
    assert steps == list(range(1, 13))
    assert mlflow.get_run(run_id).info.status == "FINISHED" and not in_progress.exists()
    assert mlflow.get_run(run_id).data.tags["ray_checkpoint"].startswith(f"s3://driver-loss/checkpoints/{run_id}/")


# Rank 0 waits at the start of epoch 2 until the tests have looked (a file barrier); the hook is defined in the
# driver's __main__, so Ray ships it to the workers by value.
WATCHED_DRIVER = """
import time
from pathlib import Path
import ray
from gen_platform.config import load_params
from gen_platform.stages import train
from gen_platform.training.hooks import EpochHook
from gen_platform.workspace import Workspace

class WaitBeforeEpochTwo(EpochHook):
    def __init__(self, folder):
        self.folder = Path(folder)  # absolute: a Ray worker runs in a directory of its own

    def on_epoch_start(self, state):
        if state.rank == 0 and state.epoch == 1:
            (self.folder / "ready").touch()
            deadline = time.monotonic() + 300
            while not (self.folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

train(load_params("params.yaml"), Workspace.at("."), hooks=(WaitBeforeEpochTwo(Path.cwd().resolve()),))
print("SESSION", ray._private.worker._global_node.get_session_dir_path())
"""


HELPER_ACTORS = ("SynchronizationActor",)
# started by a plain TorchTrainer fit, and of no use to a fit on a runtime its own process started (trainer.py)
UNUSED_ACTORS = {"_AutoscalingCoordinatorActor", "PlacementGroupCleaner", "DatasetManager"}


@dataclass
class PausedTraining:
    """What the tests saw while the training was held, and how it ended."""

    run_id: str
    steps_while_training: list[int]
    names: str
    sockets: list[tuple[str, str, int]]
    controller_env: dict[str, str]
    torch_loaded: dict[str, bool]
    worker_niceness: list[int]
    actors: set[str]
    returncode: int
    output: str


@pytest.fixture(scope="module")
def paused_training(workspace) -> PausedTraining:
    """A local DDP training (2 Ray Train workers, so a TCPStore rendezvous too) through `stages.train`, held
    before its second epoch while its MLflow run, processes and sockets are looked at. (Used by the module's last
    tests: the runs before them have finished, so the RUNNING run is the watched one.)"""
    drop = {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"}
    env = {**{k: v for k, v in os.environ.items() if k not in drop},
           "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}  # a short run still gets system metrics samples
    driver = subprocess.Popen([sys.executable, "-c", WATCHED_DRIVER], cwd=workspace, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (workspace / "ready").exists():
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
            time.sleep(0.2)
        processes = process_trees([driver.pid])
        controllers = [p for p in processes if p.cmdline() and p.cmdline()[0].startswith("ray::TrainController")]
        seen = {"names": " ".join(process.name() for process in processes),
                "sockets": listening(processes), "controller_env": controllers[0].environ() if controllers else {},
                "torch_loaded": {_actor(p): any("libtorch_cpu" in m.path for m in p.memory_maps()) for p in processes
                                 if _actor(p) in {"RayTrainWorker", *HELPER_ACTORS}},
                "worker_niceness": [p.nice() for p in processes if _actor(p) == "RayTrainWorker"],
                "actors": {_actor(p) for p in processes} - {""}}
        client, _ = _runs(workspace)
        experiment_id = client.get_experiment_by_name("digits").experiment_id
        (watched,) = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
        # rank 0 logs in the background: epoch 1 arrives while the training is held before epoch 2
        steps_while_training = []
        while not steps_while_training and time.monotonic() < deadline:
            steps_while_training = [m.step for m in client.get_metric_history(watched.info.run_id, "val/neg_elbo")]
            time.sleep(0.2)
    finally:
        (workspace / "go").touch()
    output = driver.communicate(timeout=300)[0]
    return PausedTraining(watched.info.run_id, steps_while_training, returncode=driver.returncode, output=output,
                          **seen)


def test_a_watcher_sees_per_epoch_metrics_while_the_run_is_running(workspace, paused_training):
    """Curves appear in MLflow while the training runs: the first epoch's metrics on a RUNNING run."""
    assert paused_training.returncode == 0, paused_training.output
    assert paused_training.steps_while_training == [1]
    client, _ = _runs(workspace)
    finished = client.get_run(paused_training.run_id)
    assert finished.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(paused_training.run_id, "val/neg_elbo")]
    assert steps == list(range(1, EPOCHS + 1))
    assert any(key.startswith("system/") for key in finished.data.metrics), sorted(finished.data.metrics)


def test_a_local_ddp_training_listens_on_loopback_only(paused_training):
    """Loopback means loopback: no process of the local runtime listens on anything but 127.0.0.1 while a DDP
    training runs. (The stack's servers are checked in test_stack.py.)"""
    seen = paused_training
    assert seen.returncode == 0, seen.output
    assert "gcs_server" in seen.names and "raylet" in seen.names, seen.names  # the runtime's daemons were checked
    assert len(seen.sockets) >= 10, seen.sockets
    assert beyond_loopback(seen.sockets) == [], beyond_loopback(seen.sockets)
    # the training workers are the workload of a local runtime: normal priority, not Ray's nice 15
    assert seen.worker_niceness == [0, 0], seen.worker_niceness
    # a local runtime cannot be preempted: its fits start no PreemptionWatcher actor
    assert seen.controller_env.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER") == "0", seen.names
    assert {"TrainController", "RayTrainWorker", *HELPER_ACTORS} <= seen.actors, seen.actors
    assert not seen.actors & UNUSED_ACTORS, seen.actors
    # Ray's helper actors start without torch (the loopback hook waits for torch's own import); the workers have it
    assert seen.torch_loaded == {"RayTrainWorker": True} | dict.fromkeys(HELPER_ACTORS, False), seen.names
    # no idle workers prestarted for the first driver (they could never serve this job's actors)
    session = Path(seen.output.split("SESSION ")[1].split()[0])
    assert [log.name for log in (session / "logs").glob("worker-*-ffffffff-*.out")] == []


def _actor(process) -> str:
    command = process.cmdline()
    if not command or not command[0].startswith("ray::"):
        return ""
    return command[0].removeprefix("ray::").split(".")[0]  # "ray::SynchronizationActor.broadcast_from_rank_zero"
