"""The drift gate: a new data version compared with the data last accepted for the same registered model.

Each image being valid on its own does not make a version fit to retrain on: another camera (a colour cast),
another crop or resolution (sharpness), a class that vanished. A `DataProfile` summarises a dataset in a few
numbers, computed one shard at a time; the profile of the data a model was last registered from (or that a user
accepted with `genp data accept`) is kept on the registered model (`tracking/accepted_data.py`). Validation turns
the accepted profile and `validation.drift` into Great Expectations expectations on the new profile, so a drift
fails like any other expectation and appears, named, in the report and in the Data Docs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from gen_platform.data.arrays import ImageArrays, NpzImages
from gen_platform.data.shards import ShardedSplit
from gen_platform.settings import DriftParams

if TYPE_CHECKING:
    import pandas as pd

PROFILE_TABLE = "drift"
CLASS_TABLE = "drift_classes"


@dataclass(frozen=True)
class DataProfile:
    """Statistics of a dataset's pixels on the [0, 1] scale, per channel, and of its classes."""

    images: int
    image_size: int
    channels: int
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    sharpness: float  # mean absolute difference of neighbouring pixels: falls when a source is upscaled or blurred
    class_fractions: dict[str, float]  # label (as text, the JSON key) → share of the images
    data_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataProfile:
        return cls(**{**values, "channel_mean": tuple(values["channel_mean"]),
                      "channel_std": tuple(values["channel_std"])})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DataProfile:
        return cls.from_dict(json.loads(text))

    def with_version(self, data_version: str) -> DataProfile:
        return DataProfile(**{**asdict(self), "data_version": data_version})


Source = ImageArrays | ShardedSplit | NpzImages


def _batches(sources: Iterable[Source]) -> Iterable[ImageArrays]:
    for source in sources:
        if isinstance(source, ShardedSplit):
            yield from source.shards()
        elif isinstance(source, NpzImages):
            start = 0
            for images in source.chunks():
                yield ImageArrays(images, source.labels[start:start + len(images)])
                start += len(images)
        else:
            yield source


def profile_of(sources: Iterable[Source]) -> DataProfile:
    """One pass, one shard in memory at a time; sums in float64, so the order of shards does not matter."""
    count, shape = 0, None
    sums = squares = None
    gradient_sum, gradient_count = 0.0, 0
    labels: dict[int, int] = {}
    for batch in _batches(sources):
        if not len(batch):
            continue
        pixels = batch.images.astype(np.float64) / 255.0
        shape = pixels.shape[1:]
        sums = pixels.sum(axis=(0, 1, 2)) + (0 if sums is None else sums)  # per channel
        squares = np.square(pixels).sum(axis=(0, 1, 2)) + (0 if squares is None else squares)
        across, down = np.abs(np.diff(pixels, axis=2)), np.abs(np.diff(pixels, axis=1))
        gradient_sum += float(across.sum() + down.sum())
        gradient_count += across.size + down.size
        count += len(batch)
        for label, n in zip(*np.unique(batch.labels, return_counts=True)):
            labels[int(label)] = labels.get(int(label), 0) + int(n)
    if shape is None:
        raise ValueError("cannot profile an empty dataset")
    values = count * shape[0] * shape[1]
    mean = sums / values
    std = np.sqrt(np.maximum(squares / values - np.square(mean), 0.0))
    return DataProfile(images=count, image_size=int(shape[0]), channels=int(shape[2]),
                       channel_mean=tuple(round(float(v), 6) for v in mean),
                       channel_std=tuple(round(float(v), 6) for v in std),
                       sharpness=round(gradient_sum / max(gradient_count, 1), 6),
                       class_fractions={str(label): round(n / count, 6) for label, n in sorted(labels.items())})


def profile_frame(profile: DataProfile, reference: DataProfile) -> pd.DataFrame:
    """One row: every statistic a column, named as the report names the drift; a class of the accepted data
    that the new data lacks has the share 0."""
    import pandas as pd

    row: dict[str, Any] = {"image_size": profile.image_size, "channels": profile.channels,
                           "sharpness": profile.sharpness}
    for channel, (mean, std) in enumerate(zip(profile.channel_mean, profile.channel_std)):
        row[f"channel_{channel}_mean"], row[f"channel_{channel}_std"] = mean, std
    for label in reference.class_fractions:
        row[f"class_{label}_fraction"] = profile.class_fractions.get(label, 0.0)
    return pd.DataFrame([row])


def class_frame(profile: DataProfile) -> pd.DataFrame:
    """One row per class of the new data and its share: a class the accepted data did not have is a row."""
    import pandas as pd

    labels = sorted(profile.class_fractions, key=int)
    return pd.DataFrame({"label": [int(label) for label in labels],
                         "fraction": [profile.class_fractions[label] for label in labels]})


def drift_expectations(reference: DataProfile, tolerances: DriftParams) -> dict[str, list]:
    """The accepted profile, widened by the tolerances, as expectations on `profile_frame` and `class_frame`.
    Every one reports an observed value or the unexpected rows (GE's Data Docs cannot render a failed set
    comparison such as ExpectColumnDistinctValuesToEqualSet), and an accepted class that vanished fails however
    small its share was (strict lower bound)."""
    import great_expectations as gx

    e = gx.expectations
    profile = [e.ExpectColumnValuesToBeInSet(column="image_size", value_set=[reference.image_size]),
               e.ExpectColumnValuesToBeInSet(column="channels", value_set=[reference.channels]),
               e.ExpectColumnMeanToBeBetween(column="sharpness",
                                             min_value=round(reference.sharpness * (1 - tolerances.sharpness), 6),
                                             max_value=round(reference.sharpness * (1 + tolerances.sharpness), 6))]
    for channel, (mean, std) in enumerate(zip(reference.channel_mean, reference.channel_std)):
        profile += [e.ExpectColumnMeanToBeBetween(column=f"channel_{channel}_mean",
                                                  min_value=round(mean - tolerances.channel_mean, 6),
                                                  max_value=round(mean + tolerances.channel_mean, 6)),
                    e.ExpectColumnMeanToBeBetween(column=f"channel_{channel}_std",
                                                  min_value=round(std - tolerances.channel_std, 6),
                                                  max_value=round(std + tolerances.channel_std, 6))]
    for label, share in reference.class_fractions.items():
        profile.append(e.ExpectColumnMeanToBeBetween(column=f"class_{label}_fraction",
                                                     min_value=round(max(share - tolerances.class_fraction, 0.0), 6),
                                                     max_value=round(share + tolerances.class_fraction, 6),
                                                     strict_min=True))
    classes = [e.ExpectColumnValuesToBeInSet(column="label",
                                             value_set=sorted(int(label) for label in reference.class_fractions))]
    return {PROFILE_TABLE: profile, CLASS_TABLE: classes}
