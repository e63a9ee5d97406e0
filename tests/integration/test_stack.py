"""The platform as a service: the real Prefect server, MLflow server, Ray head and serve process from
`infra/local/stack.py`, driven through the Prefect API and, in a browser, through the Prefect UI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gen_platform.data.arrays import ImageArrays, load_npz, write_npz
from tests.conftest import REPO
from tests.integration.workspace import make_workspace, run

pytestmark = pytest.mark.integration
ARTIFACTS = REPO / "test-artifacts"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workspace = make_workspace(tmp_path_factory.mktemp("stack"), {"train": {"epochs": 2, "num_workers": 1}})
    ports = {f"GENP_{name}_PORT": str(_free_port()) for name in ("PREFECT", "MLFLOW", "RAY", "RAY_DASHBOARD")}
    env = {**os.environ, **ports, "GENP_STACK_DIR": str(workspace / ".stack")}
    command = [sys.executable, str(workspace / "infra" / "local" / "stack.py")]
    started = subprocess.run(command + ["up"], cwd=workspace, env=env, capture_output=True, text=True, timeout=400)
    urls = {"prefect": f"http://127.0.0.1:{ports['GENP_PREFECT_PORT']}",
            "mlflow": f"http://127.0.0.1:{ports['GENP_MLFLOW_PORT']}"}
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield workspace, urls
    finally:
        subprocess.run(command + ["down"], cwd=workspace, env=env, timeout=120)
        leftovers = subprocess.run(["pgrep", "-f", str(workspace)], capture_output=True, text=True).stdout.split()
        assert leftovers == [], f"processes left behind: {leftovers}"


def _api(base: str, method: str, path: str, body: dict | None = None, attempts: int = 6):
    """One Prefect API call, retried as Prefect's own client does: the server answers 503 when its SQLite
    database is briefly busy (the serve process and running flows write to it too) and rolls the request back."""
    request = urllib.request.Request(f"{base}/api{path}", method=method, headers={"Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(2 ** attempt)


def _run(base: str, deployment: str, parameters: dict, timeout: float = 400) -> dict:
    found = _api(base, "GET", f"/deployments/name/{deployment}")
    flow_run = _api(base, "POST", f"/deployments/{found['id']}/create_flow_run", {"parameters": parameters})
    return _wait(base, flow_run["id"], timeout)


def _wait(base: str, flow_run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = _api(base, "GET", f"/flow_runs/{flow_run_id}")
        if flow_run["state_type"] in TERMINAL:
            return flow_run
        time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s")


def _logs(base: str, flow_run_id: str) -> str:
    logs = _api(base, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    return "\n".join(entry["message"] for entry in logs)


def _artifact(base: str, flow_run_id: str, key: str) -> str:
    """An artifact's data; unlike logs, which Prefect ships in the background, artifacts exist once the run ends."""
    artifacts = _api(base, "POST", "/artifacts/filter",
                     {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}})
    assert len(artifacts) == 1, f"flow run {flow_run_id} has {len(artifacts)} artifacts keyed {key!r}"
    return artifacts[0]["data"]


def _registry(urls: dict, name: str):
    import mlflow

    client = mlflow.MlflowClient(urls["mlflow"])
    return client, client.search_model_versions(f"name='{name}'")


def test_deployments_exist_with_the_retrain_schedule(stack):
    _, urls = stack
    deployments = {d["name"]: d for d in _api(urls["prefect"], "POST", "/deployments/filter", {})}
    assert {"train", "tune", "retrain"} <= set(deployments)
    schedules = deployments["retrain"]["schedules"]
    assert [s["schedule"]["cron"] for s in schedules] == ["0 3 * * *"]
    assert deployments["retrain"]["global_concurrency_limit"]["limit"] == 1
    assert deployments["retrain"]["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    listed = subprocess.run(["prefect", "deployment", "ls"], capture_output=True, text=True,
                            env={**os.environ, "PREFECT_API_URL": urls["prefect"] + "/api"})
    assert all(f"{name}/{name}" in listed.stdout for name in ("train", "tune", "retrain"))


