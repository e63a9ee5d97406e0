"""What a cluster can provide: live nodes plus the node types an autoscaler reports, and a request that none of
them can hold refused before any waiting."""

from __future__ import annotations

import time

import pytest

from gen_platform.training import capacity
from gen_platform.training.capacity import ClusterCapacity, ResourcesUnavailable, await_resources, worker_bundles

# a head without CPUs, and a GPU node type the autoscaler may add (8 CPUs, 1 GPU, up to 4 nodes)
AUTOSCALING = ClusterCapacity(node_shapes=({"CPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}), node_types_known=True,
                              maxima={"CPU": 32.0, "GPU": 4.0})


def test_a_bundle_fits_when_one_node_shape_holds_all_of_it():
    assert AUTOSCALING.holds({"CPU": 8.0, "GPU": 1.0})
    assert not AUTOSCALING.holds({"CPU": 9.0})  # 32 CPUs in all, but no node has 9
    assert not AUTOSCALING.holds({"CPU": 1.0, "GPU": 2.0})
    assert AUTOSCALING.holds({"CPU": 2.0, "GPU": 0.0})  # a zero amount asks for nothing


def test_worker_bundles_ask_one_gpu_per_worker_only_when_training_on_gpus():
    assert worker_bundles(2, 4.0, use_gpu=True) == [{"CPU": 4.0, "GPU": 1.0}] * 2
    assert worker_bundles(1, 0.5, use_gpu=False) == [{"CPU": 0.5}]


def test_a_request_no_node_type_holds_fails_at_once_naming_it(monkeypatch):
    monkeypatch.setattr(capacity, "cluster_capacity", lambda: AUTOSCALING)
    start = time.monotonic()
    with pytest.raises(ResourcesUnavailable) as error:
        await_resources(worker_bundles(2, 16.0, use_gpu=True), timeout_s=600, purpose="the training")
    assert time.monotonic() - start < 5  # not after the 600 s wait: no node type can ever hold it
    assert "the training needs 2 × {CPU: 16, GPU: 1}" in str(error.value)
    assert "{CPU: 8, GPU: 1}" in str(error.value)  # what the node types offer
