"""Put on PYTHONPATH, this makes a process (and the Ray workers it starts, which inherit the variable) import as on a
Ray node of the worker image (infra/docker/worker.Dockerfile), which holds no package of the `pipeline` extra."""

import sys

NOT_IN_THE_WORKER_IMAGE = ("dvc", "great_expectations", "prefect", "mlflow.server")


class _WorkerImageImports:
    def find_spec(self, name, path=None, target=None):
        if any(name == blocked or name.startswith(blocked + ".") for blocked in NOT_IN_THE_WORKER_IMAGE):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the worker image)", name=name)
        return None


sys.meta_path.insert(0, _WorkerImageImports())