def test_api_triggered_run_registers_in_the_mlflow_server(stack):
    workspace, urls = stack
    flow_run = _run(urls["prefect"], "train/train", {"request": {"family": "vae", "overrides": {"model": {"vae": {"beta": 2}}}}})
    assert flow_run["state_type"] == "COMPLETED", _logs(urls["prefect"], flow_run["id"])
    client, versions = _registry(urls, "vae-digits")
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    assert len(versions) == 1 and client.get_run(champion.run_id).data.params["model.beta"] == "2.0"
    artifacts = _api(urls["prefect"], "POST", "/artifacts/filter",
                     {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
    kinds = {artifact["key"]: artifact["type"] for artifact in artifacts if artifact["key"]}
    assert kinds == {"run-report": "markdown", "sample-grid": "image"}
    report = next(a for a in artifacts if a["key"] == "run-report")["data"]
    assert champion.run_id in report and "validation: **passed**" in report and "| `fd` |" in report


def test_bad_parameter_fails_before_any_run(stack):
    _, urls = stack
    versions_before = len(_registry(urls, "vae-digits")[1])
    found = _api(urls["prefect"], "GET", "/deployments/name/train/train")
    with pytest.raises(urllib.error.HTTPError) as error:
        _api(urls["prefect"], "POST", f"/deployments/{found['id']}/create_flow_run",
             {"parameters": {"request": {"dataset": "../../etc"}}})
    assert error.value.code == 409 and "request.dataset" in error.value.read().decode()
    assert len(_registry(urls, "vae-digits")[1]) == versions_before


def test_retrain_skips_unchanged_data_then_retrains_a_new_version(stack):
    workspace, urls = stack
    skipped = _run(urls["prefect"], "retrain/retrain", {})
    assert skipped["state_type"] == "COMPLETED"
    decision = _artifact(urls["prefect"], skipped["id"], "retrain-decision")
    assert "skipped: the latest version of vae-digits was trained and evaluated on the current data" in decision
    assert len(_registry(urls, "vae-digits")[1]) == 1

    raw = workspace / "data" / "raw" / "digits.npz"
    data = load_npz(raw)
    extra = np.roll(data.images[:120], 1, axis=2)  # a new batch of images: shifted copies
    write_npz(raw, ImageArrays(np.concatenate([data.images, extra]), np.concatenate([data.labels, data.labels[:120]])))
    run(["dvc", "commit", "-f", "data.dvc"], workspace)
    new_version = run(["git", "diff", "data.dvc"], workspace).stdout
    assert "md5" in new_version

    retrained = _run(urls["prefect"], "retrain/retrain", {})
    assert retrained["state_type"] == "COMPLETED", _logs(urls["prefect"], retrained["id"])
    assert "data changed" in _artifact(urls["prefect"], retrained["id"], "retrain-decision")
    client, versions = _registry(urls, "vae-digits")
    assert len(versions) == 2
    newest = max(versions, key=lambda v: int(v.version))
    import yaml

    md5 = yaml.safe_load((workspace / "data.dvc").read_text())["outs"][0]["md5"]
    assert client.get_run(newest.run_id).data.tags["data_version"] == md5

    again = _run(urls["prefect"], "retrain/retrain", {})  # promoted or not, the new data was evaluated once
    assert "skipped: the latest version" in _artifact(urls["prefect"], again["id"], "retrain-decision")
    assert len(_registry(urls, "vae-digits")[1]) == 2


def test_custom_run_from_the_prefect_ui(stack):
    import re

    from playwright.sync_api import expect, sync_playwright

    _, urls = stack
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(urls["prefect"] + "/", wait_until="domcontentloaded")
            page.get_by_role("link", name="Deployments", exact=True).click()
            page.get_by_role("link", name="train", exact=True).first.click()
            expect(page).to_have_url(re.compile(r"/deployments/deployment/[0-9a-f-]{36}"))
            deployment_id = re.search(r"/deployment/([0-9a-f-]{36})", page.url).group(1)
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Custom run").click()
            expect(page.get_by_label("Run Name")).not_to_have_value("")  # the form has finished loading
            # `epochs` is optional (int or None): switch its type toggle to int, then type the value.
            page.get_by_text("int", exact=True).click()
            epochs = page.locator("input[type=number]").first
            epochs.fill("3")
            expect(epochs).to_have_value("3")
            page.screenshot(path=str(ARTIFACTS / "prefect-ui-custom-run-form.png"), full_page=True)
            with page.expect_response(lambda r: r.request.method == "POST" and
                                      r.url.endswith(f"/api/deployments/{deployment_id}/create_flow_run")) as response:
                page.get_by_role("button", name="Submit").click()
            flow_run = response.value.json()
            assert flow_run["parameters"]["request"]["epochs"] == 3
            finished = _wait(urls["prefect"], flow_run["id"], 400)
            page.goto(f"{urls['prefect']}/v2/runs/flow-run/{flow_run['id']}", wait_until="networkidle")
            expect(page.get_by_text("Completed").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "prefect-ui-run-completed.png"), full_page=True)
        finally:
            browser.close()
    assert finished["state_type"] == "COMPLETED"
    client, versions = _registry(urls, "vae-digits")
    newest = max(versions, key=lambda v: int(v.version))
    assert client.get_run(newest.run_id).data.params["train.epochs"] == "3"
