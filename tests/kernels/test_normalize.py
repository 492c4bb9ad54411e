"""Normalisation: the kernels equal their numpy twins and torch's own ops, bit for bit, and refuse bad buffers clearly."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastload import ConfigError
from fastload.kernels.normalize import normalize_images, standardize
from fastload.kernels.normalize_reference import normalize_images_reference, standardize_reference

DTYPES = ["float32", "float16", "bfloat16"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _bits(array: np.ndarray) -> np.ndarray:
    """Integer bit patterns, so comparisons see -0.0 vs 0.0 and every rounding difference."""
    return array.view({4: np.uint32, 2: np.uint16}[array.dtype.itemsize])


def _as_torch(out: np.ndarray, dtype: str) -> torch.Tensor:
    tensor = torch.from_numpy(out)
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def _tensor_bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view({4: torch.int32, 2: torch.int16}[tensor.element_size()])


def _assert_same_bits_nan_aside(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal bits wherever the expected value is a number; NaN exactly where it is NaN (payloads may differ)."""
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(actual), nan)
    assert torch.equal(_tensor_bits(actual[~nan]), _tensor_bits(expected[~nan]))


def _torch_normalize(images: np.ndarray, mean, std, dtype: str) -> torch.Tensor:
    mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, C, H, W)
    return ((x - mean_t[:, None, None]) / std_t[:, None, None]).to(TORCH_DTYPES[dtype])


images_st = hnp.arrays(np.uint8, st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4)))
stat_st = st.floats(-3.0, 3.0).map(np.float32)
std_st = st.floats(0.001, 3.0).map(np.float32) | st.floats(-3.0, -0.001).map(np.float32)


