"""Per-epoch curves in MLflow while a training runs: each epoch is logged as soon as rank 0 has reported it, so
the MLflow UI shows the curves of a RUNNING run. Every epoch is logged once (step = epoch): an epoch a resumed
training repeats keeps its first values, and the driver fills in, at the end, any epoch whose live logging failed
(for example a worker on a node that cannot reach the store).

Who logs depends on the store:
- a local store (the default SQLite file): the driver, which has MLflow loaded and the store open. Rank 0 only
  leaves each epoch's record as a small file in a directory the driver watches (`EpochRelay`). Logging from the
  worker imported MLflow and opened its store there, on a thread beside the training (about 3 s of CPU, and the
  GIL): on digits, epochs 2-6 trained 3-20× slower and `genp train` took 1.2 s longer (medians of 4
  interleaved runs);
- a tracking server: rank 0 logs to it directly, on a background thread, one epoch after another (a worker on
  another node reaches the server, not the driver's disk), and waits for it only after the last epoch. While the
  server is unreachable, epochs are kept and sent with the first attempt that gets through; the training never
  waits for the server (`tracking/outage.py`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_platform.tracking.metric_names import epoch_metric
from gen_platform.training.hooks import EpochHook, WorkerState

STEP_KEY = "epoch_seconds"  # in every epoch's record: its history says which epochs are logged


def log_epochs(tracking_uri: str, run_id: str, records: list[dict[str, Any]]) -> int:
    """Log the records whose epoch the run does not hold yet; returns how many epochs were logged."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri)
    logged = {metric.step for metric in client.get_metric_history(run_id, epoch_metric(STEP_KEY))}
    fresh = [record for record in records if int(record["epoch"]) not in logged]
    now = int(time.time() * 1000)
    metrics = [Metric(epoch_metric(key), float(value), now, int(record["epoch"]))
               for record in fresh for key, value in record.items() if key != "epoch"]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    return len(fresh)


_logger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-curves")  # one thread: epochs in order
_unsent: dict[str, list[dict[str, float]]] = {}  # run id → epochs rank 0 has not logged yet, oldest first
_sending: dict[str, Future] = {}
_unsent_lock = threading.Lock()


@dataclass(frozen=True)
class LiveCurves(EpochHook):
    tracking_uri: str
    run_id: str
    relay_directory: str | None = None  # set: the driver's `EpochRelay` logs what rank 0 leaves there

    def on_epoch_reported(self, state: WorkerState, record: dict[str, float]) -> None:
        if state.rank != 0:
            return
        if self.relay_directory is not None:
            self._leave_for_relay(record)
            return
        # A server that is down fails each attempt within seconds (tracking/outage.py); epochs that end meanwhile
        # wait in `_unsent` for the next attempt instead of queueing an attempt each, so training never waits.
        with _unsent_lock:
            _unsent.setdefault(self.run_id, []).append(record)
            sending = _sending.get(self.run_id)
            if sending is None or sending.done():
                sending = _sending[self.run_id] = _logger.submit(self._send_unsent)
        # After the last epoch: the attempt in flight, then one for the epochs that ended during it, if the server
        # answered; whatever is still unsent, the driver logs from the history after training.
        if state.epoch + 1 == state.epochs and sending.result():
            self._send_unsent()

    def _leave_for_relay(self, record: dict[str, float]) -> None:
        path = Path(self.relay_directory) / f"epoch-{int(record['epoch']):06d}.json"
        try:
            path.with_suffix(".tmp").write_text(json.dumps(record))
            os.replace(path.with_suffix(".tmp"), path)  # the relay never reads half a record
        except OSError as error:  # rank 0 on another node than the driver: no live curves, never a failed training
            _missed([record], error)

    def _send_unsent(self) -> bool:
        """Whether every epoch unsent at the call is now in MLflow."""
        with _unsent_lock:
            batch = list(_unsent.get(self.run_id, []))
        if not batch:
            return True
        try:
            log_epochs(self.tracking_uri, self.run_id, batch)
        except Exception as error:  # kept for the next attempt; never fail the training
            _missed(batch, error)
            return False
        with _unsent_lock:
            del _unsent[self.run_id][:len(batch)]  # only this thread removes; new epochs were appended behind
        return True


def _missed(records: list[dict[str, float]], error: Exception) -> None:
    epochs = ", ".join(str(record["epoch"]) for record in records)
    reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
    print(f"live MLflow logging of epoch(s) {epochs} failed ({reason}); kept and logged when the tracking store "
          "answers again", flush=True)


class EpochRelay:
    """Driver side of a local store: logs the epochs rank 0 leaves in `directory` as they appear (polled every
    `interval` seconds) and, on leaving, whatever is still there."""

    def __init__(self, tracking_uri: str, run_id: str, directory: str, interval: float = 0.2):
        self.tracking_uri, self.run_id, self.directory, self.interval = tracking_uri, run_id, Path(directory), interval
        self.logged: set[str] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="epoch-relay", daemon=True)

    def __enter__(self) -> EpochRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join()
        self._relay()

    def _watch(self) -> None:
        while not self.stopped.wait(self.interval):
            self._relay()

    def _relay(self) -> None:
        fresh = sorted(path for path in self.directory.glob("epoch-*.json") if path.name not in self.logged)
        if not fresh:
            return
        try:
            log_epochs(self.tracking_uri, self.run_id, [json.loads(path.read_text()) for path in fresh])
        except Exception as error:  # the curves are filled in after training; never fail the training
            _missed([json.loads(path.read_text()) for path in fresh], error)
        self.logged.update(path.name for path in fresh)
