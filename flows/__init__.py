"""Prefect flows over the `gen_platform` library (see `flows/training_flow.py`).

The process's start-up call is made here, when the package is first imported, because Prefect reads its settings
once, when it is itself imported, and every way of running a flow (`python -m flows.<module>`, the serve process,
a test that imports a flow) imports this package before Prefect. A value already in the environment wins.
- The temporary server's first start in a new PREFECT_HOME applies every database migration: 20 s on an idle
  2-core machine, which is exactly Prefect's default limit, so a loaded machine timed out. Allow 180 s.
- No usage telemetry: the server makes no outbound connection.
"""

from gen_platform.startup import configure_process

PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
configure_process(PREFECT_DEFAULTS)
