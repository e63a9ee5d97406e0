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
    hook = live.LiveCurves("http://127.0.0.1:9", "in-order")
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
    live.LiveCurves("http://127.0.0.1:9", "unreachable").on_epoch_reported(WorkerState(0, 1, 0, 1, resumed=False),
                                                                         {"epoch": 1})
    assert "live MLflow logging of epoch(s) 1 failed (ConnectionError: no store)" in capsys.readouterr().out


def test_epochs_that_end_during_an_outage_wait_for_the_next_attempt_that_gets_through(monkeypatch):
    """One attempt at a time, never one queued per epoch (each attempt against a dead server takes seconds):
    epochs that end meanwhile are sent together by the first attempt after the server is back."""
    attempts: list[list[int]] = []
    server_up = False

    def flaky_store(tracking_uri, run_id, records):
        attempts.append([int(record["epoch"]) for record in records])
        if not server_up:
            raise ConnectionError("connection refused")
        return len(records)

    monkeypatch.setattr(live, "log_epochs", flaky_store)
    hook = live.LiveCurves("http://127.0.0.1:9", "outage")
    for epoch in range(2):
        hook.on_epoch_reported(WorkerState(0, 1, epoch, 3, resumed=False), {"epoch": epoch + 1})
        live._sending["outage"].result()  # the attempt (failed) is over before the next epoch ends
    server_up = True
    hook.on_epoch_reported(WorkerState(0, 1, 2, 3, resumed=False), {"epoch": 3})
    assert attempts == [[1], [1, 2], [1, 2, 3]]  # every unsent epoch kept, then sent once the server answered
    assert live._unsent["outage"] == []


def test_with_a_local_store_rank_0_leaves_each_epoch_to_the_driver_which_logs_it_while_training(monkeypatch,
                                                                                               tmp_path):
    arrived = threading.Event()
    logged: list[tuple[str, list[int]]] = []

    def log_in_driver(tracking_uri, run_id, records):
        logged.append((threading.current_thread().name, [int(record["epoch"]) for record in records]))
        arrived.set()
        return len(records)

    monkeypatch.setattr(live, "log_epochs", log_in_driver)
    hook = live.LiveCurves("sqlite:///unused.db", "run", relay_directory=str(tmp_path))
    with live.EpochRelay("sqlite:///unused.db", "run", str(tmp_path), interval=0.01) as relay:
        hook.on_epoch_reported(WorkerState(0, 2, 0, 3, resumed=False), {"epoch": 1, "val_loss": 2.5})
        hook.on_epoch_reported(WorkerState(1, 2, 0, 3, resumed=False), {"epoch": 1, "val_loss": 9.0})  # nothing
        assert arrived.wait(timeout=10)  # logged while the training still runs
        relay.stopped.set()  # the watcher stops polling: what comes now is left for the last sweep
        relay.thread.join()
        hook.on_epoch_reported(WorkerState(0, 2, 1, 3, resumed=False), {"epoch": 2, "val_loss": 2.0})
        hook.on_epoch_reported(WorkerState(0, 2, 2, 3, resumed=False), {"epoch": 3, "val_loss": 1.5})
    assert logged == [("epoch-relay", [1]), ("MainThread", [2, 3])]  # the watcher, then the sweep on leaving
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch-000001.json", "epoch-000002.json",
                                                                 "epoch-000003.json"]  # no half-written .tmp


def test_rank_0_that_cannot_reach_the_drivers_directory_trains_on(capsys):
    hook = live.LiveCurves("sqlite:///unused.db", "run", relay_directory="/nonexistent/genp-epochs")
    hook.on_epoch_reported(WorkerState(0, 1, 0, 1, resumed=False), {"epoch": 1})
    assert "live MLflow logging of epoch(s) 1 failed (FileNotFoundError" in capsys.readouterr().out
