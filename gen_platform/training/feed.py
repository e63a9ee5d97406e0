"""The data path from a worker's shard reader to its device.

A background thread reads ahead (disk reads and, on a GPU host, pinning overlap the training steps); batches
cross to the device as uint8, a quarter of the bytes of float32, from pinned memory so the copy runs
asynchronously; the conversion to floats in [0, 1], N×C×H×W, happens on the device.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

PREFETCH_BATCHES = 2
_DONE = object()


def _read_ahead(batches: Iterator[np.ndarray], pin: bool, depth: int) -> Iterator[torch.Tensor]:
    """The host side: uint8 tensors (pinned when `pin`) produced by a thread up to `depth` batches ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                tensor = torch.from_numpy(np.ascontiguousarray(batch))
                item = tensor.pin_memory() if pin else tensor
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_DONE)
        except BaseException as error:  # noqa: BLE001  re-raised in the consuming thread
            ready.put(error)

    thread = threading.Thread(target=produce, name="genp-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer stopped early (an error in a step): let the reader end
        thread.join(timeout=5)


def on_device(host: torch.Tensor | np.ndarray, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [0, 1] on `device`, converted there."""
    host = torch.from_numpy(np.ascontiguousarray(host)) if isinstance(host, np.ndarray) else host
    images = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def device_batches(batches: Iterator[np.ndarray], device: torch.device, channels_last: bool = False,
                   depth: int = PREFETCH_BATCHES) -> Iterator[torch.Tensor]:
    """uint8 N×H×W×C batches → float N×C×H×W in [0, 1] on `device`, read ahead."""
    for host in _read_ahead(batches, pin=device.type == "cuda", depth=depth):
        yield on_device(host, device, channels_last)
