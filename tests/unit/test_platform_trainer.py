"""Which of Ray Train's helper callbacks a fit keeps (trainer.py): the DatasetManager's never (the platform passes
no Ray Datasets), the PlacementGroupCleaner's only where the runtime can outlive the fit's process."""

from __future__ import annotations

import pytest
import ray.train

from gen_platform.training.trainer import PlatformTorchTrainer


def callback_names(**options) -> set[str]:
    trainer = PlatformTorchTrainer(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1), **options)
    return {type(callback).__name__ for callback in trainer._create_default_callbacks()}


@pytest.mark.parametrize("local_runtime", [False, True])
def test_the_workers_get_their_backend_and_no_dataset_manager(local_runtime):
    names = callback_names(local_runtime=local_runtime)
    assert {"BackendSetupCallback", "AcceleratorSetupCallback", "UserCallbackHandler"} <= names
    assert "DatasetsCallback" not in names


def test_the_placement_group_cleaner_is_kept_unless_the_runtime_ends_with_the_fit():
    assert "PlacementGroupCleanerCallback" in callback_names()  # a Tune trial, a cluster
    assert "PlacementGroupCleanerCallback" not in callback_names(local_runtime=True)


def test_a_fit_given_ray_datasets_keeps_their_manager():
    # a dataset factory (Ray calls it when the workers start): a real Dataset would start a Ray runtime here
    assert "DatasetsCallback" in callback_names(datasets={"train": lambda: None}, local_runtime=True)
