"""The Great Expectations gate: per-image statistics and dataset facts, checked with GE 1.x.

GE validates tables, so each image becomes a row of statistics (shape, dtype, pixel range, NaNs, a content
hash) and the class distribution becomes a second table; with accepted data to compare with, the drift gate
(`drift.py`) adds two more. Every expectation is reported, failed or not.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gen_platform.settings import DataParams, ValidationParams
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import ShardedSplit
from gen_platform.progress import progress
from gen_platform.validation.drift import CLASS_TABLE, PROFILE_TABLE, DataProfile, class_frame, drift_expectations, \
    profile_frame, profile_of

IMAGE_COLUMNS = ["split", "label", "height", "width", "channels", "dtype",
                 "pixel_min", "pixel_max", "nan_count", "sha1"]


@dataclass(frozen=True)
class ExpectationOutcome:
    table: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    observed: str


@dataclass
class ValidationReport:
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    drift: str = "not checked"  # what the data was compared with, or why it was not
    profile: DataProfile | None = None  # of the validated data (None when empty): what a registration accepts

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]

    def summary(self) -> str:
        if self.success:
            return f"validation passed: {len(self.outcomes)} expectations on {self.rows} images"
        lines = [f"{o.table}: {o.expectation}({_short_kwargs(o.kwargs)}): observed {o.observed}" for o in self.failures]
        return f"validation failed ({len(lines)} of {len(self.outcomes)} expectations): " + "; ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "rows": self.rows, "failed": len(self.failures), "drift": self.drift,
                "profile": self.profile.to_dict() if self.profile else None,
                "expectations": [asdict(o) for o in self.outcomes]}


def _short_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in {"batch_id"})


def _statistics(split: str, arrays: ImageArrays) -> pd.DataFrame:
    """One row per image of a batch, vectorised over the batch."""
    images = arrays.images
    flat = images.reshape(len(images), int(np.prod(images.shape[1:])))
    if np.issubdtype(flat.dtype, np.floating):
        with warnings.catch_warnings():  # an all-NaN image has no min or max: NaN, reported by the suite
            warnings.simplefilter("ignore", RuntimeWarning)
            pixel_min, pixel_max = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
        nan_count = np.isnan(flat).sum(axis=1)
    else:
        pixel_min, pixel_max, nan_count = flat.min(axis=1), flat.max(axis=1), np.zeros(len(flat), np.int64)
    height, width, channels = images.shape[1:4] if images.ndim == 4 else (*images.shape[1:3], 1)
    return pd.DataFrame({
        "split": split, "label": arrays.labels.astype(np.int64), "height": height, "width": width,
        "channels": channels, "dtype": str(images.dtype), "pixel_min": pixel_min.astype(np.float64),
        "pixel_max": pixel_max.astype(np.float64), "nan_count": nan_count.astype(np.int64),
        "sha1": [hashlib.sha1(row.tobytes()).hexdigest() for row in np.ascontiguousarray(flat)],
    }, columns=IMAGE_COLUMNS)


def image_table(splits: dict[str, ImageArrays | ShardedSplit]) -> pd.DataFrame:
    """Per-image statistics, computed one shard (or one in-memory split) at a time: memory holds a shard and
    a few numbers per image, never the whole dataset."""
    tables = []
    for split, source in splits.items():
        batches = source.shards() if isinstance(source, ShardedSplit) else [source]
        tables += [_statistics(split, batch) for batch in progress(batches, _count(source), f"statistics of {split}")]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=IMAGE_COLUMNS)


def _count(source: ImageArrays | ShardedSplit) -> int:
    return len(source.files) // 2 if isinstance(source, ShardedSplit) else 1


def class_table(images: pd.DataFrame) -> pd.DataFrame:
    counts = images["label"].value_counts()
    return pd.DataFrame({"label": counts.index.astype(int), "fraction": (counts / max(len(images), 1)).values})


def _expectations(data: DataParams, rules: ValidationParams) -> dict[str, list]:
    import great_expectations as gx

    e = gx.expectations
    return {
        "images": [
            e.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
            e.ExpectColumnValuesToBeInSet(column="height", value_set=[data.image_size]),
            e.ExpectColumnValuesToBeInSet(column="width", value_set=[data.image_size]),
            e.ExpectColumnValuesToBeInSet(column="channels", value_set=[data.channels]),
            e.ExpectColumnValuesToBeInSet(column="dtype", value_set=["uint8"]),
            e.ExpectColumnValuesToBeBetween(column="nan_count", min_value=0, max_value=0),
            e.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0, max_value=255),
            e.ExpectColumnValuesToBeBetween(column="pixel_max", min_value=0, max_value=255),
            e.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(data.num_classes))),
            e.ExpectColumnValuesToBeUnique(column="sha1", mostly=1.0 - rules.max_duplicate_fraction),
        ],
        "classes": [
            e.ExpectColumnValuesToBeBetween(column="fraction", min_value=rules.min_class_fraction,
                                            max_value=rules.max_class_fraction),
        ],
    }


def _observed(result: Any) -> str:
    details = result.result or {}
    if "observed_value" in details:
        value = details["observed_value"]
        if value is None:  # what GE makes of a NaN
            return "no value (NaN)"
        return repr(value.item() if isinstance(value, np.generic) else value)
    if "unexpected_count" in details:
        sample = list(dict.fromkeys(details.get("partial_unexpected_list", [])))[:5]
        return f"{details['unexpected_count']} of {details.get('element_count', '?')} rows unexpected, e.g. {sample}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"error: {result.exception_info.get('exception_message')}"
    return "n/a"


def _get_or_add(get: Any, add: Any, name: str) -> Any:
    try:
        return get(name)
    except LookupError:  # what GE raises for a missing asset or batch definition
        return add(name)


def _run_suite(context: Any, name: str, frame: pd.DataFrame, expectations: list, docs: bool
               ) -> tuple[list[ExpectationOutcome], list]:
    """One suite over one table; returns its outcomes and (`docs`) the identifiers of what Data Docs should show. In
    a project context (`docs`) the suite, its validation definition and a checkpoint are saved (replacing the
    previous ones: the suite is defined by params.yaml, not edited in GE) and the result joins the stored
    validations."""
    import great_expectations as gx

    source = context.data_sources.add_or_update_pandas(f"{name}_source")
    asset = _get_or_add(source.get_asset, source.add_dataframe_asset, name)
    batch = _get_or_add(asset.get_batch_definition, asset.add_batch_definition_whole_dataframe, f"{name}_batch")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}_check", data=batch, suite=suite))
    shown = []
    if docs:
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{name}_checkpoint", validation_definitions=[definition], actions=[]))
        ((identifier, run),) = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.items()
        shown = [identifier, identifier.expectation_suite_identifier]
    else:
        run = definition.run(batch_parameters={"dataframe": frame})
    return [ExpectationOutcome(table=name, expectation=r.expectation_config.type,
                               kwargs={k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"},
                               success=bool(r.success), observed=_observed(r))
            for r in run.results], shown


def data_docs_index(project_root: Path) -> Path:
    return project_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def validate_splits(splits: dict[str, ImageArrays | ShardedSplit], data: DataParams, rules: ValidationParams,
                    project_root: Path | None = None,
                    accepted: tuple[DataProfile, str] | None = None) -> ValidationReport:
    """Run the suite on all splits together; returns the full report (the caller decides to stop). With a
    `project_root`, Great Expectations keeps its suites and every validation result in `<root>/gx/` and
    rebuilds its Data Docs (`data_docs_index`), so past validations can be browsed. With `accepted` (the profile
    of the data last accepted for the model, and by what) and `rules.drift.enabled`, the drift gate runs too."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    images = image_table(splits)
    context = (gx.get_context(mode="file", project_root_dir=str(project_root)) if project_root
               else gx.get_context(mode="ephemeral"))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no "Calculating Metrics" bars
    expectations = _expectations(data, rules)
    docs = project_root is not None
    tables = [("images", images, expectations["images"]), ("classes", class_table(images), expectations["classes"])]
    drift = "off (validation.drift.enabled: false)" if not rules.drift.enabled else (
        "not checked: no data accepted for this model yet (its first registration accepts the data it trained on)")
    profile = profile_of(splits.values()) if len(images) else None  # an empty version fails the images suite
    if rules.drift.enabled and accepted is not None and profile is not None:
        reference, accepted_by = accepted
        checks = drift_expectations(reference, rules.drift)
        tables += [(PROFILE_TABLE, profile_frame(profile, reference), checks[PROFILE_TABLE]),
                   (CLASS_TABLE, class_frame(profile), checks[CLASS_TABLE])]
        drift = f"compared with data version {reference.data_version or '?'} ({accepted_by})"
    outcomes, shown = [], []
    for name, frame, table_expectations in tables:
        table_outcomes, table_shown = _run_suite(context, name, frame, table_expectations, docs)
        outcomes += table_outcomes
        shown += table_shown
    if docs:  # one Data Docs update for this validation's pages (per table it would rebuild the index each time)
        context.build_data_docs(resource_identifiers=shown)
    return ValidationReport(success=all(o.success for o in outcomes), rows=len(images), outcomes=outcomes,
                            drift=drift, profile=profile)
