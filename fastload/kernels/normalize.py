"""Normalise image batches and standardise numeric columns, fused with the cast.

Two kernels, each with a thin wrapper that checks shapes and dtypes and a
slow, obvious numpy twin for the tests in `normalize_reference.py`:

- `normalize_images`: uint8 HWC images (N, H, W, C), or one (H, W, C), to
  CHW (N, C, H, W) with `out = (x / 255 - mean[c]) / std[c]`. `mean` and
  `std` are in 0..1 units, the convention of torchvision's `Normalize` after
  `ToTensor` (ImageNet: mean=(0.485, 0.456, 0.406), std=(0.229, 0.224,
  0.225)); each is a scalar or one value per channel.
- `standardize`: any bool/int/float array to `out = (x - mean) / std`, with
  `mean`/`std` scalars or one value per feature, broadcast over the last
  axis as numpy would.

Output dtypes are "float32", "float16" and "bfloat16". numpy has no
bfloat16, so a bfloat16 `out` is a uint16 array of bit patterns, rounded to
nearest even from the float32 result exactly as torch rounds (NaN stays NaN);
torch reads it with `torch.from_numpy(out).view(torch.bfloat16)`. float16
is rounded from the float32 result too, as `tensor.float().half()` would.

Arithmetic, and why: an image pixel has only 256 values, so the wrapper
computes each channel's 256 outputs once, in float32 and in torch's order of
operations (divide by 255, subtract the mean, divide by the std), already
rounded to the output dtype; the kernel is then a table look-up and a store
per element. That is as fast as a plain HWC->CHW copy (loop order n, c, h, w:
every output plane is written contiguously, the input row stays in L1) and
bit-identical to the torch expression, which a fused multiply-add
(`x * scale + bias`) would not be. `standardize` computes in float64 and
rounds once to float32, so int64 and float64 inputs keep their precision.

A `std` of 0 raises `ConfigError` rather than being treated as 1: in an
image pipeline it is always a mistake, and for a constant feature the caller
can say so with `np.where(std == 0, 1, std)` (scikit-learn's convention).
What this module does not do: decode, resize or augment images (the
decoders), or compute the statistics (the dataset's column statistics).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from fastload.errors import ConfigError
from fastload.kernels.jit import kernel

__all__ = ["OUTPUT_DTYPES", "normalize_images", "standardize"]

# Output dtype name -> the numpy dtype of `out` (bfloat16 travels as its uint16 bit patterns).
OUTPUT_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(np.uint16)}

# What the standardize kernel writes into `out` (float16 and bfloat16 as uint16 bits).
_FLOAT32, _FLOAT16_BITS, _BFLOAT16_BITS = 0, 1, 2
_KINDS = {"float32": _FLOAT32, "float16": _FLOAT16_BITS, "bfloat16": _BFLOAT16_BITS}


@kernel
def _normalize_images_kernel(images, table, out):
    """out[n, c, h, w] = table[c, images[n, h, w, c]]; returns the number of images written."""
    num_images, height, width, channels = images.shape
    for n in range(num_images):
        for c in range(channels):
            lookup = table[c]  # (256,): uint8 values index it, so never out of bounds
            for h in range(height):
                for w in range(width):
                    out[n, c, h, w] = lookup[images[n, h, w, c]]
    return num_images


@kernel
def _bfloat16_bits(value):
    """The bfloat16 bit pattern of float32 `value`, rounded to nearest even (c10's round_to_nearest_even)."""
    bits = np.int64(np.float32(value).view(np.uint32))
    if (bits & 0x7FFFFFFF) > 0x7F800000:  # NaN: keep sign and top payload, set the quiet bit so it stays NaN
        return (bits >> 16) | 0x40
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


@kernel
def _float16_bits(value):
    """The IEEE half bit pattern of float32 `value`, rounded to nearest even (as numpy's astype)."""
    bits = np.int64(np.float32(value).view(np.uint32))
    sign = (bits >> 16) & 0x8000
    magnitude = bits & 0x7FFFFFFF
    if magnitude >= 0x47800000:  # |value| >= 65536, inf or NaN
        half = 0x7E00 if magnitude > 0x7F800000 else 0x7C00
    elif magnitude < 0x38800000:  # |value| < 2**-14: subnormal half, in units of 2**-24 (exact scaling)
        half = np.int64(np.rint(np.abs(np.float32(value)) * np.float32(16777216.0)))
    else:  # rebias the exponent, round the 13 dropped mantissa bits to even; a carry may reach inf, as it should
        half = (magnitude - ((127 - 15) << 23) + 0xFFF + ((magnitude >> 13) & 1)) >> 13
    return sign | half


@kernel
def _standardize_kernel(values, mean, std, out, kind):
    """out[r, f] = round((values[r, f] - mean[f]) / std[f]) in float64, stored as `kind`; returns elements written."""
    rows, features = values.shape
    for r in range(rows):
        for f in range(features):
            y = np.float32((np.float64(values[r, f]) - mean[f]) / std[f])
            if kind == _FLOAT32:
                out[r, f] = y
            elif kind == _FLOAT16_BITS:
                out[r, f] = _float16_bits(y)
            else:
                out[r, f] = _bfloat16_bits(y)
    return rows * features


def normalize_images(images: np.ndarray, mean, std, *, out: np.ndarray | None = None, dtype: str = "float32") -> np.ndarray:
    """Normalise uint8 HWC images into CHW `out`: `out[n, c] = (images[n, ..., c] / 255 - mean[c]) / std[c]`.

    `images` is (N, H, W, C) or one (H, W, C) image, any strides; `mean` and
    `std` are in 0..1 units (torchvision's convention after `ToTensor`), a
    scalar or C values. `out` is (N, C, H, W) (or (C, H, W)) of dtype
    float32, float16, or uint16 for "bfloat16" (view it in torch with
    `.view(torch.bfloat16)`); it is allocated when not given. Returns `out`.
    The result equals torch's `(x.permute(0, 3, 1, 2).float() / 255 - mean) /
    std` cast to `dtype`, bit for bit.
    """
    images = _check_images(images)
    channels = images.shape[-1]
    storage = _storage_dtype(dtype)
    mean32, std32 = _per_channel(mean, "mean", channels), _per_channel(std, "std", channels)
    expected = images.shape[:-3] + (channels,) + images.shape[-3:-1]
    out = _check_out(out, expected, storage, dtype, what=f"images of shape {images.shape} (N, H, W, C) need (N, C, H, W) =")
    if np.may_share_memory(images, out):
        raise ValueError("out overlaps the images; normalising in place is not possible (the output is wider), pass a separate buffer")
    table = _image_table(tuple(mean32.tolist()), tuple(std32.tolist()), dtype)
    if images.ndim == 3:  # one image: the kernel sees a batch of one
        images, out4 = images[None], out[None]
    else:
        out4 = out
    _normalize_images_kernel(images, table, out4.view(table.dtype))
    return out


def standardize(values: np.ndarray, mean, std, *, out: np.ndarray | None = None, dtype: str = "float32") -> np.ndarray:
    """Standardise a numeric array into `out`: `out = (values - mean) / std`.

    `values` is any bool, integer or float array; `mean` and `std` are
    scalars or one value per feature (the last axis); the arithmetic is in
    float64 and rounded once to float32 (then to float16/bfloat16 from there).
    `out` has the shape of `values` and dtype float32, float16, or uint16 for
    "bfloat16"; it is allocated when not given, and must be reshapeable to
    (rows, features) without a copy (any C-contiguous array is). Returns `out`.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise ConfigError(f"standardize takes bool, integer or float values, found dtype {values.dtype}")
    if values.dtype == np.float16:  # Numba has no CPU float16; float32 holds every float16 exactly
        values = values.astype(np.float32)
    storage = _storage_dtype(dtype)
    features = values.shape[-1] if values.ndim else 1
    mean64, std64 = _per_feature(mean, "mean", features), _per_feature(std, "std", features)
    out = _check_out(out, values.shape, storage, dtype, what="values need the same shape,")
    if values.size == 0:
        return out
    if np.may_share_memory(values, out) and not _same_elements(values, out):  # each element read before it is written, so only in place
        raise ValueError("out overlaps values without being the very same elements; standardise in place (out=values) or into a separate buffer")
    out2 = out.reshape(-1, features)
    if not np.may_share_memory(out2, out):  # numpy had to copy: writes would not reach the caller's buffer
        raise ValueError(f"out with shape {out.shape} and strides {out.strides} cannot be viewed as (rows, {features}); pass a C-contiguous out")
    kind = _KINDS[dtype]
    _standardize_kernel(values.reshape(-1, features), mean64, std64, out2.view(np.float32 if kind == _FLOAT32 else np.uint16), kind)
    return out


def _cast(result: np.ndarray, storage: np.dtype, dtype: str) -> np.ndarray:
    """Round a float array to the output dtype through float32, as the kernels do."""
    with np.errstate(over="ignore"):  # beyond the dtype's range is inf, as in the kernels
        result32 = np.asarray(result).astype(np.float32, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        if dtype != "bfloat16":
            return result32.astype(storage)
    bits = result32.view(np.uint32).astype(np.uint64)  # bfloat16: round to nearest even by hand, as `_bfloat16_bits`
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    nan = (bits >> np.uint64(16)) | np.uint64(0x40)
    return np.where(np.isnan(result32), nan, rounded).astype(np.uint16)


@lru_cache(maxsize=32)
def _image_table(mean: tuple, std: tuple, dtype: str) -> np.ndarray:
    """Each channel's output for every uint8 value, (C, 256), in the kernel's storage dtype (read-only)."""
    levels = np.arange(256, dtype=np.float32).reshape(256, 1)  # (256, 1)
    mean32, std32 = np.array(mean, np.float32), np.array(std, np.float32)  # (C,)
    scaled = (levels / np.float32(255) - mean32) / std32  # (256, C), in torch's order of operations
    table = _cast(scaled.T, _storage_dtype(dtype), dtype)  # (C, 256)
    table = np.ascontiguousarray(table.view(np.uint16) if dtype == "float16" else table)
    table.setflags(write=False)
    return table


def _same_elements(a: np.ndarray, b: np.ndarray) -> bool:
    """True when `a` and `b` are the same memory element for element (same start, strides and item size)."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides and a.itemsize == b.itemsize


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"images must be a uint8 array of shape (N, H, W, C) or (H, W, C), found dtype {images.dtype} and shape {images.shape}; "
            "convert float images with standardize, or pass channels last"
        )
    return images


