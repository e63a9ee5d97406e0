"""The drift gate: constructed data versions against the profile of the accepted digits."""

import numpy as np
import pytest

from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import write_shards
from gen_platform.data.splits import split_dataset
from gen_platform.settings import DataParams, DriftParams, ValidationParams
from gen_platform.validation.drift import DataProfile, profile_of
from gen_platform.validation.suite import validate_splits
from tests.data_changes import removed_class, resized_source, shifted_colour


def _check(arrays: ImageArrays, accepted: DataProfile, num_classes: int = 10, **drift):
    return validate_splits(split_dataset(arrays, 0, 0.1, 0.1), DataParams(num_classes=num_classes),
                           ValidationParams(drift=DriftParams(**drift)), accepted=(accepted, "a test"))


def _drift_failures(report) -> set[str]:
    return {f"{o.table}:{o.kwargs.get('column', '')}" for o in report.failures}


def test_a_profile_streamed_shard_by_shard_equals_the_whole(digits, tmp_path):
    split = write_shards(tmp_path / "train", digits, rows_per_shard=500)
    streamed, whole = profile_of([split]), profile_of([digits])
    assert len(split.files) > 3 and streamed.images == whole.images == len(digits)
    assert streamed.channel_mean == pytest.approx(whole.channel_mean, abs=1e-6)
    assert streamed.channel_std == pytest.approx(whole.channel_std, abs=1e-6)
    assert streamed.sharpness == pytest.approx(whole.sharpness, abs=1e-6)
    assert streamed.class_fractions == whole.class_fractions and len(whole.class_fractions) == 10
    assert DataProfile.from_json(whole.with_version("abc").to_json()) == whole.with_version("abc")


def test_the_accepted_data_itself_passes_and_says_what_it_was_compared_with(digits):
    report = _check(digits, profile_of([digits]).with_version("v1"))
    assert report.success, report.summary()
    assert {o.table for o in report.outcomes} == {"images", "classes", "drift", "drift_classes"}
    assert report.drift == "compared with data version v1 (a test)"


@pytest.mark.parametrize(("change", "named"), [
    (shifted_colour, {"drift:channel_0_mean"}),
    (removed_class, {"drift:class_3_fraction"}),
    (resized_source, {"drift:sharpness"}),
])
def test_each_drift_fails_validation_named(digits, change, named):
    report = _check(change(digits), profile_of([digits]).with_version("v1"))
    assert not report.success
    assert named <= _drift_failures(report), report.summary()
    assert not {f for f in _drift_failures(report) if f.startswith(("images:", "classes:"))}  # each image is valid
    for failure in named:
        assert failure.split(":")[1] in report.summary()


def test_a_new_class_and_a_moved_class_share_are_drift(digits):
    accepted = profile_of([digits]).with_version("v1")
    labels = digits.labels.copy()
    labels[labels == 0] = 1  # class 0 vanishes into class 1, whose share doubles
    assert _drift_failures(_check(ImageArrays(digits.images, labels), accepted)) == {"drift:class_0_fraction",
                                                                                    "drift:class_1_fraction"}
    nine = digits.labels == 9
    labels = np.where(nine & (np.arange(len(digits)) % 2 == 0), 10, digits.labels)  # half the nines: a new class
    report = _check(ImageArrays(digits.images, labels), accepted, num_classes=11, class_fraction=0.2)
    assert _drift_failures(report) == {"drift_classes:label"} and "e.g. [10]" in report.summary()


def test_tolerances_decide(digits):
    """The same shift passes once validation.drift allows it, and the gate can be switched off."""
    accepted = profile_of([digits]).with_version("v1")
    assert _check(shifted_colour(digits), accepted, channel_mean=0.3, channel_std=0.3).success
    off = _check(shifted_colour(digits), accepted, enabled=False)
    assert off.success and off.drift.startswith("off") and {o.table for o in off.outcomes} == {"images", "classes"}


def test_no_accepted_data_yet_means_no_drift_check(digits):
    report = validate_splits(split_dataset(digits, 0, 0.1, 0.1), DataParams(), ValidationParams())
    assert report.success and report.drift.startswith("not checked: no data accepted")


def test_a_registration_takes_the_profile_validation_recorded_and_refuses_a_verdict_without_one(digits, tmp_path):
    from gen_platform import stages
    from gen_platform.errors import ValidationFailed
    from gen_platform.workspace import Workspace

    report = validate_splits(split_dataset(digits, 0, 0.1, 0.1), DataParams(), ValidationParams())
    assert DataProfile.from_dict(report.to_dict()["profile"]) == profile_of([digits])
    ws = Workspace.at(tmp_path)
    with pytest.raises(ValidationFailed, match=r"validation\.json has no data profile .*run `genp validate` again"):
        stages._validated_profile(ws, {"success": True, "expectations": []})
