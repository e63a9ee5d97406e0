"""Datasets as arrays: `images` uint8 N×H×W×C and `labels` int64 N, stored as npz under data/raw."""

from gen_platform.data.arrays import ImageArrays, load_npz, to_tensor, write_npz

__all__ = ["ImageArrays", "load_npz", "to_tensor", "write_npz"]
