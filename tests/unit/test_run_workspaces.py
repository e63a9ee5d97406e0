"""The disk policy of run workspaces: finished ones beyond the newest N go, running ones always stay."""

from __future__ import annotations

import pytest

from flows.workspaces import dataset_manifest, list_runs, prune, run_workspace
from gen_platform.errors import ConfigError
from gen_platform.workspace import write_json


def _run_dir(repo, name, status, started):
    write_json(repo / "runs" / name / "run.json", {"status": status, "started": started})


def test_prune_keeps_the_newest_finished_and_every_running_workspace(tmp_path):
    for index, status in enumerate(["completed", "running", "failed", "completed", "completed", "running"]):
        _run_dir(tmp_path, f"r{index}", status, started=float(index))
    removed = prune(tmp_path, keep=2)
    assert sorted(path.name for path in removed) == ["r0", "r2"]  # finished: r4, r3 (newest) kept; r2, r0 go
    assert [path.name for path, _ in list_runs(tmp_path)] == ["r5", "r4", "r3", "r1"]


def test_a_run_workspace_holds_its_own_copy_of_the_data_and_its_outcome(tmp_path, monkeypatch):
    monkeypatch.setenv("GENP_KEEP_RUNS", "1")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "digits.npz").write_bytes(b"images")
    (tmp_path / "data" / "raw" / "digits.manifest.json").write_text('{"class_names": ["zero"]}')
    (tmp_path / "data" / "raw" / "pets.npz").write_bytes(b"images")
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc.dir\n  path: data/raw\n")
    with run_workspace(tmp_path, "first", "digits") as workspace:
        assert workspace.repo == tmp_path.resolve() and workspace.root == tmp_path.resolve() / "runs" / "first"
        assert workspace.raw("digits").read_bytes() == b"images"
        manifest = workspace.root / "data" / "raw" / "digits.manifest.json"
        assert manifest.read_text() == '{"class_names": ["zero"]}'  # the manifest travels along
        assert (workspace.root / "data.dvc").read_text() == (tmp_path / "data.dvc").read_text()
        assert list_runs(tmp_path)[0][1]["status"] == "running"
    with pytest.raises(RuntimeError, match="boom"):
        with run_workspace(tmp_path, "second", "digits"):
            raise RuntimeError("boom")
    (status,) = [status for _, status in list_runs(tmp_path)]  # keep 1: the first, finished earlier, was pruned
    assert status["run_id"] == "second" and status["status"] == "failed"
    with pytest.raises(ConfigError, match=r"pets.manifest.json: no manifest for dataset 'pets'; pets.npz was "
                                          r"imported before datasets had manifests: run `genp data describe pets`"):
        dataset_manifest(tmp_path, "pets")



def test_a_missing_dataset_is_named_with_the_datasets_present(tmp_path):
    (tmp_path / "data" / "raw").mkdir(parents=True)
    for name in ("pets", "digits"):
        (tmp_path / "data" / "raw" / f"{name}.npz").write_bytes(b"images")
    with pytest.raises(ConfigError, match=r"dataset: 'faces' is not in the current data \(data/raw\); datasets "
                                          r"there: digits, pets"):
        dataset_manifest(tmp_path, "faces")


# A flow run's process: takes its workspace, says so, and waits to be killed.
HOLD_A_WORKSPACE = """
import sys, time
from flows.workspaces import run_workspace
with run_workspace(sys.argv[1], "killed", "digits"):
    print("inside", flush=True)
    time.sleep(600)
"""


def test_a_workspace_whose_process_was_killed_is_marked_crashed_and_pruned(tmp_path):
    import signal
    import subprocess
    import sys

    from flows.workspaces import crashed_runs
    from tests.conftest import REPO

    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "digits.npz").write_bytes(b"images")
    (tmp_path / "data" / "raw" / "digits.manifest.json").write_text("{}")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_WORKSPACE, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert "inside\n" in iter(holder.stdout.readline, "")  # after the workspace's own line
        assert [status["status"] for _, status in list_runs(tmp_path)] == ["running"]  # its process is alive
        with run_workspace(tmp_path, "alive", "digits"):  # a running one of this process is never taken for dead
            assert crashed_runs(tmp_path) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert crashed_runs(tmp_path) == [tmp_path.resolve() / "runs" / "killed"]
    assert '"status": "crashed"' in (tmp_path / "runs" / "killed" / "run.json").read_text()  # marked on disk
    assert [path.name for path in prune(tmp_path, keep=1)] == ["killed"]  # finished like any other


def test_the_serve_process_marks_workspaces_of_dead_processes_crashed_when_it_starts(tmp_path, monkeypatch, capsys):
    """A serve process that was killed with its runs left them `running`; the next one reconciles them before it
    serves (here its serving is replaced: only what happens before it is under test)."""
    import subprocess
    import sys

    from flows import serve

    dead = subprocess.run([sys.executable, "-c", "from gen_platform.tracking.owners import this_process; "
                           "print(this_process())"], capture_output=True, text=True, check=True).stdout.strip()
    write_json(tmp_path / "runs" / "orphan" / "run.json", {"status": "running", "started": 1.0, "owner": dead})
    served = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENP_DATA_POLL_SECONDS", "0")
    monkeypatch.setattr(serve, "serve", lambda *deployments, limit: served.append(limit))
    serve.main()
    assert served == [2]
    assert [status["status"] for _, status in list_runs(tmp_path)] == ["crashed"]
    assert "runs/orphan: its process is gone; marked crashed" in capsys.readouterr().out
