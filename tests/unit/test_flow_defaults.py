"""Importing `flows` gives Prefect's temporary server room to start on a loaded machine, and no telemetry,
unless the user chose otherwise. Checked in a new interpreter: Prefect reads its settings once, at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

READ_SETTINGS = ("import flows.training_flow; from prefect.settings import get_current_settings as s; "
                 "e = s().server.ephemeral; print(e.startup_timeout_seconds, s().server.analytics_enabled)")


@pytest.mark.parametrize(("user_env", "expected"), [
    ({}, "180 False"),
    ({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "7", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"},
     "7 True"),
])
def test_flow_defaults_apply_unless_the_user_set_them(tmp_path, user_env, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_ANALYTICS_ENABLED"}}
    env.update(user_env, PREFECT_HOME=str(tmp_path / "prefect"))
    result = subprocess.run([sys.executable, "-c", READ_SETTINGS], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.splitlines()[-1] == expected
