"""`genp`: one subcommand per pipeline stage (what dvc.yaml runs), plus data import and sampling."""

from __future__ import annotations

# First, before any module that registers an exit handler: its handler must run after all of them.
from gen_platform import quick_exit  # noqa: I001

import sys
from pathlib import Path
from typing import Annotated, Callable

import typer

from gen_platform import stages
from gen_platform.config import PipelineParams, deep_merge, load_params, params_for, parse_override
from gen_platform.data.manifest import DatasetManifest
from gen_platform.errors import GenPlatformError
from gen_platform.models import FAMILIES
from gen_platform.startup import configure_process
from gen_platform.workspace import Workspace

app = typer.Typer(help="gen_platform: train generative image models reproducibly.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Bring datasets into data/raw (tracked by data.dvc).", no_args_is_help=True)
app.add_typer(data_app, name="data")

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="pipeline parameters file")]
SetOption = Annotated[list[str], typer.Option("--set", "-s", help="override a parameter, e.g. -s model.vae.beta=4")]
RootOption = Annotated[Path, typer.Option("--root", help="repository root (workspace)")]
RepoOption = Annotated[Path | None, typer.Option("--repo", help="the repository a run workspace belongs to (default: "
                                                 "--root); a flow's stages run as Ray jobs pass it")]
RunIdOption = Annotated[str | None, typer.Option("--run-id", help="the flow run the workspace belongs to (lineage)")]


def _overrides(texts: list[str]) -> dict:
    merged: dict = {}
    for text in texts:
        merged = deep_merge(merged, parse_override(text))
    return merged


def _params(path: Path, overrides: list[str]) -> PipelineParams:
    return load_params(path, _overrides(overrides))


def _stage(function: Callable, name: str, help_text: str) -> None:
    @app.command(name=name, help=help_text)
    def command(params: ParamsOption = Path("params.yaml"), set_: SetOption = [],  # noqa: B006 (typer default)
                root: RootOption = Path("."), repo: RepoOption = None, run_id: RunIdOption = None) -> None:
        function(_params(params, set_), Workspace.at(root, repo, run_id))


_stage(stages.prepare, "prepare", "Split data/raw/<dataset>.npz into data/prepared/{train,val,test}/ shards.")
_stage(stages.validate, "validate", "Run the Great Expectations suite; exit non-zero naming each failure.")
_stage(stages.features, "features", "Train the domain classifier used by every distribution metric.")


def _train(params: PipelineParams, ws: Workspace) -> None:
    stages.train(params, ws, process_runs_one_stage=True)


_stage(_train, "train", "Train model.family on Ray Train, tracked in MLflow; writes models/generator.")
_stage(stages.evaluate, "evaluate", "Score the model (fd, kid, precision, recall, ...; VAE: ELBO, nll) and draw it.")
_stage(stages.register, "register", "Register the model; move the champion alias only if it is better.")


@app.command(help="Search hyperparameters with Ray Tune (ASHA) and register the best model.")
def tune(family: Annotated[str | None, typer.Option(help=f"one of {sorted(FAMILIES)} (default: params.yaml's)")] = None,
         trials: Annotated[int | None, typer.Option(min=1, help="number of trials")] = None,
         epochs: Annotated[int | None, typer.Option(min=1, help="epochs of a full trial")] = None,
         optuna: Annotated[bool | None, typer.Option(help="Optuna search instead of random")] = None,
         resume: Annotated[bool, typer.Option(
             help="continue this model's latest search that did not finish (same parent run)")] = False,
         params: ParamsOption = Path("params.yaml"), set_: SetOption = [],  # noqa: B006
         root: RootOption = Path("."), repo: RepoOption = None, run_id: RunIdOption = None) -> None:
    options = {"trials": trials, "max_epochs": epochs, "optuna": optuna}
    merged = deep_merge(_overrides(set_), {"tune": {k: v for k, v in options.items() if v is not None}})
    base = load_params(params)
    base = params_for(params, family or base.model.family, base.data.dataset, merged)
    stages.tune(base, Workspace.at(root, repo, run_id), resume=resume, process_runs_one_stage=True)


def _imported(manifest: DatasetManifest) -> None:
    typer.echo(f"wrote data/raw/{manifest.name}.npz and its manifest: {manifest.image_count} images "
               f"{manifest.image_size}×{manifest.image_size}×{manifest.channels}, {manifest.num_classes} classes "
               f"({', '.join(manifest.class_names[:10])}{', …' if manifest.num_classes > 10 else ''}). "
               f"Train it: set data.dataset: {manifest.name} in params.yaml (the manifest supplies its size, channels "
               "and classes), then `dvc add data/raw` (or `dvc commit data.dvc`)")


