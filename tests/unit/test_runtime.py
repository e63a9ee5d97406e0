"""What a local Ray runtime is started with: the dashboard (Ray's state API, for Tune's placement-group cleaner)
on loopback unless the process says it needs no state API (`genp train`: one fit, then the process ends; `genp
tune` with single-process trials: one search without Ray Train)."""

from __future__ import annotations

import sys

import pytest
import ray

from gen_platform.training import runtime


@pytest.fixture
def init_calls(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_prestart_worker_first_driver", "0")  # restored after the test: ensure_ray sets it
    monkeypatch.setattr(runtime, "_local_runtime_started_here", False)
    monkeypatch.setattr(ray, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    return calls


def test_a_runtime_for_tune_serves_the_state_api_on_loopback(init_calls):
    runtime.ensure_ray()
    (options,) = init_calls
    assert options["include_dashboard"] and options["dashboard_host"] == "127.0.0.1"
    api = options["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"]
    assert api == f"http://127.0.0.1:{options['dashboard_port']}"  # pinned for every actor of the job
    assert runtime.owns_local_runtime()


def test_a_single_fit_starts_no_dashboard(init_calls):
    runtime.ensure_ray(state_api=False)
    runtime.ensure_ray()  # the runtime exists: nothing is started again
    (options,) = init_calls
    assert options["include_dashboard"] is False
    assert "RAY_API_SERVER_ADDRESS" not in options["runtime_env"]["env_vars"]
    assert runtime.owns_local_runtime()


@pytest.mark.parametrize(("workers_per_trial", "state_api"), [(1, False), (2, True)])
def test_a_search_starts_the_dashboard_only_for_multi_worker_trials(monkeypatch, tmp_path, workers_per_trial,
                                                                    state_api):
    """`genp tune` runs one search and ends; only a multi-worker trial (Ray Train inside) needs the state API."""
    from typer.testing import CliRunner

    from gen_platform import cli, stages
    from gen_platform.config import parse_params
    from gen_platform.workspace import Workspace
    from tests.conftest import REPO

    class Connected(Exception):
        """Stops the stage once it has connected: what follows is the search itself."""

    asked: list[bool] = []

    def connect(state_api=True):
        asked.append(state_api)
        raise Connected

    monkeypatch.setattr(runtime, "ensure_ray", connect)
    monkeypatch.setattr(stages, "require_valid_data", lambda ws: None)
    params = parse_params({"tune": {"workers_per_trial": workers_per_trial}})
    with pytest.raises(Connected):
        stages.tune(params, Workspace.at(tmp_path), process_runs_one_stage=True)
    assert asked == [state_api]

    calls: list[dict] = []  # and the CLI says that its process runs this one stage
    monkeypatch.setattr(stages, "tune", lambda params, ws, **options: calls.append(options))
    result = CliRunner().invoke(cli.app, ["tune", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert calls == [{"resume": False, "process_runs_one_stage": True}]


@pytest.mark.parametrize("command", ["train", "tune"])
def test_data_that_failed_validation_is_refused_before_a_runtime_starts(monkeypatch, tmp_path, capsys, command):
    from gen_platform import cli, quick_exit
    from gen_platform.workspace import Workspace, write_json
    from tests.conftest import REPO

    asked: list[bool] = []
    monkeypatch.setattr(runtime, "ensure_ray", lambda state_api=True: asked.append(state_api))
    monkeypatch.setattr(quick_exit, "_status", [])  # the console script's exit status, not this test process's
    write_json(Workspace.at(tmp_path).metrics("validation"), {"success": False})
    monkeypatch.setattr(sys, "argv", ["genp", command, "--params", str(REPO / "params.yaml"), "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 1 and asked == []
    assert "failed validation" in capsys.readouterr().err