@settings(max_examples=60, deadline=None)
@given(images=images_st, data=st.data(), dtype=st.sampled_from(DTYPES))
def test_normalize_images_equals_the_reference_and_torch_bit_for_bit(images, data, dtype):
    channels = images.shape[-1]
    mean = data.draw(st.lists(stat_st, min_size=channels, max_size=channels))
    std = data.draw(st.lists(std_st, min_size=channels, max_size=channels))
    out = normalize_images(images, mean, std, dtype=dtype)
    assert out.shape == (images.shape[0], channels, *images.shape[1:3])
    assert np.array_equal(_bits(out), _bits(normalize_images_reference(images, mean, std, dtype=dtype)))
    assert torch.equal(_tensor_bits(_as_torch(out, dtype)), _tensor_bits(_torch_normalize(images, mean, std, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stats", [(IMAGENET_MEAN, IMAGENET_STD), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.1, -0.7, 0.33), (0.017, 1.9, -0.4))])
def test_normalize_images_equals_the_torch_expression_bit_for_bit(dtype, stats):
    images = np.random.default_rng(0).integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)
    images[0, 0] = np.linspace(0, 255, 23).astype(np.uint8)[:, None]  # every channel sees the extremes 0 and 255, too
    out = normalize_images(images, *stats, dtype=dtype)
    expected = _torch_normalize(images, *stats, dtype)
    assert torch.equal(_tensor_bits(_as_torch(out, dtype)), _tensor_bits(expected))


def test_a_single_hwc_image_becomes_one_chw_image():
    image = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = normalize_images(image, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (3, 5, 7)
    assert np.array_equal(out, normalize_images_reference(image[None], IMAGENET_MEAN, IMAGENET_STD)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_images_writes_into_a_view_of_a_larger_buffer_and_returns_it(dtype):
    images = np.random.default_rng(2).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    storage = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[dtype]
    slots = np.zeros((3, 2, 3, 4, 6), storage)  # like a shared-memory arena of three batch slots
    slot = slots[1]
    assert normalize_images(images, IMAGENET_MEAN, IMAGENET_STD, out=slot, dtype=dtype) is slot
    assert np.array_equal(_bits(slots[1]), _bits(normalize_images_reference(images, IMAGENET_MEAN, IMAGENET_STD, dtype=dtype)))
    assert not _bits(slots[0]).any() and not _bits(slots[2]).any()  # neighbouring slots untouched


def test_the_out_buffer_passed_is_the_one_returned():
    images = np.zeros((1, 2, 2, 3), np.uint8)
    out = np.empty((1, 3, 2, 2), np.float32)
    assert normalize_images(images, 0.5, 0.25, out=out) is out
    assert (out == -2.0).all()  # scalar mean and std apply to every channel


def test_non_contiguous_images_and_out_are_read_and_written_through_their_strides():
    rng = np.random.default_rng(3)
    chw = rng.integers(0, 256, (2, 3, 10, 12), dtype=np.uint8)
    images = chw.transpose(0, 2, 3, 1)[:, ::2, ::-1]  # (2, 5, 12, 3), no axis contiguous in the right order
    wide = np.full((2, 3, 5, 24), np.nan, np.float32)
    out = normalize_images(images, IMAGENET_MEAN, IMAGENET_STD, out=wide[..., ::2])
    assert np.array_equal(out, normalize_images_reference(np.ascontiguousarray(images), IMAGENET_MEAN, IMAGENET_STD))
    assert np.isnan(wide[..., 1::2]).all()


def test_an_empty_batch_gives_an_empty_output():
    assert normalize_images(np.zeros((0, 4, 4, 3), np.uint8), IMAGENET_MEAN, IMAGENET_STD).shape == (0, 3, 4, 4)


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "message"),
    [
        (np.zeros((2, 4, 4, 3), np.float32), {}, ValueError, r"uint8 array of shape \(N, H, W, C\).*found dtype float32"),
        (np.zeros((4, 3), np.uint8), {}, ValueError, r"found dtype uint8 and shape \(4, 3\)"),
        (
            np.zeros((2, 4, 5, 3), np.uint8),
            {"out": np.zeros((2, 4, 5, 3), np.float32)},
            ValueError,
            r"out has shape \(2, 4, 5, 3\).*need \(N, C, H, W\) = \(2, 3, 4, 5\)",
        ),
        (
            np.zeros((2, 4, 5, 3), np.uint8),
            {"out": np.zeros((2, 3, 4, 5), np.float32), "dtype": "bfloat16"},
            ValueError,
            r"dtype='bfloat16' writes uint16 \(bfloat16 bit patterns",
        ),
        (
            np.zeros((2, 4, 5, 3), np.uint8),
            {"out": np.zeros((2, 3, 4, 5), np.float64)},
            ValueError,
            r"out has dtype float64 but dtype='float32' writes float32",
        ),
        (np.zeros((2, 4, 5, 3), np.uint8), {"dtype": "bf16"}, ConfigError, r"'bf16' is not one of \['bfloat16', 'float16', 'float32'\]"),
        (np.zeros((2, 4, 5, 3), np.uint8), {"out": [0.0]}, TypeError, "out must be a numpy array, found list"),
    ],
)
def test_bad_images_or_buffers_raise_saying_what_was_expected(images, kwargs, error, message):
    with pytest.raises(error, match=message):
        normalize_images(images, IMAGENET_MEAN, IMAGENET_STD, **kwargs)


def test_mean_and_std_must_have_one_value_per_channel_and_a_non_zero_std():
    images = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"mean has shape \(2,\); expected a scalar or 3 values, one per channel"):
        normalize_images(images, (0.5, 0.5), IMAGENET_STD)
    with pytest.raises(ConfigError, match=r"std\[1\] is 0 .* channel 1 would divide by zero"):
        normalize_images(images, IMAGENET_MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ConfigError, match=r"std\[0\] is 0 \(in float32\)"):  # 1e-50 rounds to 0 in float32
        normalize_images(images, IMAGENET_MEAN, (1e-50, 0.2, 0.2))
    with pytest.raises(ConfigError, match="mean must be finite"):
        normalize_images(images, (0.5, float("nan"), 0.5), IMAGENET_STD)


def test_out_that_overlaps_the_images_or_is_read_only_is_refused():
    buffer = np.zeros(4 * 3 * 2 * 2, np.float32)
    images = buffer.view(np.uint8)[: 2 * 2 * 3].reshape(1, 2, 2, 3)
    with pytest.raises(ValueError, match="out overlaps the images"):
        normalize_images(images, 0.5, 0.5, out=buffer[:12].reshape(1, 3, 2, 2))
    read_only = np.zeros((1, 3, 2, 2), np.float32)
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        normalize_images(np.zeros((1, 2, 2, 3), np.uint8), 0.5, 0.5, out=read_only)


# --- standardize ---------------------------------------------------------------------------------

VALUE_DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64]
values_st = st.sampled_from(VALUE_DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))


