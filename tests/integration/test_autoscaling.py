"""A cluster that starts with no worker CPUs: Ray's fake autoscaler (real autoscaler and node provider, worker
nodes started as processes on this machine) adds nodes when a training or a search asks for them, and a request
no node type can hold fails within the timeout, naming what is missing."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from gen_platform.training.loopback import free_loopback_port
from tests.integration.sockets import stop_processes_naming

pytestmark = pytest.mark.integration
NODE_TYPE = {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2}


def _autoscaling_config(gcs_address: str) -> dict:
    """A fake-provider cluster: a head without CPUs (as infra/kuberay's) and one worker type of 2 CPUs, at most 2."""
    return {"cluster_name": "genp-autoscaling-test", "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": 1,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True,
                         # without it the provider joins its nodes to the machine's address, not loopback
                         "gcs_address": gcs_address},
            "head_node_type": "ray.head.default",
            "available_node_types": {"ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                                     "cpu2": NODE_TYPE},
            "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": []}


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    """The head started here, not with `ray.cluster_utils.AutoscalingCluster`, whose start and shutdown run
    `ray stop --force` and so would stop every other Ray runtime on the machine (the other test process's)."""
    temp_dir = tempfile.mkdtemp(prefix="genp-as-", dir="/tmp")  # short: Ray puts sockets under it
    port = free_loopback_port()
    config = tmp_path_factory.mktemp("autoscaling") / "autoscaling.json"
    config.write_text(json.dumps(_autoscaling_config(f"127.0.0.1:{port}")))
    token = config.with_name("ray_auth_token")
    token.write_text(secrets.token_hex(32))
    client = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_API_SERVER_ADDRESS"}, **client,
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    env.pop("RAY_ADDRESS")  # `ray start --head` refuses to start a head where an address is set
    try:
        subprocess.run(["ray", "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--num-cpus=0",
                        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={free_loopback_port()}", f"--dashboard-agent-listen-port={free_loopback_port()}",
                        f"--ray-client-server-port={free_loopback_port()}", "--disable-usage-stats",
                        f"--autoscaling-config={config}"], env=env, check=True, capture_output=True)
        yield {**{k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"}}, **client}
    finally:
        # its processes name its temp dir or (the client server) its address; the worker nodes the autoscaler
        # started are their descendants
        stop_processes_naming(temp_dir, f"127.0.0.1:{port}")
        shutil.rmtree(temp_dir, ignore_errors=True)


# The driver counts the worker nodes (the head has no CPUs) before and after; a separate process, as a user's
# driver is: Ray keeps one auth token per process.
DRIVER = """
import json, sys, time
from pathlib import Path
import ray
from gen_platform.config import parse_params
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.errors import GenPlatformError
from gen_platform.training.launcher import fit
from gen_platform.training.runtime import ensure_ray
from gen_platform.tuning.search import run_search

case, root, cpus, timeout = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def worker_nodes():
    return sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0)
ensure_ray()
before = worker_nodes()
splits = split_dataset(digits(), 0, 0.1, 0.1)
params = parse_params({"train": {"epochs": 1, "num_workers": 1, "cpus_per_worker": cpus, "resource_timeout_s": timeout},
                       "tune": {"trials": 4, "max_epochs": 1, "cpus_per_worker": cpus}})
start = time.monotonic()
try:
    if case == "train":
        fit(params, splits["train"], splits["val"], run_name="autoscaled", root=root)
        outcome = {"ok": True}
    else:
        outcome = {"ok": True, "trials": run_search(params, splits["train"], splits["val"], root).counts()}
except GenPlatformError as error:
    outcome = {"ok": False, "error": str(error)}
print("RESULT " + json.dumps({**outcome, "seconds": time.monotonic() - start, "nodes_before": before,
                              "nodes_after": worker_nodes()}))
"""


def _drive(cluster_env: dict, case: str, root, cpus: float, timeout_s: float) -> dict:
    driver = subprocess.run([sys.executable, "-c", DRIVER, case, str(root), str(cpus), str(timeout_s)], env=cluster_env,
                            capture_output=True, text=True, timeout=600)
    lines = [line for line in driver.stdout.splitlines() if line.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, driver.stdout + driver.stderr
    return json.loads(lines[-1].removeprefix("RESULT ")) | {"output": driver.stdout + driver.stderr}


def test_a_request_no_node_type_can_hold_fails_within_the_timeout(autoscaling_cluster, tmp_path):
    result = _drive(autoscaling_cluster, "train", tmp_path, cpus=4, timeout_s=10)
    assert not result["ok"], result["output"]
    assert "the training needs 1 × {CPU: 4}" in result["error"] and "train.resource_timeout_s" in result["error"]
    assert 10 <= result["seconds"] < 40, result
    assert result["nodes_before"] == 0


def test_a_training_starts_on_a_cluster_without_worker_cpus_and_finishes(autoscaling_cluster, tmp_path):
    result = _drive(autoscaling_cluster, "train", tmp_path, cpus=1, timeout_s=300)
    assert result["ok"], result["output"]
    assert result["nodes_before"] == 0 and result["nodes_after"] >= 1, result
    assert any(tmp_path.rglob("checkpoint_*")), "the training reported no checkpoint"


def test_a_four_trial_search_scales_the_cluster_out_and_finishes(autoscaling_cluster, tmp_path):
    # 4 trials of 0.9 CPU each: more than one 2-CPU node holds, so the autoscaler adds a second one
    result = _drive(autoscaling_cluster, "tune", tmp_path, cpus=0.9, timeout_s=300)
    assert result["ok"], result["output"]
    assert result["trials"] == {"finished": 4, "stopped": 0, "failed": 0}, result
    assert result["nodes_after"] == 2, result
