"""Serve the deployments: `train` and `tune` on demand (Prefect UI or API), `retrain` on a schedule.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve      (make stack-up starts this)

Runs start as child processes of this one, each in a workspace of its own under runs/ (flows/workspaces.py),
at most GENP_MAX_CONCURRENT_RUNS (2) at a time; the others wait in the queue. The retrain schedule is a cron
string (default nightly at 03:00, `GENP_RETRAIN_CRON` to change it) with a concurrency limit of one: a
retrain that would overlap a running one is cancelled. A new data version also starts `retrain`: this process
checks `data.dvc` every GENP_DATA_POLL_SECONDS (60; 0: off) and emits the event its trigger waits for
(flows/data_events.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.data_events import retrain_trigger, watch_in_background
from flows.training_flow import retrain_flow, train_flow, tune_flow
from flows.workspaces import crashed_runs

RETRAIN_CRON = os.environ.get("GENP_RETRAIN_CRON", "0 3 * * *")


def deployments() -> list:
    return [
        train_flow.to_deployment(name="train", description="Train a VAE or GAN; parameters from the run form.",
                                 tags=["gen_platform"]),
        tune_flow.to_deployment(name="tune", description="Ray Tune search; the best trial is registered.",
                                tags=["gen_platform"]),
        retrain_flow.to_deployment(
            name="retrain", description="Retrain when the DVC data version changed.", tags=["gen_platform"],
            schedule=Cron(RETRAIN_CRON, timezone=os.environ.get("GENP_RETRAIN_TIMEZONE", "UTC")),
            triggers=[retrain_trigger()],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)),
    ]


def main() -> None:
    for crashed in crashed_runs(Path(".").resolve()):  # left `running` by a process that died with an earlier serve
        print(f"run workspace {crashed}: its process is gone; marked crashed", flush=True)
    poll_seconds = float(os.environ.get("GENP_DATA_POLL_SECONDS", "60"))
    if poll_seconds > 0:
        watch_in_background(".", poll_seconds)
    serve(*deployments(), limit=int(os.environ.get("GENP_MAX_CONCURRENT_RUNS", "2")))


if __name__ == "__main__":
    main()
