"""How models are saved in and loaded from MLflow.

A model is stored as a pyfunc whose artifact is our checkpoint folder (a weights-only state_dict and a JSON
config). `load_generator` rebuilds the original nn.Module from those two files with `weights_only=True`,
so loading never unpickles code; the pyfunc wrapper exists for `mlflow models serve` and `pyfunc.load_model`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from gen_platform.checkpoint import CONFIG_FILE, load_checkpoint
from gen_platform.errors import ModelLoadError
from gen_platform.models import get_family

ARTIFACT_KEY = "checkpoint"


def load_model_dir(directory: str | Path) -> torch.nn.Module:
    state, meta = load_checkpoint(directory)
    model = get_family(meta["family"]).rebuild(meta["config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ModelLoadError(f"{directory}: weights do not match the saved config: {str(error).splitlines()[0]}") from None
    return model.eval()


class GeneratorPyfunc(mlflow.pyfunc.PythonModel):
    """`predict(pd.DataFrame({"n": [64]}))` → n samples, N×C×H×W floats in [0, 1]."""

    def load_context(self, context: Any) -> None:
        self.model = load_model_dir(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        n = int(model_input["n"].iloc[0])
        return self.model.sample(n).numpy()


def _signature(model_dir: Path) -> ModelSignature:
    config = load_checkpoint(model_dir)[1]["config"]
    shape = (-1, config["channels"], config["image_size"], config["image_size"])
    return ModelSignature(inputs=Schema([ColSpec("long", "n")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), shape)]))


def log_model(model_dir: Path, registered_name: str) -> Any:
    """Log the checkpoint folder as a pyfunc in the active run and register it; returns the ModelVersion."""
    with warnings.catch_warnings():  # the signature is explicit; MLflow still asks for an input example
        warnings.simplefilter("ignore", UserWarning)
        info = _log_pyfunc(model_dir, registered_name)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{registered_name}' and run_id='{info.run_id}'",
                                            order_by=["version_number DESC"], max_results=1)
    return versions[0]


def _log_pyfunc(model_dir: Path, registered_name: str) -> Any:
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={ARTIFACT_KEY: str(model_dir)},
        signature=_signature(model_dir),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas", "gen_platform"],
        registered_model_name=registered_name,
    )


def load_generator(model_uri: str) -> torch.nn.Module:
    """Load e.g. `models:/vae-digits@champion` back into its nn.Module."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except mlflow.exceptions.MlflowException as error:
        raise ModelLoadError(f"{model_uri}: cannot resolve model: {error.message}") from None
    configs = sorted(local.rglob(CONFIG_FILE))
    if not configs:
        raise ModelLoadError(f"{model_uri}: no {CONFIG_FILE} in the model's artifacts; not a gen_platform model")
    return load_model_dir(configs[0].parent)
