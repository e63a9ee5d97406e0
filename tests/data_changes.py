"""Constructed new versions of a dataset whose every image is valid on its own but which, as a whole, is not the
data a model was trained on: what the drift gate exists to stop."""

import numpy as np

from gen_platform.data.arrays import ImageArrays


def shifted_colour(data: ImageArrays) -> ImageArrays:
    """Another camera: every pixel brighter."""
    return ImageArrays(np.clip(data.images.astype(np.int16) + 40, 0, 255).astype(np.uint8), data.labels)


def removed_class(data: ImageArrays) -> ImageArrays:
    """Class 3 vanished from the collection."""
    keep = data.labels != 3
    return ImageArrays(data.images[keep], data.labels[keep])


def resized_source(data: ImageArrays) -> ImageArrays:
    """The same scenes from a camera of half the resolution, scaled up to the same size: a blurrier source."""
    n, height, width, channels = data.images.shape
    small = data.images.reshape(n, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))
    return ImageArrays(np.repeat(np.repeat(small, 2, axis=1), 2, axis=2).round().astype(np.uint8), data.labels)
