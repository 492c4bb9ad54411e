"""What `ArrayDataset` does to a column on its way into the batch: nothing, standardise, or normalise images.

Each transform is a small frozen description (it pickles to the workers as
a few numbers) with two jobs: say the shape and dtype it writes for a
column, and write a gathered batch of the column into `out` with a Numba
kernel from `kernels/normalize.py`. Statistics left out are read from the
dataset's `index.json` (gathered at conversion), so
`Standardize()` needs no arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fastload.errors import ConfigError
from fastload.format.schema import Column
from fastload.kernels.normalize import OUTPUT_DTYPES, normalize_images, standardize

__all__ = ["Standardize", "NormalizeImage", "LAYOUTS", "resolve_transform"]


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


# How an image column may store its images; None is "HWC", refusing shapes that look channels-first.
LAYOUTS = ("HWC", "CHW")
# Gray, RGB and RGBA: a first axis this short before a longer last one is taken for channels-first.
MAX_IMAGE_CHANNELS = 4


@dataclass(frozen=True)
class NormalizeImage:
    """uint8 images to CHW `(x / 255 - mean[c]) / std[c]` in `dtype` (torchvision's Normalize after ToTensor).

    mean, std: in 0..1 units, scalars or one per channel; None reads them
        from the dataset's per-channel statistics (divided by 255).
    layout: how the column stores each image. "HWC" (height, width,
        channels: what image decoders and PIL give) or "CHW" (channels first,
        as torch tensors are; read through a transposed view, nothing is
        copied). None (the default) means HWC, and refuses a shape that looks
        channels-first, (1|3|4, H, W) with W > 4, at construction with a
        `ConfigError` rather than normalising the wrong axis; say
        layout="HWC" for images that really are that shape.
    """

    mean: float | tuple | None = None
    std: float | tuple | None = None
    dtype: str = "float32"
    layout: str | None = None

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)} (or None for HWC), found {self.layout!r}")

    @property
    def channel_axis(self) -> int:
        """The axis of a stored image (H, W, C or C, H, W) that holds its channels."""
        return 0 if self.layout == "CHW" else 2

    def bind(self, column: Column, stats: dict) -> "NormalizeImage":
        if column.kind != "ndarray" or column.dtype != "uint8" or len(column.shape) != 3:
            raise ConfigError(
                f"NormalizeImage needs a uint8 ndarray column of images, (height, width, channels) or with layout='CHW' "
                f"(channels, height, width); {column.name!r} is {column.kind} of {column.dtype} with shape {column.shape}"
            )
        self._check_layout(column)
        if self.mean is not None and self.std is not None:
            return self
        mean, std = _recorded(column, stats, axis=self.channel_axis)
        mean, std = tuple(np.asarray(mean, np.float64) / 255), tuple(np.asarray(std, np.float64) / 255)
        return replace(self, mean=self.mean if self.mean is not None else mean, std=self.std if self.std is not None else std)

    def _check_layout(self, column: Column) -> None:
        """Refuse, before any worker starts, a column whose images are not laid out as `layout` says."""
        shape, channels = column.shape, column.shape[self.channel_axis]
        looks_chw = shape[0] <= MAX_IMAGE_CHANNELS < shape[2]
        if self.layout is None and looks_chw:
            height, width = shape[1], shape[2]
            raise ConfigError(
                f"NormalizeImage: column {column.name!r} holds images of shape {shape}, which looks channels-first (CHW: "
                f"{shape[0]} channels of {height} x {width}); NormalizeImage expects height x width x channels (HWC), here "
                f"({height}, {width}, {shape[0]}). Pass NormalizeImage(..., layout='CHW') to read them as stored, or convert "
                f"HWC images (image.transpose(1, 2, 0) for each one); or layout='HWC' if they really are {shape[0]} x "
                f"{shape[1]} pixels of {shape[2]} channels."
            )
        for name in ("mean", "std"):
            given = getattr(self, name)
            count = np.size(given) if given is not None else 1
            if np.ndim(given) > 1 or count not in (1, channels):
                axis = "first" if self.channel_axis == 0 else "last"
                hint = ""
                if count == shape[2 - self.channel_axis] and count != channels:
                    other = "HWC" if self.channel_axis == 0 else "CHW"
                    hint = f"; if the images are {other}, pass layout={other!r}"
                raise ConfigError(
                    f"NormalizeImage: {name} has {count} values but column {column.name!r} holds images of shape {shape} "
                    f"with {channels} channels (the {axis} axis, layout {self.layout or 'HWC'}); give a scalar or "
                    f"{channels} values{hint}"
                )

    def output(self, column: Column) -> tuple[tuple, np.dtype]:
        if self.channel_axis == 0:
            return column.shape, OUTPUT_DTYPES[self.dtype]
        height, width, channels = column.shape
        return (channels, height, width), OUTPUT_DTYPES[self.dtype]

    def apply(self, values: np.ndarray, out: np.ndarray) -> None:
        """values: (N, H, W, C), or (N, C, H, W) with layout "CHW"; out: (N, C, H, W)."""
        hwc = values.transpose(0, 2, 3, 1) if self.channel_axis == 0 else values  # (N, H, W, C), a view
        normalize_images(hwc, self.mean, self.std, out=out, dtype=self.dtype)


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
