"""What a run does when its MLflow tracking server is unreachable: it never hangs.

- Each MLflow call gives up within seconds, not minutes: MLflow's client retries a call 7 times with growing
  back-off by default (about 4 minutes a call), and a training logs many. The limits are defaults set by
  `startup.configure_process()`; an operator's own MLFLOW_HTTP_REQUEST_* settings win.
- While the server is down the training goes on: each epoch's metrics stay in the run's history (and rank 0
  keeps what it could not send, `tracking/live.py`) and are sent when the server is back.
- Where the run cannot go on without the server (opening its MLflow run, closing it with every epoch logged),
  it waits for the server at most GENP_TRACKING_OUTAGE_TIMEOUT_S seconds (default 120), then fails with
  `TrackingUnavailable`, naming the server. Its checkpoints stay: the next attempt resumes from them, and the
  run left RUNNING on the server is marked FAILED when the platform next opens a run (`tracking/owners.py`).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request

from typing import Iterator

from gen_platform.errors import ConfigError, TrackingUnavailable
from gen_platform.startup import MLFLOW_HTTP_DEFAULTS

TIMEOUT_VARIABLE = "GENP_TRACKING_OUTAGE_TIMEOUT_S"


def outage_timeout_s() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE, "120")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_VARIABLE}: expected a positive number of seconds, got {text!r}")
    return seconds


def reachable(tracking_uri: str) -> bool:
    """A local store is always there; a server is when its /health answers."""
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def without_retries() -> Iterator[None]:
    """MLflow calls that give up at the first refusal: for closing a run that failed because its server is down."""
    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        yield
    finally:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved or MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def wait_for_tracking(tracking_uri: str, what: str, poll_s: float = 1.0) -> None:
    """Return once the tracking server answers; raise `TrackingUnavailable` after `outage_timeout_s()`."""
    if reachable(tracking_uri):
        return
    timeout = outage_timeout_s()
    print(f"the MLflow tracking server {tracking_uri} is unreachable; {what} waits up to {timeout:.0f} s for it "
          f"({TIMEOUT_VARIABLE})", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        if reachable(tracking_uri):
            print(f"the MLflow tracking server {tracking_uri} is back", flush=True)
            return
    raise TrackingUnavailable(f"the MLflow tracking server {tracking_uri} was unreachable for {timeout:.0f} s "
                              f"({TIMEOUT_VARIABLE}): {what} failed; its MLflow run is incomplete and nothing was "
                              "registered. Start the server and run again: a training resumes from its last checkpoint")
