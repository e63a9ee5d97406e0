"""The platform as a service: the real Prefect server, MLflow server, Ray head and serve process from
`infra/local/stack.py`, driven through the Prefect API and, in a browser, through the Prefect UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error

import mlflow
import numpy as np
import pytest
import yaml

from bench import stack_load
from bench._stack_client import api, artifact, create_run, local_stack, logs, reported_mlflow_run, run_together, wait
from tests.conftest import REPO
from tests.integration.sockets import beyond_loopback, listening, process_trees
from tests.integration.workspace import commit_new_data_version, make_workspace, run

pytestmark = pytest.mark.integration
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # One CPU per run: two runs (the serve limit) train side by side on the stack's 2-CPU Ray head.
    workspace = make_workspace(tmp_path_factory.mktemp("stack"),
                               {"train": {"epochs": 2, "num_workers": 1, "cpus_per_worker": 1}})
    # The data watch is off: tests here change the data and call `retrain` themselves; the trigger test
    # runs the same check explicitly.
    with local_stack(workspace, workspace / ".stack", GENP_DATA_POLL_SECONDS="0") as urls:
        yield workspace, urls


def _run(base: str, deployment: str, parameters: dict, timeout: float = 400) -> dict:
    return wait(base, create_run(base, deployment, parameters)["id"], timeout)


def _registry(urls: dict, name: str):
    client = mlflow.MlflowClient(urls["mlflow"])
    return client, client.search_model_versions(f"name='{name}'")


def _automation_retrains(base: str) -> list[dict]:
    deployment = api(base, "GET", "/deployments/name/retrain/retrain")
    runs = api(base, "POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
    return [r for r in runs if (r.get("created_by") or {}).get("type") == "AUTOMATION"]


def test_deployments_exist_with_the_retrain_schedule(stack):
    _, urls = stack
    deployments = {d["name"]: d for d in api(urls["prefect"], "POST", "/deployments/filter", {})}
    assert {"train", "tune", "retrain"} <= set(deployments)
    schedules = deployments["retrain"]["schedules"]
    assert [s["schedule"]["cron"] for s in schedules] == ["0 3 * * *"]
    assert deployments["retrain"]["global_concurrency_limit"]["limit"] == 1
    assert deployments["retrain"]["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    listed = subprocess.run(["prefect", "deployment", "ls"], capture_output=True, text=True,
                            env={**os.environ, "PREFECT_API_URL": urls["prefect"] + "/api"})
    assert all(f"{name}/{name}" in listed.stdout for name in ("train", "tune", "retrain"))


def test_the_mlflow_server_runs_without_the_genai_job_runner(stack):
    """MLflow's server-side jobs (GenAI scorers, evaluations, prompt optimisation) are off: the platform never uses
    them, and they take eight processes (a job runner and seven huey consumers)."""
    workspace, _ = stack
    state = json.loads((workspace / ".stack" / "stack.json").read_text())
    commands = [" ".join(process.cmdline()) for process in process_trees([state["pids"]["mlflow"]])]
    assert any("uvicorn" in command for command in commands), commands  # the server's own processes were seen
    assert [command for command in commands if "mlflow.server.jobs" in command] == [], commands


def test_bad_parameter_fails_before_any_run(stack):
    _, urls = stack
    versions_before = len(_registry(urls, "vae-digits")[1])
    found = api(urls["prefect"], "GET", "/deployments/name/train/train")
    with pytest.raises(urllib.error.HTTPError) as error:
        api(urls["prefect"], "POST", f"/deployments/{found['id']}/create_flow_run",
             {"parameters": {"request": {"dataset": "../../etc"}}})
    assert error.value.code == 409 and "request.dataset" in error.value.read().decode()
    assert len(_registry(urls, "vae-digits")[1]) == versions_before


def test_a_custom_run_from_the_prefect_ui_registers_in_the_mlflow_server(stack):
    """The first run of the module, created in a browser through the Prefect UI's custom-run form."""
    import re

    from playwright.sync_api import expect, sync_playwright

    workspace, urls = stack
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
            # Prefect on SQLite answers 503 while its database is briefly busy (the serve process writes to it too)
            # and rolls the request back. Its API clients retry, the browser form does not: the test submits again,
            # as a user would. Any other refusal fails with its status and body.
            for _ in range(3):
                with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(
                        f"/api/deployments/{deployment_id}/create_flow_run")) as response:
                    page.get_by_role("button", name="Submit").click()
                if response.value.status != 503:
                    break
            assert response.value.ok, (response.value.status, response.value.text())
            flow_run = response.value.json()
            assert flow_run["parameters"]["request"]["epochs"] == 3
            finished = wait(urls["prefect"], flow_run["id"], 400)
            assert finished["state_type"] == "COMPLETED", logs(urls["prefect"], flow_run["id"])
            artifacts = api(urls["prefect"], "POST", "/artifacts/filter",
                            {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
            report = next(a for a in artifacts if a["key"] == "run-report")["data"]
            page.goto(f"{urls['prefect']}/v2/runs/flow-run/{flow_run['id']}", wait_until="networkidle")
            expect(page.get_by_text("Completed").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "prefect-ui-run-completed.png"), full_page=True)
            # the run report's MLflow link opens the run in MLflow's model-training view, not its GenAI overview
            link = re.search(r"MLflow run: \[\w+\]\((http[^)]+)\)", report).group(1)
            assert link.startswith(urls["mlflow"]) and link.endswith("?workflowType=machine_learning")
            page.goto(link, wait_until="domcontentloaded")  # the MLflow UI keeps polling: never network-idle
            # the run's page (on a busy machine it shows "Run page loading" for several seconds), and the experiment's
            # model-training navigation (Runs, Models) beside it
            expect(page.get_by_text("Model metrics").first).to_be_visible(timeout=60_000)
            expect(page.get_by_role("link", name="Models", exact=True)).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "mlflow-run-from-prefect-report.png"), full_page=True)
        finally:
            browser.close()
    client, versions = _registry(urls, "vae-digits")
    champion = client.get_model_version_by_alias("vae-digits", "champion")
    assert len(versions) == 1 and client.get_run(champion.run_id).data.params["train.epochs"] == "3"
    # The server serves the repository's own store, the one `make run`, `genp` and `dvc repro` write to.
    # (Spelt out: in this test process MLFLOW_TRACKING_URI is whatever an earlier test last set.)
    local = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert local.get_model_version_by_alias("vae-digits", "champion").run_id == champion.run_id
    assert client.get_run(champion.run_id).data.tags["flow_run_id"] == flow_run["id"]  # lineage to the flow run
    kinds = {a["key"]: a["type"] for a in artifacts if a["key"]}
    assert kinds == {"run-report": "markdown", "sample-grid": "image"}
    assert champion.run_id in report and "validation: **passed**" in report and "| `fd` |" in report


