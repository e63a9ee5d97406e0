"""Run parameters a user may give from the Prefect UI or API: typed, bounded, and checked before any work.

Field constraints appear in the deployment's parameter schema, so the UI form enforces them and the API
rejects a bad value (HTTP 409) before a run exists; `extra="forbid"` rejects misspelt fields the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gen_platform.config import PipelineParams, params_for
from gen_platform.data.sources import BUILTIN_DATASETS
from gen_platform.models import FAMILIES

# The run form's choices come from the registries, so a new family or built-in dataset appears in the UI.
DatasetName = Literal[tuple(BUILTIN_DATASETS)]  # type: ignore[valid-type]
FamilyName = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: FamilyName = Field("vae", description="model family")
    dataset: DatasetName = Field("digits", description="a dataset under data/raw")
    data_revision: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$",
                                      description="git revision whose data.dvc to train on (default: the current one)")
    epochs: int | None = Field(None, ge=1, le=1000, description="override train.epochs")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description='params.yaml overrides, e.g. {"model": {"vae": {"beta": 4}}}')

    def params(self, root: Path) -> PipelineParams:
        """params.yaml with this request applied, validated (a bad value names its field)."""
        return params_for(root / "params.yaml", self.family, self.dataset, self.overrides,
                          {"train": {"epochs": self.epochs}} if self.epochs else {})


class TuneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: FamilyName = Field("vae", description="model family to search")
    dataset: DatasetName = "digits"
    trials: int = Field(8, ge=1, le=256, description="number of trials")
    epochs: int = Field(4, ge=1, le=1000, description="epoch budget of the longest trial (ASHA max_t)")

