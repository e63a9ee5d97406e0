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
from gen_platform.data.arrays import ImageArrays, load_npz, write_npz
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
        return self.root / "models" / "generator"

    @property
    def classifier_dir(self) -> Path:
        return self.root / "models" / "classifier"

    @property
    def run_file(self) -> Path:
        return self.root / "models" / "mlflow_run.json"

    @property
    def in_progress_file(self) -> Path:
        """Written while `train` runs: lets a new driver resume a training whose driver died."""
        return self.root / "models" / "train_in_progress.json"

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


def features(params: PipelineParams, ws: Workspace) -> dict[str, float]:
    """Train the domain classifier whose penultimate features all distribution metrics use."""
    from gen_platform.evaluation.classifier import FAMILY, ClassifierConfig, accuracy, train_classifier
    from gen_platform.training.checkpoint import save_checkpoint

    require_valid_data(ws)
    splits = load_splits(ws)
    config = ClassifierConfig(params.data.image_size, params.data.channels, params.data.num_classes,
                              params.classifier.feature_dim)
    model = train_classifier(splits["train"], config, params.classifier.epochs, params.classifier.batch_size,
                             params.classifier.learning_rate, params.classifier.seed)
    scores = {"val_accuracy": accuracy(model, splits["val"]), "test_accuracy": accuracy(model, splits["test"])}
    save_checkpoint(ws.classifier_dir, {"model": model.state_dict()}, config.to_dict(), family=FAMILY)
    _write_json(ws.metrics("classifier"), scores)
    print(f"domain classifier: val accuracy {scores['val_accuracy']:.3f}, test accuracy {scores['test_accuracy']:.3f}")
    return scores


def load_saved_classifier(ws: Workspace) -> dict[str, Any]:
    from gen_platform.training.checkpoint import load_checkpoint

    if not ws.classifier_dir.exists():
        raise GenPlatformError(f"{ws.classifier_dir}: not found; run `genp features` first")
    state, meta = load_checkpoint(ws.classifier_dir)
    return {"state": state["model"], "config": meta["config"]}


