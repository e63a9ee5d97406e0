"""Ray Train's TorchTrainer without the helper actors that a fit of this platform does not use.

Every Train V2 fit starts helper actors beside its workers. Each one is a Python process that imports Ray Train
(pandas, pyarrow, Ray Data: about 1.3 s of CPU) while the workers start and train. Three of them are not needed:
- The DatasetManager serves Ray Datasets to the workers. The platform passes none (workers stream the splits'
  shard directories themselves), yet the actor is started for every fit. It is never started here.
- Ray Data's autoscaling coordinator takes the fit's resource requests for a cluster's autoscaler. The controller
  waits for it to start before it starts the workers, and asks it again while they train. A runtime started
  on this machine has no autoscaler.
- The PlacementGroupCleaner releases the workers' CPUs if the controller dies without cleaning up. It polls the
  state API through the dashboard every second, and the controller waits for it when the workers start and
  again when the fit ends (up to a second, its polling period). A local runtime that the fit's own process
  started ends with that process, and every placement group ends with it.
The last two are kept for a fit on a cluster and for a Tune trial, because there the runtime outlives a lost
driver or a stopped trial.
"""

from __future__ import annotations

import os
from typing import Any

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from gen_platform.errors import ConfigError
from gen_platform.training.scaling import FixedScalingWithoutAutoscaler

# Ray Train picks its API version when it is imported: V2 unless RAY_TRAIN_V2_ENABLED turns it off.
if not issubclass(TorchTrainer, DataParallelTrainer):
    raise ConfigError(f"gen_platform runs on Ray Train V2, which RAY_TRAIN_V2_ENABLED="
                      f"{os.environ.get('RAY_TRAIN_V2_ENABLED')!r} turns off: unset it")


class PlatformTorchTrainer(TorchTrainer):
    def __init__(self, *args: Any, local_runtime: bool = False, **kwargs: Any):
        """`local_runtime`: the fit's process started the Ray runtime, which ends with it (see the module doc)."""
        super().__init__(*args, **kwargs)
        self.local_runtime = local_runtime

    def _create_default_callbacks(self) -> list:
        unused = (() if self.datasets else (DatasetsCallback,)) + (
            (PlacementGroupCleanerCallback,) if self.local_runtime else ())
        return [callback for callback in super()._create_default_callbacks() if not isinstance(callback, unused)]

    def _initialize_and_run_controller(self, **controller_init_kwargs: Any) -> Any:
        if self.local_runtime and type(controller_init_kwargs["scaling_policy"]) is FixedScalingPolicy:
            controller_init_kwargs["scaling_policy"] = FixedScalingWithoutAutoscaler(self.scaling_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)
