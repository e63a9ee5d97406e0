"""The data last accepted for a registered model, kept on the registered model itself (two tags), where every way
of running reads it: `dvc repro`, the flows, the stack's server. A registration accepts the data its version was
trained on; `genp data accept` accepts an intended change (another camera, a new class) before retraining."""

from __future__ import annotations

import mlflow

from gen_platform.validation.drift import DataProfile

PROFILE_TAG = "data.accepted_profile"
ACCEPTED_BY_TAG = "data.accepted_by"


def accepted_profile(client: mlflow.MlflowClient, name: str) -> tuple[DataProfile, str] | None:
    """The accepted profile of `name` and who accepted it; None before the model's first registration."""
    try:
        tags = client.get_registered_model(name).tags
    except mlflow.exceptions.MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if PROFILE_TAG not in tags:
        return None
    return DataProfile.from_json(tags[PROFILE_TAG]), tags.get(ACCEPTED_BY_TAG, "")


def accept(client: mlflow.MlflowClient, name: str, profile: DataProfile, accepted_by: str) -> None:
    """Record `profile` as the data `name` is compared with from now on (the registered model is created when it
    does not exist yet, so data can be accepted before a first training)."""
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    client.set_registered_model_tag(name, PROFILE_TAG, profile.to_json())
    client.set_registered_model_tag(name, ACCEPTED_BY_TAG, accepted_by)
