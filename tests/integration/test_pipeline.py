"""The whole pipeline through `dvc repro`: real DVC, GE, Ray Train, MLflow registry, and `mlflow models serve` of
the champion. The tests share one workspace and run in order: each starts from what the ones before it left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from gen_platform.data.arrays import ImageArrays, load_npz, write_npz
from gen_platform.tracking.model_io import load_generator
from gen_platform.training.loopback import free_loopback_port
from tests.conftest import REPO
from tests.integration.workspace import GIT, QUICK_EVALUATION, make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration
EPOCHS = 3
MODEL = "vae-digits"
DEFAULT_VAE = yaml.safe_load((REPO / "params.yaml").read_text())["model"]["vae"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("pipeline"), {"train": {"epochs": EPOCHS}})


def _stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def _champion(workspace):
    client = mlflow_client(workspace)
    versions = client.search_model_versions(f"name='{MODEL}'")
    return str(client.get_model_version_by_alias(MODEL, "champion").version), len(versions)


def test_first_repro_registers_a_champion_that_samples(workspace, ray_head):
    result = run(["dvc", "repro"], workspace, env=ray_head)
    assert _stages_run(result.stdout) == ["prepare", "validate", "features", "train", "evaluate", "register"]
    assert f"epoch {EPOCHS}/{EPOCHS}" in result.stdout + result.stderr  # progress reaches the user

    client = mlflow_client(workspace)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    model = load_generator(f"models:/{MODEL}@champion")
    samples = model.sample(16)
    assert samples.shape == (16, 1, 8, 8) and 0 <= float(samples.min()) and float(samples.max()) <= 1
    # it samples from the latent prior fitted once training ended, not from N(0, I)
    assert model.architecture.prior_components == DEFAULT_VAE["prior_components"] > 0
    assert float(model.prior_means.abs().max()) > 0

    run_data = client.get_run(champion.run_id).data
    data_md5 = yaml.safe_load((workspace / "data.dvc").read_text())["outs"][0]["md5"]
    assert run_data.tags["data_version"] == data_md5
    assert len(run_data.tags["git_commit"]) >= 40 and run_data.tags["validation"] == "passed"
    assert run_data.params["model.vae.beta"] == str(DEFAULT_VAE["beta"]) and run_data.params["train.num_workers"] == "1"
    curve = client.get_metric_history(champion.run_id, "val/neg_elbo")
    assert [m.step for m in curve] == list(range(1, EPOCHS + 1))
    # MLflow's chart sections: per-epoch curves under train/ and val/, the evaluation under eval/
    expected_metrics = {"train/loss", "train/recon", "train/kl", "val/neg_elbo"} | {
        f"eval/{name}" for name in ("test_neg_elbo", "nll", "fd", "kid", "precision", "recall", "density", "coverage",
                                    "classifier_test_accuracy", "copy_rate", "copy_threshold", "fd_ci_low",
                                    "fd_ci_high", "metric_real_images", "metric_generated_images", "nll_images")}
    assert expected_metrics <= set(run_data.metrics)
    assert {name.split("/")[0] for name in run_data.metrics} <= {"train", "val", "eval", "system"}
    # the sample sizes the params ask for, and the FD inside its interval
    metrics = {name.removeprefix("eval/"): value for name, value in run_data.metrics.items()}
    asked = yaml.safe_load((workspace / "params.yaml").read_text())["evaluate"]["metric_samples"]
    assert metrics["metric_real_images"] == metrics["metric_generated_images"] == asked == QUICK_EVALUATION["metric_samples"]
    assert metrics["fd_ci_low"] <= metrics["fd"] <= metrics["fd_ci_high"]
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"samples.png", "reconstructions.png", "interpolations.png", "closest_training_images.png",
            "model_card.md"} <= artifacts
    assert "copy_rate" in champion.description  # the memorisation check is on the model card
    assert data_md5 in champion.description and "| `nll` |" in champion.description
    assert champion.tags["promotion.promoted"] == "True"


def test_lineage_of_the_trained_champion(workspace):
    data_md5 = yaml.safe_load((workspace / "data.dvc").read_text())["outs"][0]["md5"]
    lineage = json.loads(run(["genp", "lineage", f"{MODEL}@champion", "--json"], workspace).stdout)
    # DVC rewrote dvc.lock during the run: bookkeeping, so the commit still counts as clean.
    assert lineage["code"] == {"git_commit": run(["git", "rev-parse", "HEAD"], workspace).stdout.strip(),
                               "clean": True, "uncommitted": [], "diff": None}
    assert lineage["data"] == {"md5": data_md5, "dvc_path": "data/raw", "dataset": "digits"}
    assert lineage["validation"]["verdict"] == "passed"
    assert lineage["validation"]["report"].endswith("/lineage/validation.html")
    assert lineage["params"]["model.vae.beta"] == str(DEFAULT_VAE["beta"]) and "eval/nll" in lineage["metrics"]
    assert lineage["search"] is None and lineage["flow_run_id"] is None
    assert lineage["promotion"]["promoted"] == "True"
    printed = run(["genp", "lineage", f"{MODEL}/1"], workspace).stdout
    assert f"md5 {data_md5} at data/raw" in printed and ", clean" in printed and "validation      passed" in printed


def test_cli_samples_from_the_champion(workspace):
    run(["genp", "sample", f"{MODEL}@champion", "-n", "9", "-o", "grid.png"], workspace)
    assert (workspace / "grid.png").stat().st_size > 100
    missing = run(["genp", "sample", "nope@champion"], workspace, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("error: models:/nope@champion")


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_champion_serves_generated_images(workspace, tmp_path):
    """`mlflow models serve` of the champion, on 127.0.0.1, answers (n, seed) with generated images."""
    port = free_loopback_port()
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
           "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve",
                               "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.communicate()[0]
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        status, answer = _post(base + "/invocations", {"dataframe_records": [{"n": 4, "seed": 3}]})
        assert status == 200, answer
        images = np.asarray(answer["predictions"], dtype=np.float32)
        assert images.shape == (4, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
        _, again = _post(base + "/invocations", {"dataframe_records": [{"n": 4, "seed": 3}]})
        assert np.array_equal(images, np.asarray(again["predictions"], dtype=np.float32))  # the seed decides
        status, refused = _post(base + "/invocations", {"dataframe_records": [{"n": 100000, "seed": 0}]})
        assert status == 400 and "n: 100000 is outside" in json.dumps(refused)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_second_repro_finds_everything_up_to_date(workspace):
    result = run(["dvc", "repro"], workspace)
    assert _stages_run(result.stdout) == []
    for stage in ("prepare", "validate", "features", "train", "evaluate", "register"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert "Data and pipelines are up to date." in result.stdout


def test_changing_beta_reruns_only_train_evaluate_register(workspace, ray_head):
    run(GIT + ["add", "-A"], workspace)
    run(GIT + ["commit", "-qm", "beta 1 trained"], workspace)  # dvc.lock of the first run: a revision to compare
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["model"]["vae"]["beta"] = 8.0
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "model.vae.beta" in run(["dvc", "params", "diff"], workspace).stdout
    result = run(["dvc", "repro"], workspace, env=ray_head)
    assert _stages_run(result.stdout) == ["train", "evaluate", "register"]
    decision = json.loads((workspace / "reports" / "registry.json").read_text())
    assert decision["version"] == "2" and decision["champion_version"] == "1"
    # β=8 over-regularises: re-scored on the same validation images its NLL is worse, so the champion stays.
    comparison = decision["comparison"]
    assert comparison["metric"] == "val_nll" and comparison["challenger"] > comparison["champion"]
    assert comparison["low"] <= comparison["improvement"] <= comparison["high"] and not decision["promoted"]
    assert _champion(workspace) == ("1", 2)

    # DVC plots compare the training curves of the two revisions.
    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "--json"], workspace).stdout)["data"]
    (curve,) = [plots[key][0] for key in plots if key.endswith("val_neg_elbo.json")]
    points = [(point["rev"], point["epoch"]) for point in curve["content"]["data"]["values"]]
    assert sorted(points) == sorted((rev, epoch) for rev in ("HEAD", "workspace") for epoch in range(1, EPOCHS + 1))
    run(["dvc", "plots", "diff", "HEAD", "-o", "plots-html"], workspace)
    assert "val_neg_elbo" in (workspace / "plots-html" / "index.html").read_text()


def test_switching_family_is_one_value_in_a_dvc_experiment(workspace, ray_head):
    """In a temporary copy (`--temp`): it still records into the repository's MLflow store."""
    result = run(["dvc", "exp", "run", "--temp", "-n", "gan-hinge", "-S", "model.family=gan", "-S", "model.gan.loss=hinge",
                  "-S", "model.gan.d_steps_per_g_step=2", "-S", "model.gan.spectral_norm=true",
                  "-S", "model.gan.ema_decay=0.99"], workspace, env=ray_head)
    # before the bad-data tests, so the experiment's copy starts from a pipeline that is up to date (validate
    # still runs there: its report and verdict are not in the DVC cache)
    assert _stages_run(result.stdout)[-3:] == ["train", "evaluate", "register"]
    client = mlflow_client(workspace)
    champion = client.get_model_version_by_alias("gan-digits", "champion")
    run_data = client.get_run(champion.run_id).data
    assert run_data.params["model.family"] == "gan" and run_data.params["model.gan.loss"] == "hinge"
    assert run_data.tags["dvc_experiment"] == "gan-hinge"
    shown = run(["dvc", "exp", "show", "--json"], workspace).stdout
    assert "gan-hinge" in shown and "val_fd" in shown  # `dvc exp show` lists the experiment's final metrics
    assert {"eval/fd", "eval/kid", "eval/precision", "eval/recall", "eval/density", "eval/coverage", "val/fd",
            "train/d_loss"} <= set(run_data.metrics)
    assert "eval/nll" not in run_data.metrics
    assert champion.tags["selection_metric"] == "val_fd"
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"samples.png", "fixed_noise_by_epoch.png", "model_card.md"} <= artifacts
    samples = load_generator("models:/gan-digits@champion").sample(4)
    assert samples.shape == (4, 1, 8, 8)
    assert _champion(workspace)[0] in {"1", "2"}  # the VAE's champion is untouched by the GAN run


