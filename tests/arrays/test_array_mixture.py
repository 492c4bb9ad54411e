"""Row mixtures: ArrayDataset and PaddedDataset of a Mixture, exact counts, blended statistics, checks by source name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastload
from fastload.arrays.mixture import mixture_statistics
from fastload.errors import ConfigError
from tests.packing.conftest import write_documents


def _images(path, n, value, shape=(4, 4, 3)):
    fastload.convert(({"image": np.full(shape, value + i % 3, np.uint8), "label": value} for i in range(n)), path, block_rows=8, quiet=True)


def test_an_array_mixture_gives_exact_counts_per_batch_and_each_row_from_its_source(tmp_path):
    _images(tmp_path / "a", 120, 10)
    _images(tmp_path / "b", 80, 100)
    mix = fastload.Mixture({"a": (tmp_path / "a", 3), "b": (tmp_path / "b", 1)})
    images = fastload.ArrayDataset(mix, {"image": None, "label": None})
    zero = [dict(b) for b in fastload.DataLoader(images, batch_size=8, num_workers=0, shuffle=True)]
    two = [{k: v.clone() for k, v in b.items()} for b in fastload.DataLoader(images, batch_size=8, num_workers=2, shuffle=True)]
    assert len(zero) == len(two) > 5
    for a, b in zip(zero, two):
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert torch.bincount(a["source"], minlength=2).tolist() == [6, 2]
        assert torch.equal(a["label"], torch.where(a["source"] == 0, 10, 100))


def test_statistics_blend_the_sources_by_weight():
    stats = [{"x": {"mean": 0.0, "std": 1.0, "axis0": {"mean": [0.0, 2.0], "std": [1.0, 1.0]}}}, {"x": {"mean": 10.0, "std": 1.0}}]
    blended = mixture_statistics(stats, [0.5, 0.5])
    assert blended["x"]["mean"] == 5.0 and abs(blended["x"]["std"] - np.sqrt(26.0)) < 1e-12  # E[x^2] = 51, minus 25
    assert "axis0" not in blended["x"]  # one source did not record it


def test_standardize_in_a_mixture_uses_the_blend_and_shapes_must_agree(tmp_path):
    fastload.convert(({"x": np.float32(0.0 + (i % 2))} for i in range(64)), tmp_path / "low", quiet=True)
    fastload.convert(({"x": np.float32(10.0 + (i % 2))} for i in range(64)), tmp_path / "high", quiet=True)
    mix = fastload.Mixture({"low": (tmp_path / "low", 1), "high": (tmp_path / "high", 1)})
    data = fastload.ArrayDataset(mix, {"x": fastload.Standardize()})
    batch = next(iter(fastload.DataLoader(data, batch_size=16, num_workers=0)))
    assert abs(float(batch["x"].mean())) < 0.2 and 0.8 < float(batch["x"].std()) < 1.2  # one normalisation for both
    _images(tmp_path / "small", 40, 1, shape=(2, 2, 3))
    _images(tmp_path / "big", 40, 1)
    with pytest.raises(ConfigError, match="column 'image' is ndarray uint8 .* in mixture source 'big'"):
        fastload.ArrayDataset(fastload.Mixture({"small": (tmp_path / "small", 1), "big": (tmp_path / "big", 1)}), ["image"])


def test_a_padded_mixture(tmp_path):
    write_documents(tmp_path / "a", [[1, 2, 3]] * 40, block_rows=5)
    write_documents(tmp_path / "b", [[7, 8]] * 40, block_rows=5)
    mix = fastload.Mixture({"a": (tmp_path / "a", 1), "b": (tmp_path / "b", 1)})
    padded = fastload.PaddedDataset(mix, seq_len=4, eos_id=0)
    batch = next(iter(fastload.DataLoader(padded, batch_size=6, num_workers=0, shuffle=True)))
    assert torch.bincount(batch["source"]).tolist() == [3, 3]
    for row, s in zip(batch["input_ids"], batch["source"]):
        assert row[0].item() == (1 if s == 0 else 7)
