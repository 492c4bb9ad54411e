"""The slow, obvious numpy twins of the kernels in `normalize.py`, for the tests.

The arithmetic is the plain numpy expression, element by element as written.
Input checks and the final rounding to float16/bfloat16 come from
`normalize.py`: what counts as valid input, and how a float32 rounds to
bfloat16 (round to nearest even, NaN kept), have one home; the tests check
that rounding against torch's own. Nothing here is used at run time.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.normalize import _cast, _check_images, _per_channel, _per_feature, _storage_dtype

__all__ = ["normalize_images_reference", "standardize_reference"]


def normalize_images_reference(images: np.ndarray, mean, std, *, dtype: str = "float32") -> np.ndarray:
    """The slow, obvious numpy normalisation (same dtype rules as `normalize_images`), returning a new array."""
    images = _check_images(images)
    channels = images.shape[-1]
    mean32, std32 = _per_channel(mean, "mean", channels), _per_channel(std, "std", channels)
    scaled = (images.astype(np.float32) / np.float32(255) - mean32) / std32  # (N, H, W, C)
    return _cast(np.moveaxis(scaled, -1, -3), _storage_dtype(dtype), dtype)  # (N, C, H, W)


def standardize_reference(values: np.ndarray, mean, std, *, dtype: str = "float32") -> np.ndarray:
    """The slow, obvious numpy standardisation (same dtype rules as `standardize`), returning a new array."""
    values = np.asarray(values)
    features = values.shape[-1] if values.ndim else 1
    mean64, std64 = _per_feature(mean, "mean", features), _per_feature(std, "std", features)
    result = (values.astype(np.float64) - mean64) / std64
    return _cast(result.reshape(values.shape), _storage_dtype(dtype), dtype)  # a 0-d value stays 0-d