def _storage_dtype(dtype: str) -> np.dtype:
    if dtype not in OUTPUT_DTYPES:
        raise ConfigError(f"output dtype {dtype!r} is not one of {sorted(OUTPUT_DTYPES)}")
    return OUTPUT_DTYPES[dtype]


def _check_out(out, shape: tuple, storage: np.dtype, dtype: str, *, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, storage)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, found {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape} but {what} {shape}")
    if out.dtype != storage:
        bits = " (bfloat16 bit patterns; view in torch with .view(torch.bfloat16))" if dtype == "bfloat16" else ""
        raise ValueError(f"out has dtype {out.dtype} but dtype={dtype!r} writes {storage}{bits}")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable buffer")
    return out


def _per_channel(value, name: str, channels: int) -> np.ndarray:
    """`value` as float32 (channels,), checked: finite, and for `std` non-zero after rounding to float32."""
    return _broadcast(value, name, channels, np.float32, unit="channel", axis="C, the last axis of the images")


def _per_feature(value, name: str, features: int) -> np.ndarray:
    """`value` as float64 (features,), checked like `_per_channel`."""
    return _broadcast(value, name, features, np.float64, unit="feature", axis="the last axis of the values")


def _broadcast(value, name: str, size: int, dtype, *, unit: str, axis: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] not in (1, size)):
        raise ValueError(f"{name} has shape {array.shape}; expected a scalar or {size} values, one per {unit} ({axis})")
    if array.shape != (size,):
        array = np.repeat(array.reshape(1), size)
    listed = array.tolist()  # the checks in Python: for a few values, faster than numpy's reductions
    if not all(math.isfinite(v) for v in listed):
        raise ConfigError(f"{name} must be finite, found {listed}")
    if name == "std" and 0.0 in listed:
        zero = listed.index(0.0)
        raise ConfigError(
            f"std[{zero}] is 0 (in {np.dtype(dtype).name}), so {unit} {zero} would divide by zero; "
            "for a constant feature pass std=np.where(std == 0, 1, std) to centre it without scaling"
        )
    return array
