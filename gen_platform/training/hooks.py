"""Per-epoch hooks of the training loop: a way for callers (tests, benchmarks, tooling) to observe or disturb
each worker without the loop knowing about them. Hooks travel to the workers, so they must be picklable."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class WorkerState:
    rank: int
    world_size: int
    epoch: int  # 0-based epoch about to run (start) or just finished (end)
    epochs: int  # how many epochs the training runs in all
    resumed: bool  # this worker process started from a checkpoint (after a failure or a driver restart)


class EpochHook:
    """Override either method; both do nothing by default."""

    def on_epoch_start(self, state: WorkerState) -> None:
        pass

    def on_epoch_end(self, state: WorkerState, model: nn.Module) -> None:
        pass

    def on_epoch_reported(self, state: WorkerState, record: dict[str, float]) -> None:
        """After the epoch's metrics (and, from rank 0, its checkpoint) were reported to Ray."""
