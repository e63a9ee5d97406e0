"""The process-wide settings a run of the platform needs: one call, `configure_process()`, made by each entry
point (the `genp` CLI, the flows, the benchmarks, the tests) before anything imports Ray, MLflow or Great
Expectations. No library
module changes the environment when it is imported. A value already in the environment always wins: an
operator's own setting is never overridden.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

# Lines of the training loop's progress (`training/loop.py`, `_progress`): Ray's log de-duplication never merges
# them across workers.
PROGRESS_LINES = r"^(epoch \d+/\d+ |resumed from the checkpoint)"
# Worker lines that are expected here and say nothing to a user. Ray's filter judges one line at a time, so only
# lines that are noise by themselves belong here; the multi-line dumps of a stopped trial are dropped as whole
# blocks by `training/console_filter.py`.
EXPECTED_NOISE = (
    r"PYTHON worker processes have been started on node",  # Tune's 0.01-CPU trial drivers, by design
    r"Checkpoint successfully created at: Checkpoint\(",  # every epoch of every single-process trial
    r"Actor with class name: 'PreemptionWatcher'",  # Train V2 logs it at ERROR for every run on a cluster
    r"Detected that the Ray Train controller actor \(\w+\) is dead",  # a trial stopped by ASHA
)

# Read by Ray when it is imported (log de-duplication), so they must be set before.
RAY_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage-stats prompt, no outbound connection
    "RAY_DEDUP_LOGS": "1",
    "RAY_DEDUP_LOGS_ALLOW_REGEX": PROGRESS_LINES,
    "RAY_DEDUP_LOGS_SKIP_REGEX": "|".join(EXPECTED_NOISE),
    # A trial that ASHA stops is asked to exit; when its driver misses the signal (it can arrive inside a weakref
    # callback, where Python ignores the SystemExit), Tune kills it only after this many seconds (default 600).
    # Until then the trial's Train workers keep their CPUs, and the next trial's workers time out waiting for
    # them. Reports and checkpoints of a stopped trial are already saved: kill it soon.
    "TUNE_FORCE_TRIAL_CLEANUP_S": "5",
    "RAY_AIR_NEW_OUTPUT": "0",
}

# MLflow's client retries a call 7 times with growing back-off by default (about 4 minutes a call), and a training
# logs many: each call gives up within seconds instead (`tracking/outage.py` says what a run does then).
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
MLFLOW_DEFAULTS = {**MLFLOW_HTTP_DEFAULTS, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


# Great Expectations sends usage analytics unless told not to: no outbound connection.
GX_DEFAULTS = {"GX_ANALYTICS_ENABLED": "False"}


class StartupOrderError(RuntimeError):
    """`configure_process()` came after Ray was imported, which has then read its settings without ours."""


def configure_process(extra_defaults: Mapping[str, str] | None = None) -> None:
    """Set this process's defaults (Ray's, MLflow's, Great Expectations' and `extra_defaults`, e.g. the flows'
    Prefect settings); the processes it starts (stages, Ray's daemons and workers) inherit them. Idempotent."""
    defaults = {**RAY_DEFAULTS, **MLFLOW_DEFAULTS, **GX_DEFAULTS, **(extra_defaults or {})}
    missing_before_ray = [name for name in RAY_DEFAULTS if name not in os.environ]
    if "ray" in sys.modules and missing_before_ray:
        raise StartupOrderError(f"configure_process() must run before Ray is imported; Ray has read its settings "
                                f"without {', '.join(missing_before_ray)}. Call it first in the entry point.")
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
