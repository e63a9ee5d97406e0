"""Switchable speed-ups applied when a network is prepared for training: channels_last memory format,
torch.compile and bf16 autocast. Each is off by default and tested for the same loss on CPU."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._pytree import tree_map


class Autocast(nn.Module):
    """Runs the wrapped module's forward under bfloat16 autocast; floating outputs come back as float32 so
    losses and metrics are computed at full precision."""

    def __init__(self, module: nn.Module, device_type: str):
        super().__init__()
        self.module, self.device_type = module, device_type

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            outputs = self.module(*args, **kwargs)
        return tree_map(lambda t: t.float() if torch.is_tensor(t) and t.is_floating_point() else t, outputs)

    def no_sync(self) -> contextlib.AbstractContextManager:
        return getattr(self.module, "no_sync", contextlib.nullcontext)()


def accelerated(wrap: Callable[[nn.Module], nn.Module], device: torch.device, precision: str = "fp32",
                channels_last: bool = False, compile: bool = False) -> Callable[[nn.Module], nn.Module]:
    """Compose `wrap` (e.g. Ray's prepare_model: device + DDP) with the enabled switches."""

    def prepare(module: nn.Module) -> nn.Module:
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        prepared = wrap(module)
        if compile:
            prepared = torch.compile(prepared)
        if precision == "bf16":
            prepared = Autocast(prepared, device.type)
        return prepared

    return prepare
