"""ArrayDataset: gathered rows equal the stored ones, transforms equal torch's ops, through the loader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.errors import ConfigError
from fastload.format import Column, DatasetWriter, Schema, WriteOptions

SCHEMA = Schema(
    (
        Column("image", "ndarray", "uint8", (6, 5, 3)),
        Column("features", "ndarray", "float32", (4,)),
        Column("label", "scalar", "int64"),
        Column("text", "text", "utf8"),
    )
)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def arrays_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 500
    images = rng.integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8)
    features = (rng.normal(size=(n, 4)) * [1, 10, 100, 0.1] + [0, 5, -3, 1]).astype(np.float32)
    path = tmp_path_factory.mktemp("arrays") / "ds"
    batch = pa.record_batch(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), 90),
            pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), 4),
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array([f"row {i}" for i in range(n)]),
        ],
        schema=SCHEMA.arrow_schema(),
    )
    with DatasetWriter(path, SCHEMA, options=WriteOptions(block_rows=40)) as writer:
        writer.write(batch)
    return path, images, features


def test_raw_columns_are_the_stored_rows_in_sampler_order(arrays_path):
    path, images, features = arrays_path
    ds = fastload.ArrayDataset(path)
    assert set(ds.transforms) == {"image", "features", "label"}  # text is not fixed-shape
    ids = [7, 499, 0, 123, 45, 46, 300]
    batch = ds[ids]
    assert np.array_equal(batch["image"], images[ids])
    assert np.array_equal(batch["features"], features[ids])
    assert batch["label"].tolist() == ids
    assert np.array_equal(ds[-1]["image"], images[-1])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_normalize_image_equals_torch(arrays_path, dtype):
    path, images, _ = arrays_path
    ds = fastload.ArrayDataset(path, {"image": fastload.NormalizeImage(MEAN, STD, dtype=dtype), "label": None})
    loader = fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
    torch_dtype = getattr(torch, dtype)
    seen = set()
    for batch in loader:
        labels = batch["label"]
        assert batch["image"].dtype == torch_dtype and batch["image"].shape == (len(labels), 3, 6, 5)
        x = torch.from_numpy(images[labels.numpy()]).permute(0, 3, 1, 2).float() / 255
        expected = ((x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]).to(torch_dtype)
        assert torch.equal(batch["image"], expected)
        seen |= set(labels.tolist())
    assert seen == set(range(500))  # the last batch is completed with rows from the start (drop_last=False)


def test_standardize_uses_the_recorded_statistics(arrays_path):
    path, _, features = arrays_path
    ds = fastload.ArrayDataset(path, {"features": fastload.Standardize(), "label": None})
    stats = fastload.Dataset(path).stats["features"]["axis0"]
    batch = ds[np.arange(500)]
    expected = (features.astype(np.float64) - np.array(stats["mean"])) / np.array(stats["std"])
    np.testing.assert_allclose(batch["features"], expected, rtol=1e-6, atol=1e-6)
    assert abs(batch["features"].mean()) < 1e-5 and np.allclose(batch["features"].std(axis=0), 1, atol=1e-4)


def test_the_loader_is_the_same_for_any_number_of_workers_and_resumes(arrays_path):
    path, _, _ = arrays_path
    def make(workers):
        ds = fastload.ArrayDataset(path, {"image": fastload.NormalizeImage(MEAN, STD), "label": None})
        return fastload.DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers)
    serial = [{k: v.clone() for k, v in b.items()} for b in make(0)]
    parallel = [{k: v.clone() for k, v in b.items()} for b in make(2)]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(serial, parallel) for k in a) and len(serial) == len(parallel)
    loader = make(2)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = loader.state_dict()
    del it
    resumed = make(0)
    resumed.load_state_dict(state)
    rest = [b["label"].clone() for b in resumed]
    assert [r.tolist() for r in rest] == [b["label"].tolist() for b in serial[4:]]


def test_bad_columns_and_transforms_are_refused(arrays_path):
    path, _, _ = arrays_path
    with pytest.raises(ConfigError, match="fixed-shape"):
        fastload.ArrayDataset(path, ["text"])
    with pytest.raises(ConfigError, match="no column"):
        fastload.ArrayDataset(path, ["nope"])
    with pytest.raises(ConfigError, match="uint8 ndarray"):
        fastload.ArrayDataset(path, {"features": fastload.NormalizeImage(MEAN, STD)})
    with pytest.raises(ConfigError, match="dtype"):
        fastload.NormalizeImage(MEAN, STD, dtype="int8")
