"""Two Ray nodes on this machine (a head and a node joined with `ray start --address`), one training worker
on each: the workers report different nodes and DDP keeps their weights identical."""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gen_platform.training.loopback import free_loopback_port
from tests.integration.sockets import stop_processes_naming

pytestmark = pytest.mark.integration


@pytest.fixture()
def two_node_cluster(monkeypatch, tmp_path, request):
    """A head and a second node. Parametrised (indirect) with a directory, the second node runs in a mount
    namespace of its own with an empty tmpfs over that directory: a node whose "shared" storage is its own."""
    private_dir = getattr(request, "param", None)
    temp_dir = tempfile.mkdtemp(prefix="genp-ray-", dir="/tmp")  # short: Ray puts sockets under it
    port = free_loopback_port()
    # Ray 2.60 clusters require a token; every node and the driver read it from this file.
    token = tmp_path / "ray_auth_token"
    token.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)  # belongs to another runtime, if set
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]

    def own_ports() -> list[str]:
        # not Ray's fixed defaults (dashboard 8265, client server 10001, agent 52365): the local stack of
        # another test process may hold them
        return [f"--dashboard-agent-listen-port={free_loopback_port()}", f"--ray-client-server-port={free_loopback_port()}"]

    try:
        subprocess.run(["ray", "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={free_loopback_port()}", *own_ports(), *common],
                       check=True, capture_output=True)
        second = ["ray", "start", f"--address=127.0.0.1:{port}", *own_ports(), *common]
        if private_dir:  # Ray's daemons of that node inherit the namespace
            Path(private_dir).mkdir(parents=True, exist_ok=True)
            second = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {private_dir} && exec {shlex.join(second)}"]
        subprocess.run(second, check=True, capture_output=True)
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        yield port
    finally:
        stop_processes_naming(temp_dir, f"127.0.0.1:{port}")
        shutil.rmtree(temp_dir, ignore_errors=True)


# The fingerprint hook is defined in the driver's __main__, so Ray ships it to the workers by value; each
# worker writes its node and a hash of its parameters after every epoch (the same machine: a shared folder).
DRIVER = """
import hashlib, json, sys
from pathlib import Path
import ray
from gen_platform.config import parse_params
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.training.hooks import EpochHook
from gen_platform.training.launcher import fit
from gen_platform.training.runtime import ensure_ray

class Fingerprint(EpochHook):
    def __init__(self, folder):
        self.folder = folder

    def on_epoch_end(self, state, model):
        digest = hashlib.sha256()
        for tensor in model.parameters():
            digest.update(tensor.detach().cpu().float().numpy().tobytes())
        record = {"rank": state.rank, "node_id": ray.get_runtime_context().get_node_id(),
                  "parameters_sha256": digest.hexdigest()}
        (Path(self.folder) / f"rank-{state.rank}.json").write_text(json.dumps(record))

ensure_ray()
nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
params = parse_params({"train": {"epochs": 2, "num_workers": 2, "cpus_per_worker": 1}})
splits = split_dataset(digits(), 0, 0.1, 0.1)
root = Path(sys.argv[1])
if len(sys.argv) > 2:
    params = parse_params({"train": {"epochs": 2, "num_workers": 2, "cpus_per_worker": 1, "storage_path": sys.argv[2]}})
fit(params, splits["train"], splits["val"], run_name="two-nodes", root=root, hooks=(Fingerprint(str(root)),))
workers = [json.loads(path.read_text()) for path in sorted(root.glob("rank-*.json"))]
print("RESULT " + json.dumps({"nodes": nodes, "workers": workers}))
"""


def test_one_worker_per_node_with_identical_weights(two_node_cluster, tmp_path):
    # A separate driver process, as a user's would be: Ray keeps one auth token per process.
    driver = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path)], capture_output=True, text=True, timeout=600)
    lines = [line for line in driver.stdout.splitlines() if line.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, driver.stdout + driver.stderr
    report = json.loads(lines[-1].removeprefix("RESULT "))
    assert len(report["nodes"]) == 2 and len(report["workers"]) == 2
    assert {worker["node_id"] for worker in report["workers"]} == set(report["nodes"])
    assert report["workers"][0]["parameters_sha256"] == report["workers"][1]["parameters_sha256"]
    assert f"checkpoint storage {tmp_path / 'ray_results'}: shared by all 2 nodes" in driver.stdout


PRIVATE_STORAGE = "/tmp/genp-test-private-storage"


@pytest.mark.parametrize("two_node_cluster", [PRIVATE_STORAGE], indirect=True)
def test_storage_one_node_does_not_share_stops_the_training_before_it_starts(two_node_cluster, tmp_path):
    driver = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), PRIVATE_STORAGE], capture_output=True,
                            text=True, timeout=600)
    assert driver.returncode != 0
    error = driver.stderr.strip().splitlines()[-1]
    assert f"checkpoint storage {PRIVATE_STORAGE} is not shared by every node" in error, driver.stderr
    assert error.count("does not see what the driver wrote") == 1  # the second node; the head sees it
    assert not list(Path(PRIVATE_STORAGE).glob("two-nodes*")), "training started anyway"
