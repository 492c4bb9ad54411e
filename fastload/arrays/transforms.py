"""What `ArrayDataset` does to a column on its way into the batch: nothing, standardise, or normalise images.

Each transform is a small frozen description (it pickles to the workers as
a few numbers) with two jobs: say the shape and dtype it writes for a
column, and write a gathered batch of the column into `out` with a Numba
kernel from `kernels/normalize.py`. Statistics left out are read from the
dataset's `index.json` (gathered at conversion), so
`Standardize()` needs no arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastload.errors import ConfigError
from fastload.format.schema import Column
from fastload.kernels.normalize import OUTPUT_DTYPES, normalize_images, standardize

__all__ = ["Standardize", "NormalizeImage", "resolve_transform"]


def _check_dtype(dtype: str) -> None:
    if dtype not in OUTPUT_DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}, found {dtype!r}")


@dataclass(frozen=True)
class Standardize:
    """`(x - mean) / std` per feature (the last axis; one value for scalar columns), cast to `dtype`.

    mean, std: scalars or one per feature; None reads them from the
    dataset's statistics (per last-axis channel when gathered, else overall).
    """

    mean: float | tuple | None = None
    std: float | tuple | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)

    def bind(self, column: Column, stats: dict) -> "Standardize":
        if column.kind not in ("scalar", "ndarray") or np.dtype(column.numpy_dtype).kind not in "biuf":
            raise ConfigError(f"Standardize needs a numeric scalar or ndarray column; {column.name!r} is {column.kind} of {column.dtype}")
        if self.mean is not None and self.std is not None:
            return self
        mean, std = _recorded(column, stats, axis=len(column.shape) - 1 if column.shape else None)
        return Standardize(self.mean if self.mean is not None else mean, self.std if self.std is not None else std, self.dtype)

    def output(self, column: Column) -> tuple[tuple, np.dtype]:
        return column.shape, OUTPUT_DTYPES[self.dtype]

    def apply(self, values: np.ndarray, out: np.ndarray) -> None:
        standardize(values, np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64), out=out, dtype=self.dtype)


@dataclass(frozen=True)
class NormalizeImage:
    """uint8 HWC images to CHW `(x / 255 - mean[c]) / std[c]` in `dtype` (torchvision's Normalize after ToTensor).

    mean, std: in 0..1 units, scalars or one per channel; None reads them
    from the dataset's per-channel statistics (of the last axis, divided by 255).
    """

    mean: float | tuple | None = None
    std: float | tuple | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)

    def bind(self, column: Column, stats: dict) -> "NormalizeImage":
        if column.kind != "ndarray" or column.dtype != "uint8" or len(column.shape) != 3:
            raise ConfigError(
                f"NormalizeImage needs a uint8 ndarray column of shape (height, width, channels); {column.name!r} is "
                f"{column.kind} of {column.dtype} with shape {column.shape}"
            )
        if self.mean is not None and self.std is not None:
            return self
        mean, std = _recorded(column, stats, axis=2)
        mean, std = tuple(np.asarray(mean, np.float64) / 255), tuple(np.asarray(std, np.float64) / 255)
        return NormalizeImage(self.mean if self.mean is not None else mean, self.std if self.std is not None else std, self.dtype)

    def output(self, column: Column) -> tuple[tuple, np.dtype]:
        height, width, channels = column.shape
        return (channels, height, width), OUTPUT_DTYPES[self.dtype]

    def apply(self, values: np.ndarray, out: np.ndarray) -> None:
        normalize_images(values, self.mean, self.std, out=out, dtype=self.dtype)


def _recorded(column: Column, stats: dict, *, axis: int | None) -> tuple:
    """(mean, std) of a column from index.json: per channel of `axis` if gathered, else overall."""
    recorded = (stats or {}).get(column.name) or {}
    per_axis = recorded.get(f"axis{axis}") if axis is not None else None
    source = per_axis if per_axis is not None else recorded
    mean, std = source.get("mean"), source.get("std")
    if mean is None or std is None or (isinstance(mean, list) and None in mean) or (isinstance(std, list) and None in std):
        raise ConfigError(f"the dataset records no mean/std for column {column.name!r}; pass mean= and std= explicitly")
    return (tuple(mean) if isinstance(mean, list) else mean), (tuple(std) if isinstance(std, list) else std)


def resolve_transform(transform, column: Column, stats: dict):
    """The transform bound to its column (statistics filled in), or None for raw values."""
    if transform is None:
        return None
    if not isinstance(transform, (Standardize, NormalizeImage)):
        raise ConfigError(f"column {column.name!r}: a transform is Standardize(...), NormalizeImage(...) or None, not {transform!r}")
    return transform.bind(column, stats)
