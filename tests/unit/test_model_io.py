"""The registered pyfunc: the library travels with it, its requirements resolve, and it answers (n, seed)."""

from __future__ import annotations

import os
from dataclasses import asdict

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from gen_platform.checkpoint import STATE_FILE, save_checkpoint
from gen_platform.errors import ModelLoadError
from gen_platform.models.vae import ConvVAE, VAEArchitecture
from gen_platform.tracking.model_io import load_generator, log_model


@pytest.fixture()
def registered(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("io", (tmp_path / "artifacts").as_uri()))
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(tmp_path / "model", {"model": model.state_dict()}, asdict(model.architecture), family="vae")
    with mlflow.start_run():
        return log_model(tmp_path / "model", "vae-io")


def test_the_pyfunc_carries_its_code_and_pinned_requirements(registered):
    local = mlflow.artifacts.download_artifacts(f"models:/vae-io/{registered.version}")
    requirements = open(f"{local}/requirements.txt").read().split()
    assert all("==" in line for line in requirements) and not any(r.startswith("gen_platform") for r in requirements)
    assert {r.split("==")[0] for r in requirements} >= {"torch", "numpy", "pandas", "pydantic", "mlflow"}
    assert mlflow.models.Model.load(local).saved_input_example_info is not None
    assert os.path.exists(f"{local}/code/gen_platform/models/vae.py")


def test_the_pyfunc_answers_n_and_seed_reproducibly(registered):
    pyfunc = mlflow.pyfunc.load_model(f"models:/vae-io/{registered.version}")
    first = pyfunc.predict(pd.DataFrame({"n": [3], "seed": [7]}))
    again = pyfunc.predict(pd.DataFrame({"n": [3], "seed": [7]}))
    other = pyfunc.predict(pd.DataFrame({"n": [3], "seed": [8]}))
    assert first.shape == (3, 1, 8, 8) and 0 <= first.min() and first.max() <= 1
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"n: 0 is outside 1\.\.4096"):
        pyfunc.predict(pd.DataFrame({"n": [0], "seed": [0]}))


def test_a_registered_model_whose_weights_were_altered_is_refused(registered, tmp_path):
    stored = list((tmp_path / "artifacts").rglob(STATE_FILE))
    assert len(stored) == 1
    state = torch.load(stored[0], weights_only=True)
    state["model"]["to_stats.bias"][0] += 1.0
    torch.save(state, stored[0])
    with pytest.raises(ModelLoadError, match=rf"{STATE_FILE}: content does not match the sha256 recorded"):
        load_generator(f"models:/vae-io/{registered.version}")
