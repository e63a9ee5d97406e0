"""What a Ray cluster can give a training or a search: now, or once its autoscaler has added nodes.

On an autoscaling cluster (infra/kuberay: a head with no CPUs, worker groups that start at zero replicas) the
resources present at start say nothing about what the cluster can provide. A training asks for its workers'
bundles with a placement group, which is what makes the autoscaler add nodes, and waits for them for at most
`train.resource_timeout_s`; a request that no node type can ever hold fails at once where the autoscaler reports
its node types (autoscaler v2; v1, KubeRay's default and the manifests', does not), else when the wait ends.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from gen_platform.errors import GenPlatformError

Bundle = dict[str, float]
BOOKKEEPING = ("memory", "object_store_memory", "node:", "accelerator_type:")  # resources no training asks for


class ResourcesUnavailable(GenPlatformError):
    """The cluster did not provide, or can never provide, the resources a training asked for."""


@dataclass(frozen=True)
class ClusterCapacity:
    """`node_shapes`: the resources of each live node and of each node type the autoscaler may add;
    `node_types_known`: whether the autoscaler reported its node types (otherwise only live nodes are known);
    `maxima`: the most of each resource the whole cluster can hold (live, or per the autoscaler's limits)."""
    node_shapes: tuple[Bundle, ...]
    node_types_known: bool
    maxima: Bundle

    def holds(self, bundle: Bundle) -> bool:
        """Whether one node (live or addable) has room for `bundle`."""
        return any(all(shape.get(name, 0) >= amount for name, amount in bundle.items() if amount)
                   for shape in self.node_shapes)


def cluster_capacity() -> ClusterCapacity:
    import ray
    from ray._private.state import state

    live = [_schedulable(node["Resources"]) for node in ray.nodes() if node["Alive"]]
    maxima = _schedulable(ray.cluster_resources())
    config = state.get_cluster_config()
    groups = [group for group in (config.node_group_configs if config else []) if group.max_count != 0]
    for group in groups:
        for name, amount in group.resources.items():
            count = group.max_count if group.max_count > 0 else sys.maxsize
            maxima[name] = max(maxima.get(name, 0), amount * count)
    shapes = tuple(live + [_schedulable(group.resources) for group in groups])
    return ClusterCapacity(shapes, bool(groups), maxima)


def _schedulable(resources) -> Bundle:
    return {name: float(amount) for name, amount in resources.items() if not name.startswith(BOOKKEEPING)}


def worker_bundles(num_workers: int, cpus_per_worker: float, use_gpu: bool) -> list[Bundle]:
    return [{"CPU": cpus_per_worker, **({"GPU": 1.0} if use_gpu else {})} for _ in range(num_workers)]


def _describe(bundles: list[Bundle]) -> str:
    shapes: dict[str, int] = {}
    for bundle in bundles:
        text = "{" + ", ".join(f"{name}: {amount:g}" for name, amount in bundle.items()) + "}"
        shapes[text] = shapes.get(text, 0) + 1
    return " + ".join(f"{count} × {text}" for text, count in shapes.items())


def await_resources(bundles: list[Bundle], timeout_s: float, purpose: str) -> None:
    """Block until the cluster can place `bundles` together (asking its autoscaler for nodes), at most
    `timeout_s` seconds; ResourcesUnavailable names what is missing otherwise. The placement group is released
    before returning: the training's own takes the resources (and the nodes stay up for the autoscaler's idle
    timeout, minutes)."""
    from ray.util.placement_group import placement_group, remove_placement_group

    capacity = cluster_capacity()
    never = [bundle for bundle in bundles if not capacity.holds(bundle)]
    if never and capacity.node_types_known:
        raise ResourcesUnavailable(
            f"{purpose} needs {_describe(never)} on one node each, but no node of this Ray cluster and none of the "
            f"node types its autoscaler may add has that much (node shapes: {_describe(list(capacity.node_shapes))}); "
            "ask for less per worker or add a node type")
    group = placement_group(bundles, strategy="PACK")
    try:
        if group.wait(timeout_seconds=1):
            return
        print(f"waiting up to {timeout_s:.0f} s for the Ray cluster to provide {_describe(bundles)} for {purpose} "
              "(the autoscaler adds nodes)", flush=True)
        if group.wait(timeout_seconds=max(timeout_s - 1, 0)):
            return
    finally:
        remove_placement_group(group)
    import ray

    available = {name: amount for name, amount in ray.available_resources().items() if name in {"CPU", "GPU"}}
    raise ResourcesUnavailable(
        f"{purpose} needs {_describe(bundles)}, and after {timeout_s:.0f} s (train.resource_timeout_s) the Ray "
        f"cluster had not provided them: it has {available or 'no CPU or GPU'} free now. Check the autoscaler's "
        "node types and limits (`ray status`), or raise train.resource_timeout_s")
