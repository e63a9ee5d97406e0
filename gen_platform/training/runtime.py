"""Connect to Ray: the cluster in RAY_ADDRESS when set, else a local runtime on this machine."""

from __future__ import annotations

import logging
import os
import socket
import warnings

# Set before Ray is imported: no usage-stats prompt, no per-process log dedup banners.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Train V2's controller takes each worker's report only when it polls (default every 2 s) and a worker
# blocks until its previous report is taken: with short epochs that wait dominated training time.
POLL_INTERVAL = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _passed_through() -> dict[str, str]:
    """The platform's own switches (GENP_*) reach the workers, which may run on other machines."""
    return {key: value for key, value in os.environ.items() if key.startswith("GENP_")}


def ensure_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    warnings.filterwarnings("ignore", module="ray")
    address = os.environ.get("RAY_ADDRESS")
    env_vars = {"PYTHONWARNINGS": "ignore", **POLL_INTERVAL, **_passed_through()}
    local: dict = {}
    if not address:
        # A local runtime gets a dashboard on loopback: Train V2's PlacementGroupCleaner needs its state API
        # to release the workers of a stopped Tune trial. Left to auto-detection, the cleaner fails with
        # "Found multiple active Ray instances" whenever another Ray runs on this machine, the CPUs of stopped
        # trials are never released, and a search hangs. So the API address is pinned for every actor.
        port = _free_port()
        env_vars["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        local = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
    ray.init(
        address=address or None,
        logging_level=logging.ERROR,
        log_to_driver=True,
        runtime_env={"env_vars": env_vars},
        **local,
    )
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
