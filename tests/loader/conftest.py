"""Datasets and comparison helpers shared by the loader tests."""

from __future__ import annotations

import collections

import numpy as np
import torch

Point = collections.namedtuple("Point", ["x", "y"])


class Shapes(torch.utils.data.Dataset):
    """Every kind of leaf and nesting default_collate handles."""

    def __init__(self, n: int = 61):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {
            "image": torch.full((3, 8, 8), i % 256, dtype=torch.uint8),
            "features": np.arange(i, i + 4, dtype=np.float32),
            "label": i % 7,
            "weight": i / 10,
            "name": f"item-{i}",
            "pair": (torch.tensor([i, -i]), np.int64(i)),
            "point": Point(torch.tensor(float(i)), [i, i + 1]),
            "half": torch.full((2,), i, dtype=torch.bfloat16),
        }


class Counting(torch.utils.data.IterableDataset):
    """An iterable dataset that shards itself across workers with get_worker_info()."""

    def __init__(self, n: int = 50, shard: bool = True):
        self.n, self.shard = n, shard

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        start, step = (info.id, info.num_workers) if (info is not None and self.shard) else (0, 1)
        for i in range(start, self.n, step):
            yield torch.tensor([i, i * i])


def assert_same(a, b, path="batch"):
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{tuple(a.shape)} != {b.dtype}{tuple(b.shape)}"
        assert torch.equal(a, b), f"{path}: values differ"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def run_both(make_loader, *, seed: int = 0, epochs: int = 1):
    """Batches from torch's DataLoader and fastload's, built by `make_loader(cls)` under the same seed."""
    import fastload

    results = []
    for cls in (torch.utils.data.DataLoader, fastload.DataLoader):
        torch.manual_seed(seed)
        loader = make_loader(cls)
        batches = []
        for _ in range(epochs):
            batches.append([_detach(b) for b in loader])
        results.append(batches)
    return results


def _detach(batch):
    """A deep copy, so a batch outlives its slot without holding it (and without a warning)."""
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, np.ndarray):
        return batch.copy()
    if isinstance(batch, dict):
        return type(batch)((k, _detach(v)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_detach(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_detach(v) for v in batch)
    return batch
