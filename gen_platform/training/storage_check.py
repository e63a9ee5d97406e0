"""Before a multi-node training: is the checkpoint storage one place for every node?

Ray Train's workers write checkpoints to the storage path and the driver reads them back. A path that is only
local on some node (a node's own disk, a volume one node group lacks) fails late and obscurely: after an epoch,
or only when the driver restores. So every node writes a marker there and reads the driver's, the driver reads
every node's, and the training does not start while a node and the driver disagree about what is there.
"""

from __future__ import annotations

import uuid

from gen_platform.errors import GenPlatformError

MARKERS = ".genp-storage-check"


def _filesystem(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path)


def _write(path: str, name: str, text: str) -> None:
    filesystem, root = _filesystem(path)
    filesystem.create_dir(f"{root}/{MARKERS}", recursive=True)
    with filesystem.open_output_stream(f"{root}/{MARKERS}/{name}") as stream:
        stream.write(text.encode())


def _read(path: str, name: str) -> str | None:
    import pyarrow.fs

    filesystem, root = _filesystem(path)
    location = f"{root}/{MARKERS}/{name}"
    if filesystem.get_file_info(location).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(location) as stream:
        return stream.read().decode()


def _remove(path: str, names: list[str]) -> None:
    """This check's own markers only: other runs may be checking the same storage at the same time."""
    import pyarrow.fs

    filesystem, root = _filesystem(path)
    for name in names:
        if filesystem.get_file_info(f"{root}/{MARKERS}/{name}").type == pyarrow.fs.FileType.File:
            filesystem.delete_file(f"{root}/{MARKERS}/{name}")


def _node_side(path: str, node_marker: str, driver_marker: str, token: str) -> bool:
    """On one node: leave this node's marker, and say whether the driver's is visible."""
    _write(path, node_marker, token)
    return _read(path, driver_marker) == token


def check_shared_storage(path: str) -> int:
    """Raise GenPlatformError naming each node that does not share `path` with this driver; the number of nodes
    checked otherwise. Markers are removed afterwards."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    token = uuid.uuid4().hex
    driver_marker = f"{token}-driver"
    _write(path, driver_marker, token)
    task = ray.remote(num_cpus=0, max_retries=0)(_node_side)
    pending = {node_id: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(
        path, f"{token}-{node_id}", driver_marker, token) for node_id in nodes}
    problems = []
    for node_id, reference in pending.items():
        where = f"node {nodes[node_id]} ({node_id[:12]})"
        try:
            sees_driver = ray.get(reference, timeout=120)
        except Exception as error:  # the node could not even write there
            problems.append(f"{where} cannot write there: {error}")
            continue
        if not sees_driver:
            problems.append(f"{where} does not see what the driver wrote")
        elif _read(path, f"{token}-{node_id}") != token:
            problems.append(f"the driver does not see what {where} wrote")
    _remove(path, [driver_marker, *(f"{token}-{node_id}" for node_id in nodes)])
    if problems:
        raise GenPlatformError(
            f"checkpoint storage {path} is not shared by every node of the Ray cluster: {'; '.join(problems)}. "
            "Set GENP_STORAGE_PATH (or train.storage_path) to storage every node and the driver mount at the same "
            "path, or to s3://...")
    return len(nodes)
