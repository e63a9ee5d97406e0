"""Switchable speed-ups applied when a network is prepared for training: channels_last memory format,
torch.compile and mixed precision (bf16, or fp16 with a gradient scaler). Each is tested for the same loss on
CPU; `precision: auto` picks what the device does best."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._pytree import tree_map

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on GPUs with bfloat16 units (Ampere and later), fp16 with a gradient scaler on older ones
    (T4, V100), fp32 on the CPU (bf16 there is a switch to set: it pays only on CPUs with AVX512-BF16 or AMX)."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


class Autocast(nn.Module):
    """Runs the wrapped module's forward under autocast to `dtype`; floating outputs come back as float32 so
    losses and metrics are computed at full precision."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            outputs = self.module(*args, **kwargs)
        return tree_map(lambda t: t.float() if torch.is_tensor(t) and t.is_floating_point() else t, outputs)

    def no_sync(self) -> contextlib.AbstractContextManager:
        return getattr(self.module, "no_sync", contextlib.nullcontext)()


def accelerated(wrap: Callable[[nn.Module], nn.Module], device: torch.device, precision: str = "fp32",
                channels_last: bool = False, compile: bool = False) -> Callable[[nn.Module], nn.Module]:
    """Compose `wrap` (e.g. Ray's prepare_model: device + DDP) with the enabled switches; `precision` resolved."""

    def prepare(module: nn.Module) -> nn.Module:
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        prepared = wrap(module)
        if compile:
            prepared = torch.compile(prepared)
        if precision in DTYPES:
            prepared = Autocast(prepared, device.type, DTYPES[precision])
        return prepared

    return prepare


class Update:
    """How a family's train step applies a loss to an optimizer: zero the gradients, backward, step. Under fp16
    each optimizer has its gradient scaler (fp16 gradients underflow without one); bf16 and fp32 need none. A
    resumed training starts its scalers afresh: they find their scale again within a few steps."""

    def __init__(self, precision: str, device: torch.device):
        self.scaled, self.device_type = precision == "fp16", device.type
        self.scalers: dict[int, torch.amp.GradScaler] = {}

    def __call__(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if not self.scaled:
            loss.backward()
            optimizer.step()
            return
        scaler = self.scalers.setdefault(id(optimizer), torch.amp.GradScaler(self.device_type))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
