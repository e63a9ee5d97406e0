"""Typed pipeline configuration: one source of truth (`params.yaml`), validated at the edge.

Unknown keys are errors, so a typo in params.yaml fails loudly instead of being ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from gen_platform.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    dataset: str = Field("digits", pattern=r"^[a-z0-9][a-z0-9_-]*$", description="file data/raw/<dataset>.npz")
    image_size: int = Field(8, ge=4, le=256)
    channels: Literal[1, 3] = 1
    num_classes: int = Field(10, ge=1, le=1000)


class SplitParams(_Section):
    seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)


class ValidationParams(_Section):
    min_rows: int = Field(100, ge=1)
    max_rows: int = Field(10_000_000, ge=1)
    min_class_fraction: float = Field(0.02, ge=0, le=1)
    max_class_fraction: float = Field(0.5, ge=0, le=1)
    max_duplicate_fraction: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ValidationParams:
        if self.min_rows > self.max_rows:
            raise ValueError(f"min_rows ({self.min_rows}) must not exceed max_rows ({self.max_rows})")
        if self.min_class_fraction > self.max_class_fraction:
            raise ValueError("min_class_fraction must not exceed max_class_fraction")
        return self


class VAEParams(_Section):
    family: Literal["vae"] = "vae"
    latent_dim: int = Field(16, ge=1, le=1024)
    hidden_channels: int = Field(32, ge=4, le=512)
    beta: float = Field(1.0, gt=0, le=1000, description="KL weight of the beta-VAE")
    learning_rate: float = Field(2e-3, gt=0, le=1)


class GANParams(_Section):
    family: Literal["gan"] = "gan"
    latent_dim: int = Field(32, ge=1, le=1024)
    hidden_channels: int = Field(32, ge=4, le=512)
    d_steps_per_g_step: int = Field(1, ge=1, le=20, description="discriminator updates per generator update")
    loss: Literal["non_saturating", "hinge", "wgan_gp"] = "non_saturating"
    gradient_penalty: float = Field(10.0, ge=0, description="weight of the wgan_gp penalty")
    spectral_norm: bool = False
    g_learning_rate: float = Field(2e-4, gt=0, le=1)
    d_learning_rate: float = Field(2e-4, gt=0, le=1)
    ema_decay: float = Field(0.0, ge=0, lt=1, description="EMA of the generator's weights; 0 disables")


def _family(value: Any) -> str:
    return value.get("family", "vae") if isinstance(value, dict) else getattr(value, "family", "vae")


FAMILY_PARAMS = {"vae": VAEParams, "gan": GANParams}
# `model.family` picks the section's schema; a missing family means the VAE.
ModelParams = Annotated[Union[Annotated[VAEParams, Tag("vae")], Annotated[GANParams, Tag("gan")]], Discriminator(_family)]


class TrainParams(_Section):
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536, description="global batch, shared by the workers")
    seed: int = 0
    num_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool | Literal["auto"] = Field(False, description="true, false, or auto: GPUs if the cluster has enough")
    cpus_per_worker: float = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: forward passes under bfloat16 autocast")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the networks (pays a compile time up front)")
    storage_path: str = Field("ray_results", description="checkpoint storage (relative to the repo, or absolute/URI)")
    max_failures: int = Field(1, ge=0, description="worker failures survived by restoring the last checkpoint")


class ClassifierParams(_Section):
    """The domain classifier whose features every distribution metric uses."""
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    feature_dim: int = Field(128, ge=2, le=4096)
    seed: int = 0


class EvaluateParams(_Section):
    batch_size: int = Field(256, ge=1)
    num_samples: int = Field(64, ge=1, le=1024, description="images in the logged sample grid")
    metric_samples: int = Field(2000, ge=10, description="generated images scored against the test split")
    nearest_k: int = Field(5, ge=1, le=100, description="k of precision/recall/density/coverage")
    nll_importance_samples: int = Field(100, ge=1, le=10_000, description="k of the importance-weighted NLL")
    inception_weights: str | None = Field(None, description="TorchScript Inception-v3 for standard `fid` "
                                          "(path relative to the repository; nothing is downloaded)")
    seed: int = 0


class TuneParams(_Section):
    trials: int = Field(8, ge=1, le=1024)
    max_epochs: int = Field(4, ge=1, le=1000, description="epochs of a trial that ASHA never stops")
    grace_epochs: int | None = Field(None, ge=1, description="epochs before ASHA may stop a trial (default per family)")
    optuna: bool = Field(False, description="Optuna TPE instead of random search")
    workers_per_trial: int = Field(1, ge=1, le=1024, description="Ray Train workers of each trial")
    cpus_per_worker: float = Field(0.9, gt=0, description="fractional so trial drivers fit beside workers")
    time_budget_s: int = Field(3600, ge=10, description="a search never runs longer than this")
    seed: int = 0


class RegistryParams(_Section):
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    min_improvement: float = Field(0.0, ge=0, description="nats/image a challenger must gain to be promoted")


class PipelineParams(_Section):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    validation: ValidationParams = ValidationParams()
    classifier: ClassifierParams = ClassifierParams()
    model: ModelParams = VAEParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    tune: TuneParams = TuneParams()
    registry: RegistryParams = RegistryParams()

    @property
    def registered_model_name(self) -> str:
        """Registry name `<family>-<dataset>`, e.g. `vae-digits`."""
        return f"{self.model.family}-{self.data.dataset}"


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        # Drop the union tag pydantic puts in the path: "model.gan.loss" → "model.loss".
        loc = [part for i, part in enumerate(item["loc"]) if not (i == 1 and item["loc"][0] == "model"
                                                                  and part in FAMILY_PARAMS)]
        field = ".".join(str(part) for part in loc) or "(top level)"
        got = f" (got {item['input']!r})" if item["type"] != "missing" and not isinstance(item["input"], dict) else ""
        problems.append(f"{field}: {item['msg']}{got}")
    return f"{source}: invalid parameters: " + "; ".join(problems)


def parse_params(raw: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "params") -> PipelineParams:
    """Validate a params mapping (plus optional nested overrides) into `PipelineParams`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (data, train, ...), got {type(raw).__name__}")
    try:
        return PipelineParams.model_validate(deep_merge(raw, overrides or {}))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> PipelineParams:
    """Read and validate `params.yaml`; `overrides` (nested dict) win over the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, overrides, source=str(path))


def parse_override(text: str) -> dict[str, Any]:
    """Turn `train.epochs=5` into `{"train": {"epochs": 5}}` (the value is parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected SECTION.FIELD=VALUE, e.g. model.beta=4")
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = yaml.safe_load(value)
    return nested


DATASET_IMAGE_SIZE = {"digits": 8, "fashion-mnist": 28}  # the built-in datasets' sizes


def params_for(path: Path, family: str, dataset: str, *overrides: dict[str, Any]) -> PipelineParams:
    """params.yaml retargeted: another family starts from that family's defaults, another built-in dataset
    from its image size; then `overrides` apply."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if raw.get("model", {}).get("family", "vae") != family:
        raw["model"] = {"family": family}
    if raw.get("data", {}).get("dataset") != dataset:
        raw["data"] = {**raw.get("data", {}), "dataset": dataset}
        if dataset in DATASET_IMAGE_SIZE:
            raw["data"]["image_size"] = DATASET_IMAGE_SIZE[dataset]
    merged: dict[str, Any] = {}
    for override in overrides:
        merged = deep_merge(merged, override)
    return parse_params(raw, merged, source=f"{path} (retargeted to {family}-{dataset})")
