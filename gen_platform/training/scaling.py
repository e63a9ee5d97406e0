"""Train V2's fixed scaling policy for a runtime without an autoscaler (see `trainer.py`).

The Train controller unpickles the policy, so this module imports no more than the policy needs (not torch).
"""

from __future__ import annotations

from typing import Any

from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy


class FixedScalingWithoutAutoscaler(FixedScalingPolicy):
    """The fixed worker count, without the resource requests that only a cluster's autoscaler reads."""

    def after_controller_start(self, train_run_context: Any) -> None:
        pass

    def _maybe_send_resource_request(self) -> None:
        pass

    async def before_controller_shutdown(self) -> None:
        pass

    def before_controller_abort(self) -> None:
        pass
