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
