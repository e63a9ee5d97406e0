"""Rank 0 logs each epoch's curves in the background, in order, and has logged them all when the last epoch
returns."""

import threading

from gen_platform.tracking import live
from gen_platform.training.hooks import WorkerState


def test_epochs_are_logged_in_the_background_in_order_and_flushed_after_the_last(monkeypatch):
    first_log_may_finish = threading.Event()
    logged: list[int] = []

    def slow_first_log(tracking_uri, run_id, records):
        if not logged:
            assert first_log_may_finish.wait(timeout=10), "the hook waited for the first log to finish"
        logged.extend(int(record["epoch"]) for record in records)
        return len(records)

    monkeypatch.setattr(live, "log_epochs", slow_first_log)
    hook = live.LiveCurves("sqlite:///unused.db", "run")
    for epoch in range(2):  # returns while the first log is still blocked: the training goes on
        hook.on_epoch_reported(WorkerState(0, 2, epoch, 3, resumed=False), {"epoch": epoch + 1})
        hook.on_epoch_reported(WorkerState(1, 2, epoch, 3, resumed=False), {"epoch": epoch + 1})  # rank 1: nothing
    assert logged == []
    first_log_may_finish.set()
    hook.on_epoch_reported(WorkerState(0, 2, 2, 3, resumed=False), {"epoch": 3})
    assert logged == [1, 2, 3]


def test_a_failed_log_is_reported_and_never_fails_the_training(monkeypatch, capsys):
    def unreachable_store(tracking_uri, run_id, records):
        raise ConnectionError("no store")

    monkeypatch.setattr(live, "log_epochs", unreachable_store)
    live.LiveCurves("sqlite:///unused.db", "run").on_epoch_reported(WorkerState(0, 1, 0, 1, resumed=False),
                                                                  {"epoch": 1})
    assert "live MLflow logging of epoch 1 failed (ConnectionError('no store'))" in capsys.readouterr().out
