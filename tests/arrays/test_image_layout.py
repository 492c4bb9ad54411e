"""NormalizeImage and the layout of stored images: channels-first columns are refused at construction, or read with layout="CHW"."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.errors import ConfigError
from fastload.format import Column, DatasetWriter, Schema, WriteOptions

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_ROWS = 96


def _write_images(path, images: np.ndarray):
    """A dataset of `images` (N, *shape) uint8 and their row numbers as labels, 16 rows a block."""
    shape = images.shape[1:]
    schema = Schema((Column("image", "ndarray", "uint8", shape), Column("label", "scalar", "int64")))
    batch = pa.record_batch(
        [pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), int(np.prod(shape))), pa.array(np.arange(len(images)))],
        schema=schema.arrow_schema(),
    )
    with DatasetWriter(path, schema, options=WriteOptions(block_rows=16)) as writer:
        writer.write(batch)
    return path


@pytest.fixture(scope="module")
def hwc_images():
    return np.random.default_rng(0).integers(0, 256, size=(NUM_ROWS, 6, 10, 3), dtype=np.uint8)  # (N, H, W, C)


@pytest.fixture(scope="module")
def chw_path(tmp_path_factory, hwc_images):
    return _write_images(tmp_path_factory.mktemp("chw") / "ds", np.ascontiguousarray(hwc_images.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def hwc_path(tmp_path_factory, hwc_images):
    return _write_images(tmp_path_factory.mktemp("hwc") / "ds", hwc_images)


def _torch_normalize(hwc: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(hwc).permute(0, 3, 1, 2).float() / 255  # (N, C, H, W)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_a_channels_first_column_is_refused_at_construction_naming_shape_layout_and_fix(chw_path):
    with pytest.raises(ConfigError) as caught:
        fastload.ArrayDataset(chw_path, {"image": fastload.NormalizeImage(MEAN, STD), "label": None})
    message = str(caught.value)
    assert "(3, 6, 10)" in message  # the shape found
    assert "height x width x channels (HWC)" in message and "(6, 10, 3)" in message  # the layout expected
    assert "layout='CHW'" in message and "transpose(1, 2, 0)" in message  # how to fix it


def test_a_channels_first_column_without_mean_and_std_is_refused_too(chw_path):
    """Without explicit statistics nothing would fail later either: the wrong axis would be normalised silently."""
    with pytest.raises(ConfigError, match=r"looks channels-first"):
        fastload.ArrayDataset(chw_path, {"image": fastload.NormalizeImage(), "label": None})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_layout_chw_reads_channels_first_images_as_torch_would_normalise_them(chw_path, hwc_images, num_workers):
    ds = fastload.ArrayDataset(chw_path, {"image": fastload.NormalizeImage(MEAN, STD, layout="CHW"), "label": None})
    seen = 0
    for batch in fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=num_workers):
        labels = batch["label"].numpy()
        assert batch["image"].shape == (32, 3, 6, 10)
        assert torch.equal(batch["image"], _torch_normalize(hwc_images[labels], MEAN, STD))
        seen += len(labels)
    assert seen == NUM_ROWS


def test_layout_chw_takes_the_per_channel_statistics_of_the_first_axis(chw_path, hwc_path):
    from_chw = fastload.ArrayDataset(chw_path, {"image": fastload.NormalizeImage(layout="CHW")})
    from_hwc = fastload.ArrayDataset(hwc_path, {"image": fastload.NormalizeImage()})
    assert np.allclose(from_chw.transforms["image"].mean, from_hwc.transforms["image"].mean)
    assert np.allclose(from_chw.transforms["image"].std, from_hwc.transforms["image"].std)
    ids = np.arange(20)
    assert np.array_equal(from_chw[ids]["image"], from_hwc[ids]["image"])


def test_a_mean_with_the_wrong_number_of_channels_is_refused_at_construction(hwc_path):
    with pytest.raises(ConfigError, match=r"mean has 2 values but column 'image' holds images of shape \(6, 10, 3\) with 3 channels"):
        fastload.ArrayDataset(hwc_path, {"image": fastload.NormalizeImage(mean=(0.5, 0.5), std=0.25)})


def test_layout_hwc_accepts_a_shape_that_only_looks_channels_first(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(8, 3, 2, 6), dtype=np.uint8)  # 3 x 2 pixels, 6 channels
    ds = fastload.ArrayDataset(_write_images(tmp_path / "ds", images), {"image": fastload.NormalizeImage(0.5, 0.25, layout="HWC")})
    assert ds[np.arange(8)]["image"].shape == (8, 6, 3, 2)


def test_an_unknown_layout_is_refused():
    with pytest.raises(ConfigError, match="layout must be one of HWC, CHW"):
        fastload.NormalizeImage(MEAN, STD, layout="NHWC")
