"""Image grids for MLflow and the CLI."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def image_grid(images: torch.Tensor, columns: int | None = None, min_tile: int = 48) -> Image.Image:
    """N×C×H×W floats in [0, 1] → one PIL image; small images are upscaled (nearest) to stay legible."""
    n, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pad = 1
    canvas = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), dtype=np.float32)
    pixels = images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    for index in range(n):
        top, left = pad + (index // columns) * (height + pad), pad + (index % columns) * (width + pad)
        canvas[top:top + height, left:left + width] = pixels[index]
    picture = Image.fromarray((canvas * 255).round().astype(np.uint8).squeeze(-1) if channels == 1
                              else (canvas * 255).round().astype(np.uint8))
    scale = max(1, math.ceil(min_tile / height))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def epoch_progress_grid(snapshots: list[torch.Tensor], columns: int = 8, max_rows: int = 10) -> Image.Image:
    """One row per epoch (evenly subsampled to `max_rows`), the same fixed noise in every row."""
    picks = sorted({round(i * (len(snapshots) - 1) / max(max_rows - 1, 1)) for i in range(min(max_rows, len(snapshots)))})
    rows = [snapshots[i][:columns].float() / 255 for i in picks]
    return image_grid(torch.cat(rows), columns=columns)


@torch.no_grad()
def interpolation_grid(model: torch.nn.Module, images: torch.Tensor, steps: int = 8) -> Image.Image:
    """VAE: decode straight lines between the latent means of consecutive image pairs (one row per pair)."""
    means = model.encode(images)[0]
    weights = torch.linspace(0, 1, steps).view(1, steps, 1)
    starts, ends = means[0::2].unsqueeze(1), means[1::2].unsqueeze(1)
    path = (starts * (1 - weights) + ends * weights).flatten(0, 1)
    return image_grid(torch.sigmoid(model.decode(path)), columns=steps)
