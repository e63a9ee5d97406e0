"""The pipeline's stages as plain functions of (params, workspace). The `genp` CLI (and so `dvc repro`) and
the Prefect flows call these and nothing else; each stage refuses to train on data that did not pass
validation (`validation.gate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gen_platform.config import PipelineParams
from gen_platform.data import sources
from gen_platform.data.arrays import CHUNK_BYTES, ImageArrays, open_npz, write_npz
from gen_platform.data.folders import ImageFolder
from gen_platform.data.manifest import DatasetManifest, npz_content_hash, write_hashed_npz
from gen_platform.data.splits import SPLITS, split_rows, write_splits
from gen_platform.errors import ValidationFailed
from gen_platform.validation.drift import DataProfile, profile_of
from gen_platform.validation.gate import record_verdict, require_valid_data
from gen_platform.workspace import Workspace, read_json, write_json


def _write_dataset(ws: Workspace, manifest: DatasetManifest, arrays: ImageArrays) -> DatasetManifest:
    """The npz, then its manifest: a manifest on disk always describes the npz beside it."""
    write_npz(ws.raw(manifest.name), arrays)
    manifest.write(ws.root)
    return manifest


def import_dataset(name: str, ws: Workspace, count: int | None = None) -> DatasetManifest:
    """Write a built-in dataset to data/raw/<name>.npz, with its manifest."""
    arrays = sources.builtin(name, count)
    return _write_dataset(ws, DatasetManifest.describe(name, arrays, sources.BUILTIN_CLASS_NAMES[name],
                                                       f"built-in: {name}"), arrays)


def import_folder(folder: Path, name: str, ws: Workspace, channels: int = 1, size: int | None = None,
                  chunk_bytes: int = CHUNK_BYTES) -> DatasetManifest:
    """A user's image folder (class subfolders or labels.csv) to data/raw/<name>.npz and its manifest (class
    names included), decoded and written a chunk at a time: memory does not grow with the folder. Every image is
    checked before the npz replaces the old one, and the manifest follows the npz."""
    found = ImageFolder.scan(folder)
    shape, content_sha256 = write_hashed_npz(ws.raw(name), len(found), found.chunks(channels, size, chunk_bytes),
                                             found.labels)
    manifest = DatasetManifest.of(name, shape, found.labels, found.classes, f"folder: {Path(folder).name}/",
                                  content_sha256)
    manifest.write(ws.root)
    return manifest


def describe_dataset(name: str, ws: Workspace) -> DatasetManifest:
    """The manifest of data/raw/<name>.npz imported before datasets had one (classes named by their labels)."""
    dataset = open_npz(ws.raw(name))
    classes = [str(label) for label in range(int(dataset.labels.max()) + 1 if len(dataset) else 0)]
    manifest = DatasetManifest.of(name, dataset.shape, dataset.labels, classes,
                                  f"described from an existing {name}.npz", npz_content_hash(dataset))
    manifest.write(ws.root)
    return manifest


def prepare(params: PipelineParams, ws: Workspace, chunk_bytes: int = CHUNK_BYTES) -> dict[str, int]:
    """Deterministic train/val/test split of data/raw/<dataset>.npz into data/prepared/<split>/ shards, in one
    pass over the images a chunk at a time: memory does not grow with the dataset."""
    dataset = open_npz(ws.raw(params.data.dataset))
    rows = split_rows(len(dataset), dataset.split, params.split.seed, params.split.val_fraction,
                      params.split.test_fraction)
    write_splits(dataset, rows, {name: Path(ws.prepared(name).directory) for name in SPLITS}, chunk_bytes)
    for stale in Path(ws.prepared("train").directory).parent.glob("*.npz"):  # the single-file layout of old
        stale.unlink()
    sizes = {name: len(part) for name, part in rows.items()}
    print(f"prepared {params.data.dataset}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return sizes


def _accepted_data(params: PipelineParams, ws: Workspace) -> tuple[DataProfile, str] | None:
    """What the registered model last accepted. A store not created yet holds nothing: it is not created here."""
    import mlflow

    from gen_platform.tracking.accepted_data import accepted_profile
    from gen_platform.tracking.store import store_root, tracking_uri

    uri = tracking_uri(ws.repo)
    if uri.startswith("sqlite:///") and not (store_root(ws.repo) / "mlflow.db").exists():
        return None
    try:
        return accepted_profile(mlflow.MlflowClient(uri), params.registered_model_name)
    except mlflow.exceptions.MlflowException as error:
        raise ValidationFailed(f"cannot read the data accepted for {params.registered_model_name} from the tracking "
                               f"store {uri}, so drift cannot be checked: {error}") from None


def accept_data(params: PipelineParams, ws: Workspace, reason: str) -> DataProfile:
    """`genp data accept`: the dataset as it is now becomes what the model's next runs are compared with."""
    import mlflow

    from gen_platform.tracking.accepted_data import accept
    from gen_platform.tracking.lineage import data_version
    from gen_platform.tracking.store import tracking_uri

    profile = profile_of([open_npz(ws.raw(params.data.dataset))]).with_version(data_version(ws.root))
    accept(mlflow.MlflowClient(tracking_uri(ws.repo)), params.registered_model_name, profile,
           f"genp data accept: {reason}")
    print(f"accepted data version {profile.data_version} of {params.data.dataset} for "
          f"{params.registered_model_name} ({profile.images} images): its next runs are compared with it")
    return profile


