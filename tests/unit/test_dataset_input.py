"""Two runs that log the same data version at the same moment: MLflow's store checks for the dataset, then
inserts it, so the later of two racing inserts fails on the unique key. Forced here on a real SQLite store: the
dataset is already recorded (the other run won) while this run's check comes back empty (it looked first)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.store.tracking.dbmodels.models import SqlDataset
from sqlalchemy.orm import Query

from gen_platform.tracking.lineage import log_dataset_input


def _dataset() -> MetaDataset:
    return MetaDataset(CodeDatasetSource({"path": "data/raw"}), name="digits", digest="abc123.dir")


def test_a_run_that_loses_the_race_to_record_the_dataset_still_links_it(tmp_path, monkeypatch):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("race", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_input(_dataset(), context="training")  # the run that won

    original_all = Query.all
    missed: list[int] = []

    def check_that_looked_first(query: Query) -> list:
        if not missed and query.column_descriptions[0]["entity"] is SqlDataset:
            missed.append(1)
            return []
        return original_all(query)

    monkeypatch.setattr(Query, "all", check_that_looked_first)
    with mlflow.start_run(experiment_id=experiment) as late:
        with pytest.raises(mlflow.exceptions.MlflowException, match="UNIQUE constraint failed: datasets"):
            log_dataset_input(_dataset(), attempts=1)  # what plain mlflow.log_input does
        missed.clear()
        log_dataset_input(_dataset())
    assert missed == [1]  # the second call's first attempt lost the race too
    inputs = mlflow.get_run(late.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("digits", "abc123.dir")]
