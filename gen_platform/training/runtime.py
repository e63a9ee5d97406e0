"""Connect to Ray: the cluster in RAY_ADDRESS when set, else a local runtime on this machine."""

from __future__ import annotations

import logging
import os
import warnings

from gen_platform.startup import MLFLOW_DEFAULTS, configure_process
from gen_platform.training import console_filter
from gen_platform.training.loopback import (SETUP_HOOK, cluster_disabled_by_environment, free_loopback_port,
                                           set_cluster_mode)

# Train V2 controller settings, for every run of this job (they reach the controller through runtime_env):
# - it takes each worker's report only when it polls (default every 2 s) and a worker blocks until its
#   previous report is taken: with short epochs that wait dominated training time;
# - it gives up on starting its workers after 60 s by default. On a small machine a search starts many
#   actor processes at once (trial, controller, cleaner, watcher, workers: a few seconds each, two at a
#   time), and a worker group can wait longer than that for its turn, so a trial failed needlessly.
TRAIN_CONTROLLER_DEFAULTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
                             "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300"}
PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
WORKER_NICENESS = "RAY_worker_niceness"
_local_runtime_started_here = False


def owns_local_runtime() -> bool:
    """Whether this process started the Ray runtime it uses (no cluster): the runtime ends with the process."""
    import ray

    return _local_runtime_started_here and ray.is_initialized()


def ensure_ray(state_api: bool = True) -> None:
    """`state_api=False`: a local runtime starts without the dashboard, which serves Ray's state API. Only a Tune
    trial's placement-group cleaner needs that API (a fit on a local runtime runs without one, see `trainer.py`),
    so a process that runs one fit and exits (`genp train`), or one search of single-process trials (`genp tune`
    by default), skips it: a dashboard process and its ten module processes, started with every runtime."""
    global _local_runtime_started_here
    import ray

    if ray.is_initialized():
        return
    configure_process()  # a no-op where the entry point made it, as it should
    warnings.filterwarnings("ignore", module="ray")
    address = os.environ.get("RAY_ADDRESS")
    env_vars = {"PYTHONWARNINGS": "ignore",
                **{name: os.environ.get(name, default) for name, default in TRAIN_CONTROLLER_DEFAULTS.items()},
                # rank 0's live curves: MLflow calls bounded as in the driver (tracking/outage.py), on any node
                **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP_REQUEST_") or k in MLFLOW_DEFAULTS}}
    runtime_env: dict = {}
    local: dict = {}
    # A local runtime, or a cluster declared loopback-only (the local stack's head), stays on 127.0.0.1.
    loopback_only = not address or cluster_disabled_by_environment()
    set_cluster_mode(not loopback_only)
    if loopback_only:
        env_vars["GLOO_SOCKET_IFNAME"] = "lo"
        runtime_env["worker_process_setup_hook"] = SETUP_HOOK
        # No node of a local runtime, or of a loopback-only cluster (one machine: the local stack's head), can be
        # preempted, so each fit skips Train V2's PreemptionWatcher actor, whose start-up took 0.37 of 2 cores from
        # a short fit's epochs (`bench.train_throughput --quick`) and which polls the GCS every 5 s.
        env_vars[PREEMPTION_WATCHER] = os.environ.get(PREEMPTION_WATCHER, "0")
    if not address:
        # Ray starts worker processes at nice 15, below its own daemons, so that on a shared node they come first.
        # On one's own machine the training worker is the workload, as a plain loop would be: at nice 15 every
        # daemon wake-up takes its core first (an interleaved A/B of `bench.train_throughput`'s fits, 5 rounds:
        # nice 0 trained faster in 4, median ratio 1.07).
        env_vars[WORKER_NICENESS] = os.environ.get(WORKER_NICENESS, "0")
        # A local runtime gets a dashboard on loopback: Train V2's PlacementGroupCleaner needs its state API
        # to release the workers of a stopped multi-worker Tune trial. Left to auto-detection, the cleaner fails with
        # "Found multiple active Ray instances" whenever another Ray runs on this machine, the CPUs of stopped
        # trials are never released, and a search hangs. So the API address is pinned for every actor.
        if state_api:
            port = free_loopback_port()
            env_vars["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
            local = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
        else:
            local = {"include_dashboard": False}
        # The raylet (started here, it inherits this environment) would start one idle worker per CPU for the
        # first driver. They lack this job's runtime_env, so no actor of ours can use them: they only took CPU
        # from the actors that start at the same time.
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    ray.init(
        address=address or None,
        logging_level=logging.ERROR,
        log_to_driver=True,
        runtime_env={"env_vars": env_vars, **runtime_env},
        **local,
    )
    _local_runtime_started_here = not address
    console_filter.install()
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
