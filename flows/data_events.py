"""A new data version becomes a Prefect event, and the `retrain` deployment has a trigger on it.

The check is cheap: read the md5 that DVC recorded in `data.dvc` and compare it with the last version seen,
kept in the Prefect Variable `genp_data_version` (so a change made while nothing watched is still seen).
The first check only records the version; every later change emits one `gen_platform.data.changed` event.

    python -m flows.data_events          check now (e.g. after `dvc commit`/`dvc push`, from a git hook or CI)

`flows.serve` runs the same check every GENP_DATA_POLL_SECONDS (60; 0 turns it off) beside the deployments.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from prefect.events import DeploymentEventTrigger, emit_event
from prefect.events.worker import EventsWorker
from prefect.variables import Variable

from gen_platform.tracking.lineage import data_version

EVENT = "gen_platform.data.changed"
SEEN_VARIABLE = "genp_data_version"


def resource_id(repo: Path) -> str:
    return f"gen_platform.data.{repo.resolve().name}"


def retrain_trigger() -> DeploymentEventTrigger:
    """One retrain per data-change event, with the deployment's default parameters."""
    return DeploymentEventTrigger(name="retrain on a new data version", expect={EVENT},
                                  match={"prefect.resource.id": "gen_platform.data.*"})


def check_data_version(repo: str | Path = ".") -> str:
    """Emit the event when `data.dvc` records a version not seen before; returns what happened."""
    repo = Path(repo).resolve()
    current = data_version(repo)
    seen = Variable.get(SEEN_VARIABLE, default=None)
    if seen == current:
        return f"unchanged: {current}"
    Variable.set(SEEN_VARIABLE, current, overwrite=True)
    if seen is None:
        return f"recorded: {current} (first check, no event)"
    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(repo), "data_version": current},
               payload={"data_version": current, "previous": seen})
    EventsWorker.drain_all(timeout=30)  # delivered before the caller goes on (or exits)
    return f"changed: {seen} → {current} (event {EVENT})"


def watch_in_background(repo: str | Path, interval: float) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                outcome = check_data_version(repo)
                if not outcome.startswith("unchanged"):
                    print(f"data watch: {outcome}", flush=True)
            except Exception as error:  # a failed check (server briefly away) must not end the watch
                print(f"data watch: check failed ({error!r}); retrying in {interval:.0f} s", flush=True)
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="data-watch", daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description="Emit a Prefect event if data.dvc records a new data version.")
    parser.add_argument("--repo", default=".")
    print(check_data_version(parser.parse_args().repo))


if __name__ == "__main__":
    main()
