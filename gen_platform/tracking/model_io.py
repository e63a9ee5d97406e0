"""How models are saved in and loaded from MLflow.

A model is stored as a pyfunc whose artifact is our checkpoint folder (a weights-only state_dict and a JSON
config). `load_generator` rebuilds the original nn.Module from those two files with `weights_only=True`,
so loading never unpickles code; the pyfunc wrapper exists for `mlflow models serve` and `pyfunc.load_model`.
"""

from __future__ import annotations

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


MAX_SAMPLES = 4096


class GeneratorPyfunc(mlflow.pyfunc.PythonModel):
    """`predict(pd.DataFrame({"n": [64], "seed": [0]}))` → n samples, N×C×H×W floats in [0, 1]; the same seed
    gives the same images. What `mlflow models serve` answers on /invocations."""

    def load_context(self, context: Any) -> None:
        self.model = load_model_dir(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        n = int(model_input["n"].iloc[0])
        if not 1 <= n <= MAX_SAMPLES:
            raise MlflowException(f"n: {n} is outside 1..{MAX_SAMPLES}", error_code=INVALID_PARAMETER_VALUE)
        seed = model_input["seed"].iloc[0] if "seed" in model_input else None
        generator = torch.Generator().manual_seed(int(seed)) if seed is not None and not pd.isna(seed) else None
        with torch.no_grad():
            return self.model.sample(n, generator).numpy()


def _signature(model_dir: Path) -> ModelSignature:
    config = load_checkpoint(model_dir)[1]["config"]
    shape = (-1, config["channels"], config["image_size"], config["image_size"])
    return ModelSignature(inputs=Schema([ColSpec("long", "n"), ColSpec("long", "seed", required=False)]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), shape)]))


def _requirements() -> list[str]:
    """Pinned, resolvable requirements of the pyfunc: the library itself travels with the model (code_paths)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in ("torch", "numpy", "pandas", "pydantic", "mlflow")]


def log_model(model_dir: Path, registered_name: str) -> Any:
    """Log the checkpoint folder as a pyfunc in the active run and register it; returns the ModelVersion."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={ARTIFACT_KEY: str(model_dir)},
        code_paths=[str(Path(__file__).parents[1])],  # the gen_platform package: no install needed to serve
        signature=_signature(model_dir),
        input_example=pd.DataFrame({"n": [4], "seed": [0]}),
        pip_requirements=_requirements(),
        registered_model_name=registered_name,
    )
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{registered_name}' and run_id='{info.run_id}'",
                                            order_by=["version_number DESC"], max_results=1)
    return versions[0]


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
