"""Curves appear in MLflow while the training runs: a watcher sees the first epoch's metrics on a RUNNING run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.integration.workspace import make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration

# Rank 0 waits at the start of epoch 2 until the test has looked (a file barrier); the hook is defined in the
# driver's __main__, so Ray ships it to the workers by value.
DRIVER = """
import time
from pathlib import Path
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
"""


def test_a_watcher_sees_per_epoch_metrics_while_the_run_is_running(tmp_path):
    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 3, "num_workers": 1}})
    for stage in ("prepare", "validate", "features"):
        run(["genp", stage], workspace)
    env = {**{k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}},
           "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}  # a short run still gets system metrics samples
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=workspace, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (workspace / "ready").exists():
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
            time.sleep(0.2)
        client = mlflow_client(workspace)
        (watched,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
        status_while_training = watched.info.status
        # rank 0 logs in the background: epoch 1 arrives while the training is held before epoch 2
        steps_while_training = []
        while not steps_while_training and time.monotonic() < deadline:
            steps_while_training = [m.step for m in client.get_metric_history(watched.info.run_id, "val_neg_elbo")]
            time.sleep(0.2)
    finally:
        (workspace / "go").touch()
    output = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0, output
    assert status_while_training == "RUNNING" and steps_while_training == [1]
    finished = client.get_run(watched.info.run_id)
    assert finished.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(watched.info.run_id, "val_neg_elbo")] == [1, 2, 3]
    assert any(key.startswith("system/") for key in finished.data.metrics), sorted(finished.data.metrics)
