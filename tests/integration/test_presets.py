"""The 64×64 RGB preset runs the whole pipeline through `dvc repro` on generated photo crops (fewer images and
epochs than the preset, the same shapes, stages and validation rules). Its DCGAN block trains on the same
photo crops in test_stack.py, as one of the concurrent runs from the Prefect UI."""

from __future__ import annotations

import pytest
import yaml

from gen_platform.data.arrays import load_npz
from gen_platform.tracking.model_io import load_generator
from tests.integration.workspace import make_workspace, mlflow_client, run

pytestmark = pytest.mark.integration


def _stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_the_rgb64_preset_trains_through_dvc_repro(tmp_path, ray_head):
    workspace = make_workspace(tmp_path, {})
    params = yaml.safe_load((workspace / "presets" / "rgb64.yaml").read_text())
    params["classifier"]["epochs"] = 1
    params["train"]["epochs"] = 1
    params["model"]["gan"]["fd_samples"] = 100  # the GAN's per-epoch val_fd: 1000 generated 64×64 images took 4 s
    params["evaluate"].update(metric_samples=100, nll_importance_samples=2, bootstrap_resamples=100)
    # validation.min_rows (100) applies to each split: larger validation and test shares meet it with 480 images
    params["split"].update(val_fraction=0.25, test_fraction=0.25)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["genp", "data", "import", "photo-crops", "--count", "480"], workspace)

    result = run(["dvc", "repro"], workspace, env=ray_head)
    assert _stages_run(result.stdout) == ["prepare", "validate", "features", "train", "evaluate", "register"]
    mlflow_client(workspace)
    vae = load_generator("models:/vae-photo-crops@champion").sample(8)
    assert vae.shape == (8, 3, 64, 64)

    # colour in, colour out: red and blue differ in the photographs and in the VAE's pictures
    data = load_npz(workspace / "data" / "raw" / "photo-crops.npz").images / 255.0
    assert abs(data[..., 0] - data[..., 2]).mean() > 0.05
    assert float((vae[:, 0] - vae[:, 2]).abs().mean()) > 0.01
