"""Run parameters a user may give from the Prefect UI or API: typed, bounded, and checked before any work.

Field constraints appear in the deployment's parameter schema, so the UI form enforces them and the API
rejects a bad value (HTTP 409) before a run exists; `extra="forbid"` rejects misspelt fields the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flows.workspaces import dataset_manifest
from gen_platform.config import PipelineParams, params_for, parse_params
from gen_platform.models import FAMILIES

# The run form's family choices come from the registry, so a new family appears in the UI. Datasets are the
# user's own: any dataset in the DVC-tracked data at the requested revision, so the form takes its name (a list
# fixed when the deployment was served could not follow the data), and the flow checks it before any work,
# naming the datasets that revision holds.
FamilyName = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]
DatasetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
DATASET_HELP = ("a dataset in data/raw at the data revision (data/raw/<name>.npz and its manifest), e.g. digits, "
                "photo-crops or an imported folder; default: params.yaml's data.dataset")


def configured_dataset(root: Path) -> str:
    """params.yaml's `data.dataset`: the dataset a request that names none trains."""
    return parse_params(yaml.safe_load((root / "params.yaml").read_text()) or {}).data.dataset


class DatasetRequest(BaseModel):
    """A family and a dataset, both checked before any work."""

    model_config = ConfigDict(extra="forbid")

    family: FamilyName = Field("vae", description="model family")
    dataset: DatasetName | None = Field(None, description=DATASET_HELP)

    def dataset_in(self, root: Path) -> str:
        return self.dataset or configured_dataset(root)

    def _params(self, root: Path, revision: str | None, *overrides: dict[str, Any]) -> PipelineParams:
        """params.yaml retargeted to this family and dataset, whose facts come from its manifest at `revision`
        (a dataset absent there fails here, naming those present), with `overrides`."""
        dataset = self.dataset_in(root)
        return params_for(root / "params.yaml", self.family, dataset, *overrides,
                          manifest=dataset_manifest(root, dataset, revision))


class TrainRequest(DatasetRequest):
    data_revision: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$",
                                      description="git revision whose data.dvc to train on (default: the current one)")
    epochs: int | None = Field(None, ge=1, le=1000, description="override train.epochs")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description='params.yaml overrides, e.g. {"model": {"vae": {"beta": 4}}}')

    def params(self, root: Path) -> PipelineParams:
        """params.yaml with this request applied, validated (a bad value names its field)."""
        return self._params(root, self.data_revision, self.overrides,
                            {"train": {"epochs": self.epochs}} if self.epochs else {})


class TuneRequest(DatasetRequest):
    trials: int = Field(8, ge=1, le=256, description="number of trials")
    epochs: int = Field(4, ge=1, le=1000, description="epoch budget of the longest trial (ASHA max_t)")

    def params(self, root: Path) -> PipelineParams:
        return self._params(root, None, {"tune": {"trials": self.trials, "max_epochs": self.epochs}})


class RetrainRequest(DatasetRequest):
    mode: Literal["train", "tune"] = Field("train", description="retrain once, or run a search")
    trials: int = Field(8, ge=1, le=256, description="trials when mode is tune")

    def params(self, root: Path) -> PipelineParams:
        return self._params(root, None, {"tune": {"trials": self.trials}})