def test_retrain_runs_once_per_new_data_version(stack):
    """Data that the latest version was evaluated on is skipped; a new data version, seen by the data watch,
    starts exactly one retrain (a Prefect automation), which re-scores the champion on the new validation
    images; after it, the same data is skipped again."""
    workspace, urls = stack
    env = {**os.environ, "PREFECT_API_URL": urls["prefect"] + "/api"}

    def check() -> str:
        return subprocess.run([sys.executable, "-m", "flows.data_events"], cwd=workspace, env=env,
                              capture_output=True, text=True, check=True).stdout

    def decision(flow_run: dict) -> str:
        assert flow_run["state_type"] == "COMPLETED", logs(urls["prefect"], flow_run["id"])
        return artifact(urls["prefect"], flow_run["id"], "retrain-decision")

    skip = "skipped: the latest version of vae-digits was trained and evaluated on the current data"
    assert skip in decision(_run(urls["prefect"], "retrain/retrain", {}))
    before = len(_registry(urls, "vae-digits")[1])
    assert check().startswith("recorded:") and _automation_retrains(urls["prefect"]) == []

    _, new = commit_new_data_version(workspace)
    md5 = yaml.safe_load(new)["outs"][0]["md5"]
    assert check().startswith("changed:")
    assert check() == f"unchanged: {md5}\n"  # the same version again: no second event
    deadline = time.monotonic() + 60
    while not (triggered := _automation_retrains(urls["prefect"])) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(triggered) == 1, triggered
    retrained = wait(urls["prefect"], triggered[0]["id"], 600)
    assert "data changed" in decision(retrained)
    client, versions = _registry(urls, "vae-digits")
    assert len(versions) == before + 1
    newest = max(versions, key=lambda v: int(v.version))
    assert newest.tags["data_version"] == client.get_run(newest.run_id).data.tags["data_version"] == md5
    # the champion was re-scored on the new validation images; the report shows both numbers and the interval
    report = artifact(urls["prefect"], retrained["id"], "run-report")
    assert "champion (re-scored)" in report and "95% bootstrap interval" in report
    assert newest.tags["promotion.metric"] == "val_nll" and "promotion.ci_low" in newest.tags

    assert skip in decision(_run(urls["prefect"], "retrain/retrain", {}))  # promoted or not: evaluated once
    assert len(_registry(urls, "vae-digits")[1]) == before + 1
    assert len(_automation_retrains(urls["prefect"])) == 1