@data_app.command("import", help="Write a built-in dataset (digits, fashion-mnist, photo-crops) to "
                  "data/raw/<name>.npz, with its manifest data/raw/<name>.manifest.json.")
def data_import(name: str, count: Annotated[int | None, typer.Option(min=100, max=400_000, help="images to "
                                                                     "generate (photo-crops only)")] = None,
                root: RootOption = Path(".")) -> None:
    _imported(stages.import_dataset(name, Workspace.at(root), count))


@data_app.command("import-folder", help="Read an image folder into data/raw/<name>.npz: one subfolder per class "
                  "(FOLDER/<class>/<image>) or FOLDER/labels.csv with columns file,label (label = class name). "
                  "Its manifest, data/raw/<name>.manifest.json, records the class names.")
def data_import_folder(folder: Path, name: Annotated[str, typer.Option(help="dataset name")],
                       rgb: Annotated[bool, typer.Option(help="keep 3 colour channels (default: grey)")] = False,
                       size: Annotated[int | None, typer.Option(min=4, max=1024, help="centre-crop to a square and "
                                                                "resize every image to SIZE×SIZE")] = None,
                       root: RootOption = Path(".")) -> None:
    _imported(stages.import_folder(folder, name, Workspace.at(root), 3 if rgb else 1, size))


@data_app.command("describe", help="Write the manifest of data/raw/<name>.npz imported before datasets had "
                  "manifests (classes named by their labels).")
def data_describe(name: str, root: RootOption = Path(".")) -> None:
    _imported(stages.describe_dataset(name, Workspace.at(root)))


@data_app.command("accept", help="Accept the current data as an intended change for a registered model (another "
                  "camera, a new class): its next runs pass the drift gate against this data, not the data it "
                  "was last trained on.")
def data_accept(reason: Annotated[str, typer.Option(help="why the data changed (recorded on the registered model)")],
                family: Annotated[str | None, typer.Option(help=f"one of {sorted(FAMILIES)} (default: params.yaml's)")
                                  ] = None,
                dataset: Annotated[str | None, typer.Option(help="a dataset in data/raw (default: params.yaml's)")
                                   ] = None,
                params: ParamsOption = Path("params.yaml"), root: RootOption = Path(".")) -> None:
    base = load_params(params)
    stages.accept_data(params_for(params, family or base.model.family, dataset or base.data.dataset, {}),
                       Workspace.at(root), reason)


@app.command(help="Draw samples from a registered model, e.g. `genp sample vae-digits@champion -n 64 -o grid.png`.")
def sample(model: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION or a models:/ URI")],
           n: Annotated[int, typer.Option("-n", min=1, max=4096, help="number of samples")] = 64,
           output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write")] = Path("samples.png"),
           seed: Annotated[int, typer.Option(help="random seed")] = 0,
           root: RootOption = Path(".")) -> None:
    import mlflow
    import torch

    from gen_platform.evaluation.images import image_grid
    from gen_platform.tracking.model_io import load_generator
    from gen_platform.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(Path(root).resolve()))
    uri = model if model.startswith("models:/") else f"models:/{model}"
    generator = load_generator(uri)
    image_grid(generator.sample(n, torch.Generator().manual_seed(seed))).save(output)
    typer.echo(f"wrote {n} samples from {uri} to {output}")


@app.command(help="Where a registered model came from: data, code, validation, params, metrics, search, flow run.")
def lineage(model: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION or a models:/ URI")],
            as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for scripts")] = False,
            root: RootOption = Path(".")) -> None:
    import json

    import mlflow

    from gen_platform.tracking.lineage_report import format_lineage, model_lineage
    from gen_platform.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(Path(root).resolve()))
    record = model_lineage(model)
    typer.echo(json.dumps(record, indent=2, sort_keys=True) if as_json else format_lineage(record))


def main() -> None:
    configure_process()
    quick_exit.set_status(1)  # an uncaught exception's status, unless the command ends otherwise
    try:
        app()  # ends with SystemExit
    except SystemExit as done:
        quick_exit.set_status(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
        raise
    except KeyboardInterrupt:
        quick_exit.set_status(130)
        raise
    except GenPlatformError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
