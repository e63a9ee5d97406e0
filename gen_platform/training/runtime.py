"""Connect to Ray: the cluster in RAY_ADDRESS when set, else a local runtime on this machine."""

from __future__ import annotations

import logging
import os
import warnings

# Set before Ray is imported: no usage-stats prompt, no per-process log dedup banners.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def ensure_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    warnings.filterwarnings("ignore", module="ray")
    address = os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address or None,
        include_dashboard=True, dashboard_host="127.0.0.1",
        logging_level=logging.ERROR,
        log_to_driver=True,
        # Workers are separate processes: they need this package importable (already installed locally).
        runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}},
    )
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
