"""Where a run reads and writes: the layout of a workspace, and the small JSON files the stages hand to each
other. `dvc repro` works in the repository root; each Prefect flow run works in a directory of its own
(`<repo>/runs/<flow-run-id>/`, see `flows/workspaces.py`) so that concurrent runs never share a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_platform.data.arrays import ImageArrays
from gen_platform.data.manifest import raw_path
from gen_platform.data.shards import ShardedSplit
from gen_platform.data.splits import SPLITS
from gen_platform.errors import GenPlatformError


@dataclass(frozen=True)
class Workspace:
    """`root` holds this run's data (and its `data.dvc`, the lineage of that data) and everything it writes;
    `repo` is the repository it belongs to: its git commit and its default MLflow store. The same directory
    for `dvc repro`."""

    root: Path
    repo: Path
    run_id: str | None = None  # the orchestrator's run (a Prefect flow run) this workspace belongs to

    @classmethod
    def at(cls, root: str | Path = ".", repo: str | Path | None = None, run_id: str | None = None) -> Workspace:
        root = Path(root).resolve()
        return cls(root, Path(repo).resolve() if repo is not None else root, run_id)

    def raw(self, dataset: str) -> Path:
        return raw_path(self.root, dataset)

    def prepared(self, split: str) -> ShardedSplit:
        return ShardedSplit(str(self.root / "data" / "prepared" / split))

    @property
    def prepared_files(self) -> list[Path]:
        return [path for split in SPLITS for path in self.prepared(split).files]

    def load_splits(self) -> dict[str, ImageArrays]:
        """Every split in memory (evaluation); training streams `prepared(split)` instead."""
        return {split: self.prepared(split).read() for split in SPLITS}

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / "generator"

    @property
    def tuned_model_dir(self) -> Path:
        """The best trial's model of the last search."""
        return self.root / "models" / "tuned"

    @property
    def classifier_dir(self) -> Path:
        return self.root / "models" / "classifier"

    @property
    def run_file(self) -> Path:
        """The MLflow run of the last training, for the stages after it."""
        return self.root / "models" / "mlflow_run.json"

    @property
    def in_progress_file(self) -> Path:
        """Written while `train` runs: lets a new driver resume a training whose driver died."""
        return self.root / "models" / "train_in_progress.json"

    def metrics(self, stage: str) -> Path:
        return self.root / "metrics" / f"{stage}.json"

    @property
    def curves_dir(self) -> Path:
        """One JSON file per metric, [{"epoch": 1, "<metric>": value}, ...]: DVC plots of the training curves."""
        return self.root / "plots" / "train"

    def report(self, name: str) -> Path:
        return self.root / "reports" / name


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_json(path: Path, hint: str) -> dict[str, Any]:
    """A stage's output; `hint` is the command that writes it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenPlatformError(f"{path}: not found; run `{hint}` first") from None
