"""Prefect flows over the `gen_platform` library (see `flows/training_flow.py`).

Defaults for running without a Prefect server. Prefect reads its settings once, when it is first imported, so
they are set here, before any flow module imports it; a value already in the environment wins.
- The temporary server's first start in a new PREFECT_HOME applies every database migration: 20 s on an idle
  2-core machine, which is exactly Prefect's default limit, so a loaded machine timed out. Allow 180 s.
- No usage telemetry: the server makes no outbound connection.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