def validate(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Run the GE suite on the prepared splits; write the report; raise ValidationFailed on any failure."""
    from gen_platform.validation.report import write_html
    from gen_platform.validation.suite import data_docs_index, validate_splits

    accepted = _accepted_data(params, ws) if params.validation.drift.enabled else None
    report = validate_splits({split: ws.prepared(split) for split in SPLITS}, params.data, params.validation,
                             project_root=ws.root, accepted=accepted)
    print(f"drift: {report.drift}")
    print(f"Great Expectations Data Docs (every validation of this workspace): {data_docs_index(ws.root).as_uri()}")
    write_html(report, ws.report("validation.html"), f"Validation of {params.data.dataset}")
    verdict = record_verdict(ws, report.to_dict())
    if not report.success:
        raise ValidationFailed(f"{params.data.dataset}: {report.summary()} (report: {ws.report('validation.html')})")
    print(report.summary())
    return verdict


def features(params: PipelineParams, ws: Workspace) -> dict[str, float]:
    """Train the domain classifier whose penultimate features all distribution metrics use."""
    from gen_platform.evaluation.classifier import ClassifierArchitecture, SavedClassifier, accuracy, train_classifier

    require_valid_data(ws)
    splits, settings = ws.load_splits(), params.classifier
    architecture = ClassifierArchitecture(params.data.image_size, params.data.channels, params.data.num_classes,
                                          settings.feature_dim)
    model = train_classifier(splits["train"], architecture, settings.epochs, settings.batch_size,
                             settings.learning_rate, settings.seed)
    scores = {"val_accuracy": accuracy(model, splits["val"]), "test_accuracy": accuracy(model, splits["test"])}
    SavedClassifier.of(model).save(ws.classifier_dir)
    write_json(ws.metrics("classifier"), scores)
    print(f"domain classifier: val accuracy {scores['val_accuracy']:.3f}, test accuracy {scores['test_accuracy']:.3f}")
    return scores


def _connect_ray(state_api: bool) -> None:
    """Connect to the cluster in RAY_ADDRESS, or start a local runtime. A process that runs one stage and exits
    (the CLI) starts it without Ray's state API where that stage needs none: a dashboard and its ten module
    processes fewer. A long-lived process (the flows' serve) keeps it for whatever it runs next."""
    from gen_platform.training.runtime import ensure_ray

    ensure_ray(state_api=state_api)


def train(params: PipelineParams, ws: Workspace, hooks: tuple = (), process_runs_one_stage: bool = False
          ) -> dict[str, float]:
    """Train on Ray Train inside one MLflow run (params, lineage tags, system metrics, and curves logged live
    as each epoch ends); save the final model. Bad data is refused before the Ray runtime starts.
    `hooks` (`training.hooks.EpochHook`) run in every worker at each epoch's start and end.
    `process_runs_one_stage` (the CLI): see `_connect_ray`."""
    from gen_platform.evaluation.classifier import SavedClassifier
    from gen_platform.tracking.runs import live_curves, log_training, training_run
    from gen_platform.training.launcher import after_training, fit

    require_valid_data(ws)
    _connect_ray(state_api=not process_runs_one_stage)
    classifier = SavedClassifier.read(ws.classifier_dir)
    with training_run(ws, params) as run_id:
        with live_curves(run_id) as live:  # left before log_training: the two never log the same epoch at once
            result = fit(params, ws.prepared("train"), ws.prepared("val"), run_name=run_id, root=ws.root,
                         classifier=classifier, hooks=(*hooks, live))
        log_training(result)
        after_training(result, ws.prepared("train"), params.train.seed).save_model(ws.model_dir)
    curves = [key for key in result.history[-1] if key.startswith(("train_", "val_"))]
    for key in curves:
        write_json(ws.curves_dir / f"{key}.json", {"curve": [{"epoch": r["epoch"], key: r[key]} for r in result.history]})
    final = {key: result.history[-1][key] for key in curves}
    write_json(ws.metrics("train"), final)
    return final


def _score(params: PipelineParams, ws: Workspace, model_dir: Path, run_id: str) -> dict[str, float]:
    """Evaluate the model in `model_dir` onto its MLflow run and into reports/ (what `evaluate` and `tune` share)."""
    from gen_platform.evaluation.classifier import SavedClassifier
    from gen_platform.scoring import evaluate_model
    from gen_platform.tracking.model_io import load_model_dir
    from gen_platform.tracking.runs import log_evaluation

    evaluation = evaluate_model(load_model_dir(model_dir), params, ws.load_splits(),
                                SavedClassifier.read(ws.classifier_dir), ws.repo)
    evaluation.scores["classifier_test_accuracy"] = read_json(ws.metrics("classifier"), "genp features")["test_accuracy"]
    for name, picture in evaluation.pictures.items():
        picture.save(ws.report(f"{name}.png"))
    log_evaluation(ws, params, run_id, evaluation)
    print("evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in evaluation.scores.items()))
    return evaluation.scores


def evaluate(params: PipelineParams, ws: Workspace) -> dict[str, float]:
    """Generative metrics in the domain feature space plus the family's own scores, pictures."""
    from gen_platform.tracking.runs import last_training_run

    require_valid_data(ws)
    scores = _score(params, ws, ws.model_dir, last_training_run(ws))
    write_json(ws.metrics("evaluate"), scores)
    return scores


def _validated_profile(ws: Workspace, verdict: dict[str, Any]) -> DataProfile:
    """The profile of the data that passed validation (the verdict of `require_valid_data`), with its version."""
    from gen_platform.tracking.lineage import data_version

    if not verdict.get("profile"):
        raise ValidationFailed(f"{ws.metrics('validation')} has no data profile (written by an older version); run "
                               "`genp validate` again")
    return DataProfile.from_dict(verdict["profile"]).with_version(data_version(ws.root))


def _register(params: PipelineParams, ws: Workspace, model_dir: Path, run_id: str, scores: dict[str, float],
              trained_on: DataProfile) -> dict[str, Any]:
    from gen_platform.data.arrays import to_tensor
    from gen_platform.evaluation.classifier import FeatureModule, SavedClassifier
    from gen_platform.tracking.links import run_page
    from gen_platform.tracking.registry import register_run
    from gen_platform.tracking.store import use_experiment

    use_experiment(ws.repo, params.data.dataset)
    features = FeatureModule(SavedClassifier.read(ws.classifier_dir).load())
    decision = register_run(params, model_dir, run_id, scores, trained_on,
                            to_tensor(ws.prepared("val").read().images), features,
                            DatasetManifest.read(ws.root, params.data.dataset).class_names)
    print(f"registered {decision.summary()}")
    print(f"MLflow: {run_page(run_id)}")
    return decision.to_dict()


def register(params: PipelineParams, ws: Workspace) -> dict[str, Any]:
    """Register the model as `<family>-<dataset>`; move the alias only if it beats the champion."""
    from gen_platform.tracking.runs import last_training_run

    trained_on = _validated_profile(ws, require_valid_data(ws))
    scores = read_json(ws.metrics("evaluate"), "genp evaluate")
    decision = _register(params, ws, ws.model_dir, last_training_run(ws), scores, trained_on)
    write_json(ws.report("registry.json"), decision)
    return decision


def tune(params: PipelineParams, ws: Workspace, resume: bool = False, process_runs_one_stage: bool = False
         ) -> dict[str, Any]:
    """Search with Ray Tune inside one parent MLflow run (a child run per trial, filled live); the best trial's
    model is then evaluated and registered exactly like a trained one, on its own child run. Fails when no
    trial finished. `resume`: continue this model's latest search that did not finish, in its parent run.
    Bad data is refused before the Ray runtime starts; `process_runs_one_stage` (the CLI): see `_connect_ray`."""
    import mlflow

    from gen_platform.evaluation.classifier import SavedClassifier
    from gen_platform.models import get_family
    from gen_platform.tracking.metric_names import search_metric
    from gen_platform.tracking.search_runs import LiveTrialRuns, log_search, search_run, trial_runs
    from gen_platform.training.launcher import after_training, read_result_checkpoint
    from gen_platform.tuning.search import run_search, trial_params

    verdict = require_valid_data(ws)
    # Only a multi-worker trial runs Ray Train, whose placement-group cleaner needs Ray's state API; a
    # single-process trial is a plain Tune trainable.
    _connect_ray(state_api=not process_runs_one_stage or params.tune.workers_per_trial > 1)
    settings = params.tune
    with search_run(ws, params, resume) as parent:
        verb = "resuming the search of" if resume else "MLflow parent run"
        print(f"{verb} {parent.info.run_id}: {settings.trials} trials, ASHA up to {settings.max_epochs} epochs")
        search = run_search(params, ws.prepared("train"), ws.prepared("val"), ws.root, SavedClassifier.read(ws.classifier_dir),
                            name=f"tune-{parent.info.run_id}", callbacks=[LiveTrialRuns(parent, settings.trials)],
                            resume=resume)
        runs = trial_runs(parent.info.run_id)
        log_search(search, runs)
        counts = search.counts()
        print("trials: " + ", ".join(f"{count} {status}" for status, count in counts.items()))
        for trial in search.trials:
            if trial.error:
                print(f"trial {trial.trial_id} failed: {trial.error}")
        best = search.best  # raises when no trial finished
        best_params = trial_params(params, best.sample, get_family(params.model.family))
        best_run = runs[best.trial_id]
        after_training(read_result_checkpoint(best.checkpoint_path), ws.prepared("train"),
                       best_params.train.seed).save_model(ws.tuned_model_dir)
        scores = _score(best_params, ws, ws.tuned_model_dir, best_run)
        decision = _register(best_params, ws, ws.tuned_model_dir, best_run, scores, _validated_profile(ws, verdict))
        mlflow.set_tags({"best_trial": best.trial_id, "best_run_id": best_run,
                         "promotion.promoted": str(decision["promoted"]), "promotion.reason": decision["reason"]})
        mlflow.log_metrics({search_metric(f"best_{search.metric}"): scores[search.metric],
                            search_metric("trial_epochs"): search.trial_epochs})
    summary = {"parent_run_id": parent.info.run_id, "best_trial": best.trial_id, "best_sample": best.sample,
               "metric": search.metric, "best_value": scores[search.metric], "trials": len(search.trials),
               **{f"trials_{status}": count for status, count in counts.items()},
               "trial_epochs": search.trial_epochs, "registration": decision}
    write_json(ws.report("tune.json"), summary)
    print(f"best trial {best.trial_id} {best.sample}: {search.metric} {scores[search.metric]:.4g}")
    return summary