def train(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Train on Ray Train inside one MLflow run (params, curves, lineage tags); save the final model."""
    import mlflow

    from gen_platform.evaluation.images import epoch_progress_grid
    from gen_platform.tracking.lineage import data_version, git_commit
    from gen_platform.tracking.store import use_experiment
    from gen_platform.training.checkpoint import save_checkpoint
    from gen_platform.training.launcher import fit

    verdict = require_valid_data(ws)
    splits = load_splits(ws)
    classifier = load_saved_classifier(ws)
    experiment_id = use_experiment(ws.root, params.registered_model_name)
    tags = {"data_version": data_version(ws.root), "git_commit": git_commit(ws.root),
            "validation": "passed" if verdict["success"] else "failed",
            "dataset": params.data.dataset, "family": params.model.family}
    logged = {f"{section}.{key}": value for section, values in params.model_dump().items()
              if section in {"data", "split", "model", "train"} for key, value in values.items()}
    resumed = _interrupted_run(ws, logged)
    with mlflow.start_run(run_id=resumed, experiment_id=None if resumed else experiment_id,
                          tags=None if resumed else tags) as run:
        _write_json(ws.in_progress_file, {"run_id": run.info.run_id, "params": logged})
        if resumed:
            print(f"resuming the interrupted MLflow run {resumed} from its last Ray checkpoint")
        else:
            mlflow.log_params(logged)
        print(f"MLflow run {run.info.run_id} ({params.registered_model_name}); training on Ray Train")
        result = fit(params, splits["train"], splits["val"], run_name=run.info.run_id, root=ws.root,
                     classifier=classifier)
        for record in result.history:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        if result.snapshots:
            mlflow.log_image(epoch_progress_grid(result.snapshots), "fixed_noise_by_epoch.png")
        mlflow.set_tag("ray_checkpoint", result.checkpoint_path)
    save_checkpoint(ws.model_dir, {"model": result.model_state}, result.model_config, params.model.family)
    _write_json(ws.run_file, {"run_id": run.info.run_id, "experiment_id": experiment_id})
    ws.in_progress_file.unlink()
    final = {key: value for key, value in result.history[-1].items() if key.startswith(("train_", "val_"))}
    _write_json(ws.metrics("train"), final)
    return final


def _interrupted_run(ws: Workspace, logged: dict[str, Any]) -> str | None:
    """The MLflow run of a training with the same parameters whose driver died, if there is one.

    Its Ray run (named after it) left checkpoints in the storage path, so the new driver resumes from them
    and the training stays one MLflow run.
    """
    import mlflow

    if not ws.in_progress_file.exists():
        return None
    previous = json.loads(ws.in_progress_file.read_text())
    if previous.get("params") != json.loads(json.dumps(logged)):
        return None
    try:
        status = mlflow.get_run(previous["run_id"]).info.status
    except mlflow.exceptions.MlflowException:
        return None
    return previous["run_id"] if status != "FINISHED" else None


def evaluate(params: PipelineParams, ws: Workspace) -> dict[str, float]:
    """Generative metrics in the domain feature space (and, for VAEs, ELBO and NLL), pictures, a model card."""
    import mlflow

    from gen_platform.evaluation.evaluate import evaluate_model
    from gen_platform.tracking.model_io import load_model_dir
    from gen_platform.tracking.store import use_experiment

    require_valid_data(ws)
    model = load_model_dir(ws.model_dir)
    classifier = load_saved_classifier(ws)
    evaluation = evaluate_model(model, params, load_splits(ws), classifier, ws.root)
    for name, picture in evaluation.pictures.items():
        picture.save(ws.report(f"{name}.png"))
    scores = evaluation.scores | {"classifier_test_accuracy": _read_json(ws.metrics("classifier"), "genp features")["test_accuracy"]}

    use_experiment(ws.root, params.registered_model_name)
    with mlflow.start_run(run_id=_read_json(ws.run_file, "genp train")["run_id"]) as run:
        # Keys the training curves already hold (val_*) keep their per-epoch history; the full-split values
        # used for promotion are in metrics/evaluate.json and on the registered version.
        mlflow.log_metrics({k: v for k, v in scores.items() if k not in run.data.metrics})
        for name, picture in evaluation.pictures.items():
            mlflow.log_image(picture, f"{name}.png")
    print("evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    _write_json(ws.metrics("evaluate"), scores)
    return scores


def register(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Register the model as `<family>-<dataset>`; move the alias only if it beats the champion."""
    import mlflow

    from gen_platform.models import family
    from gen_platform.tracking.lineage import data_version
    from gen_platform.tracking.model_card import model_card
    from gen_platform.tracking.registry import register_and_promote
    from gen_platform.tracking.store import use_experiment

    require_valid_data(ws)
    scores = _read_json(ws.metrics("evaluate"), "genp evaluate")
    metric = family(params.model.family).SELECTION_METRIC
    use_experiment(ws.root, params.registered_model_name)
    run_id = _read_json(ws.run_file, "genp train")["run_id"]
    card = model_card(params, scores, data_version(ws.root), run_id, sample_grid="samples.png")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text(card, "model_card.md")
        decision = register_and_promote(ws.model_dir, params.registered_model_name, params.registry.alias,
                                        metric, scores[metric], params.registry.min_improvement, description=card)
    verb = "promoted to" if decision.promoted else "not promoted to"
    print(f"registered {decision.model_name} v{decision.version}, {verb} @{decision.alias}: {decision.reason} "
          f"({decision.metric} {decision.challenger:.4g} vs champion {decision.champion})")
    _write_json(ws.report("registry.json"), decision.to_dict())
    return decision.to_dict()


def tune(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Search with Ray Tune inside one parent MLflow run (a child run per trial), then evaluate the best
    trial's model like `evaluate` does and register it under the champion rule."""
    import mlflow

    from gen_platform.evaluation.evaluate import evaluate_model
    from gen_platform.models import family
    from gen_platform.tracking.lineage import data_version, git_commit
    from gen_platform.tracking.model_card import model_card
    from gen_platform.tracking.model_io import load_model_dir
    from gen_platform.tracking.registry import register_and_promote
    from gen_platform.tracking.store import use_experiment
    from gen_platform.tracking.tuning import log_search
    from gen_platform.training.checkpoint import save_checkpoint
    from gen_platform.training.launcher import read_result_checkpoint
    from gen_platform.tuning.search import run_search, trial_params

    verdict = require_valid_data(ws)
    splits, classifier = load_splits(ws), load_saved_classifier(ws)
    settings = params.tune
    experiment_id = use_experiment(ws.root, params.registered_model_name)
    tags = {"data_version": data_version(ws.root), "git_commit": git_commit(ws.root), "search": "true",
            "validation": "passed" if verdict["success"] else "failed", "family": params.model.family,
            "dataset": params.data.dataset}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags, run_name=f"tune-{params.model.family}") as parent:
        print(f"MLflow parent run {parent.info.run_id}: {settings.trials} trials, ASHA up to {settings.max_epochs} epochs")
        search = run_search(params, splits["train"], splits["val"], ws.root, settings.trials, settings.max_epochs,
                            classifier, name=f"tune-{parent.info.run_id}", optuna=settings.optuna,
                            grace_epochs=settings.grace_epochs)
        child_runs = log_search(search, experiment_id, parent.info.run_id)
        best = search.best
        best_params = trial_params(params, best.config, settings.max_epochs)
        trained = read_result_checkpoint(best.checkpoint_path)
        model_dir = ws.root / "models" / "tuned"
        save_checkpoint(model_dir, {"model": trained.model_state}, trained.model_config, params.model.family)
        evaluation = evaluate_model(load_model_dir(model_dir), best_params, splits, classifier, ws.root)
        metric = family(params.model.family).SELECTION_METRIC
        with mlflow.start_run(run_id=child_runs[best.trial_id], nested=True):
            mlflow.log_metrics({f"eval_{k}": v for k, v in evaluation.scores.items()})
            for name, picture in evaluation.pictures.items():
                mlflow.log_image(picture, f"{name}.png")
            card = model_card(best_params, evaluation.scores, tags["data_version"], child_runs[best.trial_id],
                              sample_grid="samples.png")
            mlflow.log_text(card, "model_card.md")
            decision = register_and_promote(model_dir, params.registered_model_name, params.registry.alias, metric,
                                            evaluation.scores[metric], params.registry.min_improvement, description=card)
        mlflow.set_tags({"best_trial": best.trial_id, "best_run_id": child_runs[best.trial_id],
                         "promotion.promoted": str(decision.promoted), "promotion.reason": decision.reason})
        mlflow.log_metrics({f"best_{metric}": evaluation.scores[metric], "trial_epochs": search.trial_epochs})
    summary = {"parent_run_id": parent.info.run_id, "best_trial": best.trial_id, "best_config": best.config,
               "metric": metric, "best_value": evaluation.scores[metric], "trials": len(search.trials),
               "stopped_early": sum(t.stopped_early for t in search.trials), "trial_epochs": search.trial_epochs,
               "registration": decision.to_dict()}
    _write_json(ws.report("tune.json"), summary)
    verb = "promoted to" if decision.promoted else "not promoted to"
    print(f"best trial {best.trial_id} {best.config}: {metric} {evaluation.scores[metric]:.4g}; registered "
          f"{decision.model_name} v{decision.version}, {verb} @{decision.alias} ({decision.reason})")
    return summary