@settings(max_examples=150, deadline=None)
@given(values=values_st, data=st.data(), dtype=st.sampled_from(DTYPES))
def test_standardize_equals_the_reference_for_every_input_dtype(values, data, dtype):
    features = values.shape[-1] if values.ndim else 1
    stat = st.floats(-1e6, 1e6, allow_nan=False)
    mean = data.draw(stat | st.lists(stat, min_size=features, max_size=features))
    std = data.draw(st.floats(1e-6, 1e6) | st.lists(st.floats(1e-6, 1e6) | st.floats(-1e6, -1e-6), min_size=features, max_size=features))
    out = standardize(values, mean, std, dtype=dtype)
    expected = standardize_reference(values, mean, std, dtype=dtype)
    assert out.shape == values.shape and out.dtype == expected.dtype
    _assert_same_bits_nan_aside(_as_torch(out, dtype), _as_torch(expected, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_standardize_equals_torch_in_float64_then_rounded_through_float32(dtype):
    rng = np.random.default_rng(4)
    values = (rng.standard_normal((50, 4)) * 10.0 ** rng.integers(-8, 8, (50, 4))).astype(np.float64)
    mean, std = np.array([0.0, 3.5, -1e4, 1e-7]), np.array([1.0, 0.25, 300.0, -2e-3])
    out = standardize(values, mean, std, dtype=dtype)
    expected = ((torch.from_numpy(values) - torch.from_numpy(mean)) / torch.from_numpy(std)).float().to(TORCH_DTYPES[dtype])
    _assert_same_bits_nan_aside(_as_torch(out, dtype), expected)


def _float32_sweep() -> np.ndarray:
    """About a million float32 bit patterns: spread over all 2**32, plus the round-half ties of float16 and bfloat16."""
    rng = np.random.default_rng(5)
    spread = np.arange(0, 2**32, 8191, dtype=np.uint64)
    bf16_ties = (rng.integers(0, 2**16, 100_000, dtype=np.uint64) << 16) | rng.choice([0x7FFF, 0x8000, 0x8001], 100_000).astype(np.uint64)
    f16_ties = (rng.integers(0, 2**19, 200_000, dtype=np.uint64) << 13) | rng.choice([0x0FFF, 0x1000, 0x1001], 200_000).astype(np.uint64)
    return np.concatenate([spread, bf16_ties, f16_ties]).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_rounding_float32_to_half_types_matches_torch_on_a_million_bit_patterns(dtype):
    sweep = _float32_sweep()
    out = standardize(sweep, 0.0, 1.0, dtype=dtype)  # (x - 0) / 1 is x: only the rounding is tested
    _assert_same_bits_nan_aside(_as_torch(out, dtype), torch.from_numpy(sweep).to(TORCH_DTYPES[dtype]))
    if dtype == "float16":
        with np.errstate(over="ignore"):
            _assert_same_bits_nan_aside(torch.from_numpy(out), torch.from_numpy(sweep.astype(np.float16)))


def test_standardize_writes_into_out_in_place_and_returns_it():
    values = np.arange(12, dtype=np.int16).reshape(3, 4)
    out = np.zeros((3, 4), np.uint16)
    assert standardize(values, [0, 1, 2, 3], 2, out=out, dtype="bfloat16") is out
    assert torch.equal(torch.from_numpy(out).view(torch.bfloat16), torch.from_numpy((values - np.arange(4)) / 2).to(torch.bfloat16))


def test_standardize_reads_non_contiguous_values_and_refuses_an_out_it_would_have_to_copy():
    values = np.arange(80, dtype=np.float64).reshape(2, 5, 8)[..., ::2]  # (2, 5, 4)
    assert np.array_equal(standardize(values, 1.0, 4.0), standardize_reference(values, 1.0, 4.0))
    fortran = np.zeros((2, 5, 4), np.float32, order="F")
    with pytest.raises(ValueError, match=r"cannot be viewed as \(rows, 4\); pass a C-contiguous out"):
        standardize(values, 1.0, 4.0, out=fortran)


def test_standardize_works_in_place_but_refuses_a_shifted_overlap():
    buffer = np.arange(10, dtype=np.float32)
    assert standardize(buffer, 1.0, 2.0, out=buffer) is buffer
    assert np.array_equal(buffer, (np.arange(10) - 1.0) / 2.0)
    with pytest.raises(ValueError, match="out overlaps values without being the very same elements"):
        standardize(buffer[1:], 1.0, 2.0, out=buffer[:-1])


def test_standardize_refuses_a_zero_std_wrong_lengths_and_non_numeric_values():
    values = np.ones((3, 4))
    with pytest.raises(ConfigError, match=r"std\[2\] is 0 .* feature 2 would divide by zero.*std=np.where\(std == 0, 1, std\)"):
        standardize(values, 0.0, [1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"std has shape \(3,\); expected a scalar or 4 values, one per feature"):
        standardize(values, 0.0, [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="bool, integer or float values, found dtype complex128"):
        standardize(values.astype(complex), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"out has shape \(4, 3\) but values need the same shape, \(3, 4\)"):
        standardize(values, 0.0, 1.0, out=np.zeros((4, 3), np.float32))


def test_the_kernels_also_run_as_plain_python_with_the_jit_disabled():
    code = (
        "import numpy as np\n"
        "from fastload.kernels import normalize as nz, normalize_reference as ref\n"
        "assert not hasattr(nz._standardize_kernel, 'py_func')\n"
        "x = np.array([[1.0, 70000.0, 1e-6, -2.5, 3e38]], np.float32)\n"
        "for d in ('float32', 'float16', 'bfloat16'):\n"
        "    a, b = nz.standardize(x, 0.5, 2.0, dtype=d), ref.standardize_reference(x, 0.5, 2.0, dtype=d)\n"
        "    assert a.tobytes() == b.tobytes(), d\n"
        "img = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)\n"
        "assert np.array_equal(nz.normalize_images(img, 0.5, 0.2, dtype='float16'), ref.normalize_images_reference(img, 0.5, 0.2, dtype='float16'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "FASTLOAD_DISABLE_JIT": "1"})
