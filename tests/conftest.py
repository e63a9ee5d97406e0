import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (genp, dvc) must come from the same environment as the tests.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
# The suite runs two processes on two cores, and each torch process (test, stage, Ray worker) has an OpenMP pool
# sized for the whole machine. By default an idle OpenMP thread spins before it sleeps, which on an
# oversubscribed machine takes the core from the other process's working threads: a test of 15 s alone took 41 s
# beside a busy torch process, and 25 s with passive waits. Set before any process here loads torch; every
# subprocess (genp, dvc, Ray's daemons and workers) inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gen_platform.startup import configure_process  # noqa: E402

configure_process()  # as every entry point does (the CLI, the flows), before any test imports Ray

from gen_platform.data.arrays import ImageArrays  # noqa: E402  (it loads torch)


# `make test` runs the suite in two processes (pytest-xdist, `--dist loadfile`, see pyproject.toml): on two cores
# a pipeline run leaves much of the CPU idle (process start-up, Ray's scheduling, waits on servers). Each module
# goes to one process as a whole (its fixtures build a workspace or a whole stack once, and its tests run in
# order); the slowest start first, so that no process is left alone with a long module at the end.
SLOWEST_FIRST = ("test_stack.py", "test_pipeline.py", "test_tune.py", "test_presets.py", "test_fault_tolerance.py",
                 "test_flow.py", "test_bench_quick.py", "test_ray_jobs.py", "test_object_storage.py",
                 "test_autoscaling.py", "test_family_contract.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its order
    # Tests marked `gpu` need CUDA; where there is none they are deselected (listed as such), never skipped as if
    # they had run: `python -m bench.gpu` runs them on a GPU machine and records their outcome.
    import torch

    if not torch.cuda.is_available():
        deselected = [item for item in items if item.get_closest_marker("gpu")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("gpu")]


@pytest.fixture(scope="session")
def digits() -> ImageArrays:
    from gen_platform.data.sources import digits as load

    return load()


def tiny_dataset(n: int = 200, size: int = 8, classes: int = 10, seed: int = 0) -> ImageArrays:
    """Random distinct uint8 images with balanced labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)
    return ImageArrays(images, np.arange(n, dtype=np.int64) % classes)


def pytest_sessionfinish(session, exitstatus):
    """Stop the temporary Prefect server that in-process flow runs started, quietly, before pytest exits.

    Left to Prefect, it stops at interpreter exit and logs 'Stopping temporary server' to a stream pytest
    has closed (a 'Logging error' traceback), and queued flow-run logs then fail to reach it.
    """
    server = sys.modules.get("prefect.server.api.server")
    if server is not None:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # the flow runs' last log lines, while their server still listens
        server.subprocess_server_logger.setLevel(logging.WARNING)
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()
