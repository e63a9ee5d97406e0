import os
import sys
from pathlib import Path

import numpy as np
import pytest

from gen_platform.data.arrays import ImageArrays

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (genp, dvc) must come from the same environment as the tests.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def digits() -> ImageArrays:
    from gen_platform.data.sources import digits as load

    return load()


def tiny_dataset(n: int = 200, size: int = 8, classes: int = 10, seed: int = 0) -> ImageArrays:
    """Random distinct uint8 images with balanced labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)
    return ImageArrays(images, np.arange(n, dtype=np.int64) % classes)
