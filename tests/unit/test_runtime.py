"""What a local Ray runtime is started with: the dashboard (Ray's state API, for Tune's placement-group cleaner)
on loopback unless the process says it needs no state API (`genp train`: one fit, then the process ends)."""

from __future__ import annotations

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
