"""Loopback means loopback: while a local DDP training runs (2 Ray Train workers, so a TCPStore rendezvous
too), no process of the runtime listens on anything but 127.0.0.1. The stack's servers are checked in
test_stack.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.sockets import beyond_loopback, listening, process_trees

pytestmark = pytest.mark.integration

# Rank 0 stops after its first epoch until the test has looked at the sockets (a file barrier); the hook is
# defined in the driver's __main__, so Ray ships it to the workers by value.
DRIVER = """
import sys, time
from pathlib import Path
from gen_platform.config import parse_params
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.training.hooks import EpochHook
from gen_platform.training.launcher import fit

class PauseForInspection(EpochHook):
    def __init__(self, folder):
        self.folder = folder

    def on_epoch_end(self, state, model):
        if state.rank == 0 and state.epoch == 0:
            (Path(self.folder) / "ready").touch()
            deadline = time.monotonic() + 300
            while not (Path(self.folder) / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

params = parse_params({"train": {"epochs": 2, "num_workers": 2, "cpus_per_worker": 1}})
splits = split_dataset(digits(), 0, 0.1, 0.1)
root = Path(sys.argv[1])
fit(params, splits["train"], splits["val"], run_name="loopback", root=root, hooks=(PauseForInspection(str(root)),))
import ray
print("SESSION", ray._private.worker._global_node.get_session_dir_path())
print("TRAINED")
"""

HELPER_ACTORS = ("SynchronizationActor",)
# started by a plain TorchTrainer fit, and of no use to a fit on a runtime its own process started (trainer.py)
UNUSED_ACTORS = {"_AutoscalingCoordinatorActor", "PlacementGroupCleaner", "DatasetManager"}


def test_a_local_ddp_training_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"}}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "ready").exists():
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
            time.sleep(0.2)
        processes = process_trees([driver.pid])
        names = " ".join(process.name() for process in processes)
        sockets = listening(processes)
        controllers = [p for p in processes if p.cmdline() and p.cmdline()[0].startswith("ray::TrainController")]
        controller_env = controllers[0].environ() if controllers else {}
        torch_loaded = {_actor(p): any("libtorch_cpu" in m.path for m in p.memory_maps()) for p in processes
                        if _actor(p) in {"RayTrainWorker", *HELPER_ACTORS}}
        worker_niceness = [p.nice() for p in processes if _actor(p) == "RayTrainWorker"]
        actors = {_actor(p) for p in processes} - {""}
    finally:
        (tmp_path / "go").touch()
    output = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0 and "TRAINED" in output, output
    assert "gcs_server" in names and "raylet" in names, names  # the runtime's daemons were among those checked
    assert len(sockets) >= 10, sockets
    assert beyond_loopback(sockets) == [], beyond_loopback(sockets)
    # the training workers are the workload of a local runtime: normal priority, not Ray's nice 15
    assert worker_niceness == [0, 0], worker_niceness
    # a local runtime cannot be preempted: its fits start no PreemptionWatcher actor
    assert controller_env.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER") == "0", [p.cmdline()[:1] for p in processes]
    assert {"TrainController", "RayTrainWorker", *HELPER_ACTORS} <= actors and not actors & UNUSED_ACTORS, actors
    # Ray's helper actors start without torch (the loopback hook waits for torch's own import); the workers have it
    assert torch_loaded == {"RayTrainWorker": True} | dict.fromkeys(HELPER_ACTORS, False), names
    # no idle workers prestarted for the first driver (they could never serve this job's actors)
    session = Path(output.split("SESSION ")[1].split()[0])
    assert [log.name for log in (session / "logs").glob("worker-*-ffffffff-*.out")] == []


def _actor(process) -> str:
    command = process.cmdline()
    if not command or not command[0].startswith("ray::"):
        return ""
    return command[0].removeprefix("ray::").split(".")[0]  # "ray::SynchronizationActor.broadcast_from_rank_zero"