def _image_folder(root, classes: int = 3, per_class: int = 100):
    """A user's folder of distinct 8×8 grey PNGs, one subfolder per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(classes):
        (root / f"class-{label}").mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class-{label}" / f"{index}.png")
    return root


def test_concurrent_runs_each_record_their_own_request_and_leave_the_repository_alone(stack, tmp_path):
    """Three trainings created at the same moment: a VAE with beta 0.5 at the older data revision, a VAE on an
    image folder the user imported, and the rgb64 preset's DCGAN on photo-crops; both new datasets are committed with DVC, as a user
    adds theirs. Each run works in its own workspace, so each registered version's MLflow run holds what its own
    request asked (its beta, its data version, its dataset's facts). Three requests are beyond the serve limit
    of 2: one queues, none is lost, and the concurrent promotions leave one consistent champion per model
    (bench/stack_load.py's criteria; its 8-request load runs in `make bench`)."""
    workspace, urls = stack
    run(["genp", "data", "import-folder", str(_image_folder(tmp_path / "pets")), "--name", "pets"], workspace)
    run(["genp", "data", "import", "photo-crops", "--count", "300"], workspace)
    old, new = commit_new_data_version(workspace)
    md5 = {name: yaml.safe_load(text)["outs"][0]["md5"] for name, text in (("old", old), ("new", new))}
    default_beta = yaml.safe_load((workspace / "params.yaml").read_text())["model"]["vae"]["beta"]
    assert default_beta != 0.5
    older = run(["git", "rev-parse", "HEAD~1"], workspace).stdout.strip()
    # 300 images: 30 in each of the validation and test splits; one classifier epoch (what it scores is not checked)
    small = {"validation": {"min_rows": 20}, "classifier": {"epochs": 1}}
    preset_gan = yaml.safe_load((workspace / "presets" / "rgb64.yaml").read_text())["model"]["gan"]
    requests = {
        "vae beta 0.5 at the older revision": ({"family": "vae", "data_revision": older,
                                                "overrides": {"model": {"vae": {"beta": 0.5}}}}, "vae-digits", 0.5, "old"),
        "vae on an imported folder": ({"dataset": "pets", "overrides": small}, "vae-pets", default_beta, "new"),
        "gan on photo-crops, the rgb64 preset's DCGAN": ({"family": "gan", "dataset": "photo-crops", "overrides": {
            **small, "model": {"gan": {**preset_gan, "fd_samples": 100}}}}, "gan-photo-crops", None, "new")}
    finished = run_together(urls["prefect"], "train/train", [{"request": r[0]} for r in requests.values()], 900)
    assert [f["state_type"] for f in finished] == ["COMPLETED"] * 3, [logs(urls["prefect"], f["id"]) for f in finished]
    assert stack_load.peak_concurrency(finished) == 2  # the serve limit, reached and kept
    assert [f["name"] for f in finished] == ["train vae-digits", "train vae-pets", "train gan-photo-crops"]
    client, _ = _registry(urls, "vae-digits")
    run_ids = [reported_mlflow_run(urls["prefect"], f["id"]) for f in finished]
    assert len(set(run_ids)) == 3
    for (name, (_, model, beta, data)), run_id in zip(requests.items(), run_ids):
        recorded = client.get_run(run_id).data
        assert recorded.params["model.family"] == model.split("-")[0], name
        assert recorded.tags["data_version"] == md5[data], name
        if beta is not None:
            assert float(recorded.params["model.vae.beta"]) == float(beta), name
        assert any(a.path == "samples.png" for a in client.list_artifacts(run_id)), name
        (version,) = client.search_model_versions(f"run_id='{run_id}'")
        assert version.name == model and version.tags["data_version"] == md5[data], name
    # the dataset's facts came from its manifest: 64×64 RGB for photo-crops, 3 named classes for the folder
    assert client.get_run(run_ids[2]).data.params["data.image_size"] == "64"
    assert client.get_run(run_ids[2]).data.params["data.channels"] == "3"
    assert client.get_run(run_ids[2]).data.params["model.gan.latent_dim"] == str(preset_gan["latent_dim"])
    pets = client.get_model_version_by_alias("vae-pets", "champion")
    card = client.download_artifacts(pets.run_id, "model_card.md", str(tmp_path))
    assert "0: `class-0`, 1: `class-1`, 2: `class-2`" in open(card).read()
    assert all(stack_load.champion_consistent(client, model) for model in ("vae-digits", "vae-pets", "gan-photo-crops"))
    assert (workspace / "data.dvc").read_text() == new  # byte-identical: no run checked anything out
    assert run(["git", "status", "--porcelain"], workspace).stdout == ""
    assert not (workspace / "models").exists() and not (workspace / "data" / "prepared").exists()


def test_stack_load_quick_mode_has_the_committed_shape(stack, tmp_path):
    """bench/stack_load.py's measurement, its quick size, against this module's stack (starting a stack of its own
    would double the cost): its result has the committed result's shape and meets its criteria."""
    from bench import report

    _, urls = stack
    result = stack_load.described(stack_load.measure(urls, stack_load.QUICK_REQUESTS, timeout=600), quick=True)
    committed = json.loads(stack_load.RESULT.read_text())
    assert set(result) - {"quick"} == set(committed) - {"commit", "environment", "quick"}
    assert result["criteria_met"] and result["completed"] == result["mlflow_runs"] == stack_load.QUICK_REQUESTS
    (tmp_path / "stack_load.json").write_text(json.dumps(result))
    assert "| `stack_load` | 2 of 2 concurrent train requests completed" in report.render(tmp_path)


def test_no_process_of_the_stack_listens_beyond_loopback(stack):
    """Servers, Ray head daemons, the serve process and everything they started (Ray workers of the runs
    above included): loopback only."""
    workspace, urls = stack
    state = json.loads((workspace / ".stack" / "stack.json").read_text())
    processes = process_trees(list(state["pids"].values()), marker=state["ray_temp_dir"])
    sockets = listening(processes)
    ports = {port for _, _, port in sockets}
    for url in (urls["prefect"], urls["mlflow"], "http://" + state["urls"]["ray"]):
        assert int(url.rsplit(":", 1)[1]) in ports, (url, sockets)  # the servers themselves were checked
    assert beyond_loopback(sockets) == [], beyond_loopback(sockets)


def test_a_killed_flow_run_ends_crashed_and_its_retry_resumes_the_training(stack):
    """The process of a `train` flow run is killed with SIGKILL after its first checkpoint: Prefect records the run
    CRASHED, its workspace is marked crashed, and the run retried as the UI's Retry does (the same flow run, so the
    same workspace) resumes the same MLflow run from its last checkpoint."""
    import signal

    from flows.workspaces import crashed_runs

    workspace, urls = stack
    base = urls["prefect"]
    # small batches: epochs long enough (about a second each) to kill the run between two of them, after the
    # second checkpoint (the first is then on record with Ray Train's controller, as a plain directory may not be)
    flow_run = create_run(base, "train/train", {"request": {"epochs": 8, "overrides": {"train": {"batch_size": 8}}}})
    root = workspace / "runs" / flow_run["id"]
    in_progress = root / "models" / "train_in_progress.json"
    deadline = time.monotonic() + 300
    while not (in_progress.exists() and len(list((root / "ray_results").rglob("checkpoint_*"))) >= 2):
        assert time.monotonic() < deadline, logs(base, flow_run["id"])
        time.sleep(0.1)
    run_id = json.loads(in_progress.read_text())["run_id"]
    owner = json.loads((root / "run.json").read_text())["owner"]
    os.kill(int(owner.split(":")[1]), signal.SIGKILL)

    crashed = wait(base, flow_run["id"], 120)
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    assert root in crashed_runs(workspace)
    client = mlflow.MlflowClient(urls["mlflow"])
    assert client.get_run(run_id).info.status == "RUNNING"  # until the platform next opens a run

    api(base, "POST", f"/flow_runs/{flow_run['id']}/set_state",
        {"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "retried by the test"}, "force": True})
    retried = wait(base, flow_run["id"], 400)
    assert retried["state_type"] == "COMPLETED", logs(base, flow_run["id"])
    assert f"resuming the interrupted MLflow run {run_id}" in logs(base, flow_run["id"])
    assert "resumed from the checkpoint of epoch" in (workspace / ".stack" / "logs" / "serve.log").read_text()
    assert json.loads((root / "run.json").read_text())["status"] == "completed"
    assert reported_mlflow_run(base, flow_run["id"]) == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val/neg_elbo")) == list(range(1, 9))
