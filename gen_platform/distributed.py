"""Collectives that also work in a single process, so the same training and scoring code runs with and
without data parallelism."""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce(totals: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel workers; a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return totals
