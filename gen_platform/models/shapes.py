"""How deep a convolutional stack is for a given image size (shared by every family)."""

from __future__ import annotations

from gen_platform.errors import ConfigError

SUPPORTED = "an even size ≥ 8 whose halvings end at 4–7 pixels (e.g. 8, 28, 32, 64)"


def downsampling_steps(image_size: int) -> int:
    """Halve the image while it stays even and above 4 pixels: 8→4, 28→14→7, 32→…→4, 64→…→4."""
    steps, size = 0, image_size
    while size % 2 == 0 and size > 4:
        size //= 2
        steps += 1
    if steps == 0 or image_size < 8:
        raise ConfigError(f"data.image_size: {image_size} cannot be served; use {SUPPORTED}")
    return steps


def channel_widths(image_size: int, hidden_channels: int) -> list[int]:
    """Feature maps per stride-2 stage, doubling with depth."""
    return [hidden_channels * 2**i for i in range(downsampling_steps(image_size))]
