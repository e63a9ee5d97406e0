"""Batch norm synchronised across data-parallel workers, on any device.

With per-worker batch norm a training's result depends on how many workers share the global batch: each worker
normalises its own slice (64 images on one worker are normalised as one batch, on two as two batches of 32).
torch's SyncBatchNorm fixes that on GPUs only (it refuses CPU tensors), and this platform trains DDP on CPUs
too, so the statistics are summed here with one differentiable all-reduce per layer and step: the same
mean and variance as one batch norm over the global batch, whatever the device or the worker count.
"""

from __future__ import annotations

import torch
from torch import nn

from gen_platform.training.collectives import all_reduce_sum_differentiable, in_process_group


class CrossWorkerBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics cover every worker's batch (same parameters and buffers, so its
    state dict loads into a plain BatchNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and in_process_group()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        stats = all_reduce_sum_differentiable(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]),
                                              "synchronised batch norm")
        total = stats[-1]
        mean = stats[:channels] / total
        variance = (stats[channels:2 * channels] / total - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = variance * total / (total - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        shape = (1, channels, 1, 1)
        normalised = (x - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        return normalised * self.weight.view(shape) + self.bias.view(shape) if self.affine else normalised


def synchronise_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `module` by a CrossWorkerBatchNorm2d holding the same parameters and buffers."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synchronised = CrossWorkerBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                                  child.track_running_stats, device=child.weight.device
                                                  if child.affine else None)
            synchronised.load_state_dict(child.state_dict())
            if child.affine:  # the same Parameter objects: optimizers built before or after see the same tensors
                synchronised.weight, synchronised.bias = child.weight, child.bias
            setattr(module, name, synchronised)
        else:
            synchronise_batch_norm(child)
    return module
