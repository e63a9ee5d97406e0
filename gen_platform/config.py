"""The whole pipeline configuration, assembled from params.yaml: one source of truth, validated at the edge.

`model.family` picks a family; every family keeps its own block of settings (`model.vae`, `model.gan`, ...),
so switching family is one value. Unknown keys are errors, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from gen_platform.data.manifest import FACTS, DatasetManifest, with_dataset_facts
from gen_platform.errors import ConfigError
from gen_platform.models import FAMILIES
from gen_platform.settings import (ClassifierParams, DataParams, EvaluateParams, RegistryParams, Section, SplitParams,
                                   TrainParams, TuneParams, ValidationParams)


class FamilyBlockInvalid(ValueError):
    """A family's block failed its own schema; carries the family and pydantic's errors for the message."""

    def __init__(self, family: str, error: ValidationError):
        super().__init__(f"model.{family}: invalid")
        self.family, self.error = family, error


class ModelParams(BaseModel):
    """`model.family` and one block per registered family (absent blocks take the family's defaults)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    family: str = "vae"

    @model_validator(mode="before")
    @classmethod
    def _family_blocks(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        family = raw.get("family", "vae")
        if family not in FAMILIES:
            raise ValueError(f"family: unknown family {family!r}; known: {sorted(FAMILIES)}")
        strays = sorted(key for key in raw if key != "family" and key not in FAMILIES)
        if strays:
            raise ValueError(f"{', '.join(strays)}: not a family; a family's settings go in its own block, "
                             f"e.g. model.{family}.{strays[0]} (blocks: {sorted(FAMILIES)})")
        blocks = {}
        for name, member in FAMILIES.items():
            value = raw.get(name) or {}
            try:
                blocks[name] = value if isinstance(value, member.settings) else member.settings.model_validate(value)
            except ValidationError as error:
                raise FamilyBlockInvalid(name, error) from None
        return {"family": family, **blocks}

    @property
    def settings(self) -> Section:
        """The chosen family's settings (its own typed section; `Family[S]` hands it on as S)."""
        return getattr(self, self.family)

    def logged(self) -> dict[str, Any]:
        """`model.family` and the chosen family's settings under their params.yaml names, `model.<family>.<field>`
        (MLflow params, the model card)."""
        family = FAMILIES[self.family]
        return {"model.family": self.family,
                **{family.parameter_name(k): v for k, v in self.settings.model_dump().items()}}


class PipelineParams(Section):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    validation: ValidationParams = ValidationParams()
    classifier: ClassifierParams = ClassifierParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    tune: TuneParams = TuneParams()
    registry: RegistryParams = RegistryParams()

    @property
    def registered_model_name(self) -> str:
        """Registry name `<family>-<dataset>`, e.g. `vae-digits`."""
        return f"{self.model.family}-{self.data.dataset}"

    def with_overrides(self, overrides: dict[str, Any]) -> PipelineParams:
        """These params with nested `overrides` applied and validated again."""
        return parse_params(self.model_dump(), overrides)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problem(loc: tuple, message: str, item: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in loc) or "(top level)"
    got = f" (got {item['input']!r})" if item["type"] != "missing" and not isinstance(item["input"], dict) else ""
    return f"{field}: {message}{got}"


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, FamilyBlockInvalid):
            problems += [_problem(("model", cause.family, *inner["loc"]), inner["msg"], inner)
                         for inner in cause.error.errors()]
        elif cause is not None and item["loc"] == ("model",):
            problems.append(f"model.{cause}")
        else:
            problems.append(_problem(item["loc"], item["msg"], item))
    return f"{source}: invalid parameters: " + "; ".join(problems)


def parse_params(raw: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "params",
                 data_root: Path | None = None, manifest: DatasetManifest | None = None) -> PipelineParams:
    """Validate a params mapping (plus optional nested overrides) into `PipelineParams`. With `data_root` (or the
    `manifest` itself), the dataset's facts (image size, channels, classes) come from its manifest."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (data, train, ...), got {type(raw).__name__}")
    merged = deep_merge(raw, overrides or {})
    if data_root is not None:
        merged = with_dataset_facts(merged, data_root, source, manifest)
    try:
        return PipelineParams.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> PipelineParams:
    """Read and validate `params.yaml`; `overrides` (nested dict) win over the file; the dataset's facts come from
    its manifest in the repository the file belongs to."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, overrides, source=str(path), data_root=path.resolve().parent)


def parse_override(text: str) -> dict[str, Any]:
    """Turn `train.epochs=5` into `{"train": {"epochs": 5}}` (the value is parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected SECTION.FIELD=VALUE, e.g. model.vae.beta=4")
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = yaml.safe_load(value)
    return nested


def params_for(path: Path, family: str, dataset: str, *overrides: dict[str, Any],
               manifest: DatasetManifest | None = None) -> PipelineParams:
    """params.yaml retargeted to `family` and `dataset` (whose manifest brings its facts: `manifest`, e.g. read at
    another data revision, else the one beside params.yaml); then `overrides` apply."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if (raw.get("data") or {}).get("dataset") != dataset:  # facts stated for another dataset do not carry over
        raw["data"] = {k: v for k, v in (raw.get("data") or {}).items() if k not in FACTS}
    merged: dict[str, Any] = {"model": {"family": family}, "data": {"dataset": dataset}}
    for override in overrides:
        merged = deep_merge(merged, override)
    return parse_params(raw, merged, source=f"{path} (retargeted to {family}-{dataset})",
                        data_root=path.resolve().parent, manifest=manifest)