def _bad_pixels_and_labels(a):
    images = a.images.astype(np.float32)
    images[0, 0, 0, 0] = np.nan
    images[1, 2, 2, 0] = 400
    labels = a.labels.copy()
    labels[:5] = 10
    return ImageArrays(images, labels), ("nan_count", "pixel_max", "column=label")


def _wrong_shape(a):
    return ImageArrays(a.images[:, :6, :6], a.labels), ("column=height",)


def _empty(a):
    return ImageArrays(a.images[:0], a.labels[:0]), ("expect_table_row_count_to_be_between",)


# Each kind of failure is a unit test (tests/unit/test_validation.py); here, that the pipeline stops with one
# error that names every failed expectation of a version at once.
@pytest.mark.parametrize("corrupt", [_bad_pixels_and_labels, _wrong_shape, _empty])
def test_bad_data_stops_at_validate_and_registers_nothing(workspace, corrupt):
    before = _champion(workspace)
    raw = workspace / "data" / "raw" / "digits.npz"
    good = load_npz(raw)
    bad, expected_failures = corrupt(good)
    write_npz(raw, bad)
    try:
        result = run(["dvc", "repro"], workspace, check=False)
        assert result.returncode != 0
        assert _stages_run(result.stdout) == ["prepare", "validate"]
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and "validation failed" in error_lines[0]
        assert all(failure in error_lines[0] for failure in expected_failures), error_lines[0]
        assert "Traceback" not in result.stderr
        assert _champion(workspace) == before
    finally:
        write_npz(raw, good)


def test_truncated_file_stops_at_load(workspace):
    before = _champion(workspace)
    raw = workspace / "data" / "raw" / "digits.npz"
    good = raw.read_bytes()
    raw.write_bytes(good[: len(good) // 3])
    try:
        result = run(["dvc", "repro"], workspace, check=False)
        assert result.returncode != 0 and _stages_run(result.stdout) == ["prepare"]
        assert "digits.npz: cannot read the npz file" in result.stderr
        assert _champion(workspace) == before
    finally:
        raw.write_bytes(good)


def test_training_refuses_data_that_failed_validation(workspace):
    verdict_file = workspace / "metrics" / "validation.json"
    assert not json.loads(verdict_file.read_text())["success"]  # left by the bad-data runs above
    result = run(["genp", "train"], workspace, check=False)
    assert result.returncode == 1 and "failed validation" in result.stderr
