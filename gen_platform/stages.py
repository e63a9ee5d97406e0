"""The pipeline stages as plain functions: the `genp` CLI (and so `dvc repro`) and the Prefect flows call these.

Every stage reads its inputs from and writes its outputs to a `Workspace` (the repository root), so DVC can
track them. Stages downstream of `validate` refuse to run unless the current prepared data passed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_platform.config import PipelineParams
from gen_platform.data import sources
from gen_platform.data.arrays import ImageArrays, load_npz, to_tensor, write_npz
from gen_platform.data.splits import SPLITS, split_dataset
from gen_platform.errors import GenPlatformError, ValidationFailed


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Workspace:
        return cls(Path(root).resolve())

    def raw(self, dataset: str) -> Path:
        return self.root / "data" / "raw" / f"{dataset}.npz"

    def prepared(self, split: str) -> Path:
        return self.root / "data" / "prepared" / f"{split}.npz"

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / "model"

    @property
    def run_file(self) -> Path:
        return self.root / "models" / "mlflow_run.json"

    def metrics(self, stage: str) -> Path:
        return self.root / "metrics" / f"{stage}.json"

    def report(self, name: str) -> Path:
        return self.root / "reports" / name


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def _read_json(path: Path, hint: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenPlatformError(f"{path}: not found; run `{hint}` first") from None


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.md5()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def import_dataset(name: str, ws: Workspace) -> Path:
    """Write a built-in dataset to data/raw/<name>.npz."""
    return write_npz(ws.raw(name), sources.builtin(name))


def prepare(params: PipelineParams, ws: Workspace) -> dict[str, int]:
    """Deterministic train/val/test split of data/raw/<dataset>.npz into data/prepared/."""
    arrays = load_npz(ws.raw(params.data.dataset))
    splits = split_dataset(arrays, params.split.seed, params.split.val_fraction, params.split.test_fraction)
    for name, part in splits.items():
        write_npz(ws.prepared(name), part)
    sizes = {name: len(part) for name, part in splits.items()}
    print(f"prepared {params.data.dataset}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return sizes


def load_splits(ws: Workspace) -> dict[str, ImageArrays]:
    return {name: load_npz(ws.prepared(name)) for name in SPLITS}


def validate(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Run the GE suite on the prepared splits; write the report; raise ValidationFailed on any failure."""
    from gen_platform.validation.report import write_html
    from gen_platform.validation.suite import validate_splits

    report = validate_splits(load_splits(ws), params.data, params.validation)
    write_html(report, ws.report("validation.html"), f"Validation of {params.data.dataset}")
    summary = report.to_dict() | {"data_fingerprint": _fingerprint([ws.prepared(s) for s in SPLITS])}
    _write_json(ws.metrics("validation"), summary)
    if not report.success:
        raise ValidationFailed(f"{params.data.dataset}: {report.summary()} (report: {ws.report('validation.html')})")
    print(report.summary())
    return summary


def require_valid_data(ws: Workspace) -> dict[str, Any]:
    """Nothing trains on data that did not pass validation in its current form."""
    verdict = _read_json(ws.metrics("validation"), "genp validate")
    if not verdict.get("success"):
        raise ValidationFailed(f"{ws.metrics('validation')}: the prepared data failed validation; fix the data first")
    if verdict.get("data_fingerprint") != _fingerprint([ws.prepared(s) for s in SPLITS]):
        raise ValidationFailed("data/prepared changed since it was validated; run `genp validate` again")
    return verdict


def train(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Train on Ray Train inside one MLflow run (params, curves, lineage tags); save the final model."""
    import mlflow

    from gen_platform.tracking.lineage import data_version, git_commit
    from gen_platform.tracking.store import use_experiment
    from gen_platform.training.checkpoint import save_checkpoint
    from gen_platform.training.launcher import fit

    verdict = require_valid_data(ws)
    splits = load_splits(ws)
    experiment_id = use_experiment(ws.root, params.registered_model_name)
    tags = {"data_version": data_version(ws.root), "git_commit": git_commit(ws.root),
            "validation": "passed" if verdict["success"] else "failed",
            "dataset": params.data.dataset, "family": params.model.family}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params({f"{section}.{key}": value for section, values in params.model_dump().items()
                           if section in {"data", "split", "model", "train"} for key, value in values.items()})
        print(f"MLflow run {run.info.run_id} ({params.registered_model_name}); training on Ray Train")
        result = fit(params, splits["train"], splits["val"], run_name=run.info.run_id, root=ws.root)
        for record in result.history:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        mlflow.set_tag("ray_checkpoint", result.checkpoint_path)
    save_checkpoint(ws.model_dir, {"model": result.model_state}, result.model_config, params.model.family)
    _write_json(ws.run_file, {"run_id": run.info.run_id, "experiment_id": experiment_id})
    final = result.history[-1]
    _write_json(ws.metrics("train"), {key: final[key] for key in ("train_loss", "train_neg_elbo", "val_neg_elbo")})
    return final


def evaluate(params: PipelineParams, ws: Workspace) -> dict[str, float]:
    """β-independent scores on val (for promotion) and test, plus sample and reconstruction grids."""
    import mlflow
    import torch

    from gen_platform.evaluation.elbo import neg_elbo
    from gen_platform.evaluation.images import image_grid
    from gen_platform.tracking.model_io import load_model_dir
    from gen_platform.tracking.store import use_experiment

    require_valid_data(ws)
    model = load_model_dir(ws.model_dir)
    splits = load_splits(ws)
    scores: dict[str, float] = {}
    for split in ("val", "test"):
        for key, value in neg_elbo(model, to_tensor(splits[split].images), params.evaluate.batch_size).items():
            scores[f"{split}_{key}"] = value
    samples = image_grid(model.sample(params.evaluate.num_samples, torch.Generator().manual_seed(0)))
    originals = to_tensor(splits["test"].images[:32])
    reconstructions = image_grid(torch.cat([originals, model.reconstruct(originals)]), columns=8)
    samples.save(ws.report("samples.png"))
    reconstructions.save(ws.report("reconstructions.png"))

    use_experiment(ws.root, params.registered_model_name)
    with mlflow.start_run(run_id=_read_json(ws.run_file, "genp train")["run_id"]):
        mlflow.log_metrics({f"eval_{key}": value for key, value in scores.items()})
        mlflow.log_image(samples, "samples.png")
        mlflow.log_image(reconstructions, "reconstructions.png")
    print("evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    _write_json(ws.metrics("evaluate"), scores)
    return scores


SELECTION_METRIC = "val_neg_elbo"


def register(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Register the model as `<family>-<dataset>`; move the alias only if it beats the champion."""
    import mlflow

    from gen_platform.tracking.registry import register_and_promote
    from gen_platform.tracking.store import use_experiment

    require_valid_data(ws)
    scores = _read_json(ws.metrics("evaluate"), "genp evaluate")
    use_experiment(ws.root, params.registered_model_name)
    with mlflow.start_run(run_id=_read_json(ws.run_file, "genp train")["run_id"]):
        decision = register_and_promote(ws.model_dir, params.registered_model_name, params.registry.alias,
                                        SELECTION_METRIC, scores[SELECTION_METRIC], params.registry.min_improvement)
    verb = "promoted to" if decision.promoted else "not promoted to"
    print(f"registered {decision.model_name} v{decision.version}, {verb} @{decision.alias}: {decision.reason} "
          f"({decision.metric} {decision.challenger:.3f} vs champion {decision.champion})")
    _write_json(ws.report("registry.json"), decision.to_dict())
    return decision.to_dict()
