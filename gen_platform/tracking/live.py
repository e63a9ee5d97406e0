"""Per-epoch curves in MLflow while a training runs: rank 0 logs each epoch as soon as Ray has its report, so
the MLflow UI shows the curves of a RUNNING run. Every epoch is logged once (step = epoch): an epoch a
resumed training repeats keeps its first values, and the driver fills in, at the end, any epoch whose live
logging failed (for example a worker on a node that cannot reach a local SQLite store).

Rank 0 logs on a background thread, one epoch after another, and waits for it only after the last epoch: the
first log imports MLflow and opens its store in the worker (about 3 s, measured here), and the other workers
would wait for rank 0 at the next epoch's first gradient exchange."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gen_platform.training.hooks import EpochHook, WorkerState

STEP_KEY = "epoch_seconds"  # in every epoch's record: its history says which epochs are logged


def log_epochs(tracking_uri: str, run_id: str, records: list[dict[str, Any]]) -> int:
    """Log the records whose epoch the run does not hold yet; returns how many epochs were logged."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri)
    logged = {metric.step for metric in client.get_metric_history(run_id, STEP_KEY)}
    fresh = [record for record in records if int(record["epoch"]) not in logged]
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, int(record["epoch"]))
               for record in fresh for key, value in record.items() if key != "epoch"]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    return len(fresh)


_logger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-curves")  # one thread: epochs in order


@dataclass(frozen=True)
class LiveCurves(EpochHook):
    tracking_uri: str
    run_id: str

    def on_epoch_reported(self, state: WorkerState, record: dict[str, float]) -> None:
        if state.rank != 0:
            return
        logged: Future = _logger.submit(self._log, record)
        if state.epoch + 1 == state.epochs:
            logged.result()  # every epoch is in MLflow before the training returns and the driver fills in gaps

    def _log(self, record: dict[str, float]) -> None:
        try:
            log_epochs(self.tracking_uri, self.run_id, [record])
        except Exception as error:  # the curves are filled in after training; never fail the training
            print(f"live MLflow logging of epoch {record['epoch']} failed ({error!r}); logged after training",
                  flush=True)
