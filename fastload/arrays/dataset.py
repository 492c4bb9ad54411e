"""`ArrayDataset`: batches of fixed-shape columns (images, features, labels), gathered and normalised by kernels.

    images = fastload.ArrayDataset("data/images", columns={
        "image": fastload.NormalizeImage(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), dtype="bfloat16"),
        "label": None,                        # as stored
        "features": fastload.Standardize(),   # mean/std from the dataset's statistics
    })
    loader = fastload.DataLoader(images, batch_size=64, num_workers=2, shuffle=True)
    for batch in loader:   # image (64, 3, H, W) bfloat16, label (64,), features (64, F) float32
        ...

With `fastload.DataLoader` a batch is computed whole in a worker: the rows
a `fastload.Sampler` picks are gathered from their blocks with numpy
fancy indexing (no per-row Python), and each column is written into the
batch's shared-memory slot — raw values straight there, transformed ones
through one kernel call per column. Null values read as 0. Variable-length
columns (tokens, text, bytes) belong to `PackedDataset`/`PaddedDataset`.

It is also a map-style dataset: `ds[i]` is one row (a dict of arrays),
`ds[[i, j, ...]]` a batch.
"""

from __future__ import annotations

import os

import numpy as np

from fastload.arrays.transforms import resolve_transform
from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.packing.rows import row_number
from fastload.sampler import Mixture, Sampler, SamplerOptions
from fastload.sampler.batch_dataset import BatchDataset

__all__ = ["ArrayDataset"]

FIXED_KINDS = ("scalar", "ndarray")


class ArrayDataset(BatchDataset):
    """Fixed-shape columns of a fastload dataset, as batches of arrays.

    dataset: a `fastload.Dataset` or the path of one.
    columns: {name: transform or None}, or a list of names (raw values), or
        None for every scalar and ndarray column.
    sampling: the shuffle, a `fastload.SamplerOptions` (seed, window_blocks, num_partitions).
    statistics: where transforms without mean/std find them (default: the
        dataset's own, recorded at conversion).

    A `fastload.Mixture` in place of the dataset makes a mixture of array
    datasets (see `arrays/mixture.py`).
    """

    def __new__(cls, dataset=None, *args, **kwargs):
        if isinstance(dataset, Mixture):
            from fastload.arrays.mixture import array_mixture

            return array_mixture(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, dataset: Dataset | str | os.PathLike, columns=None, *, sampling: SamplerOptions | None = None, statistics: dict | None = None):
        super().__init__(sampling)
        opened = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        # The blocks the shuffled order has live stay decoded (and the next one or two being opened).
        self.dataset = Dataset(opened.path, **{**opened.options(), "cache_blocks": self.live_blocks(opened.num_blocks) + 2})
        schema = self.dataset.schema
        if columns is None:
            columns = {c.name: None for c in schema if c.kind in FIXED_KINDS}
        elif not isinstance(columns, dict):
            columns = {name: None for name in columns}
        if not columns:
            raise ConfigError(f"{self.dataset!r} has no scalar or ndarray column to batch")
        self.transforms = {}
        for name, transform in columns.items():
            if name not in schema.names:
                raise ConfigError(f"{self.dataset!r} has no column {name!r}; its columns are {', '.join(schema.names)}")
            column = schema[name]
            if column.kind not in FIXED_KINDS:
                raise ConfigError(
                    f"column {name!r} is of kind {column.kind!r}: ArrayDataset batches fixed-shape columns (scalar, ndarray); "
                    "pack tokens with PackedDataset or PaddedDataset"
                )
            self.transforms[name] = resolve_transform(transform, column, self.dataset.stats if statistics is None else statistics)
        self._scratch: dict[str, np.ndarray] = {}

    @property
    def tensor_dtypes(self) -> dict[str, str]:
        """Columns whose arrays torch must view as another dtype: bfloat16 travels as uint16 bits."""
        return {name: "bfloat16" for name, t in self.transforms.items() if t is not None and t.dtype == "bfloat16"}

    def output(self, name: str) -> tuple[tuple, np.dtype]:
        """(shape of one row, dtype) of column `name` in a batch."""
        column, transform = self.dataset.schema[name], self.transforms[name]
        return transform.output(column) if transform is not None else (column.shape, np.dtype(column.numpy_dtype))

    def batch_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False) -> Sampler:
        """The sampler `fastload.DataLoader` uses: a `fastload.Sampler` over rows."""
        options = self.sampler_options(shuffle=shuffle, drop_last=drop_last)
        return Sampler(self.dataset.block_rows, global_batch_size=global_batch_size, rank=rank, world_size=world_size, options=options)

    def _gather(self, name: str, ids: np.ndarray, block_of: np.ndarray, blocks: list, out: np.ndarray) -> None:
        """Rows `ids` of column `name`, in order, into `out` (one fancy-indexed copy per block)."""
        starts = self.dataset.block_starts
        if len(blocks) == 1:
            view = self.dataset.block(blocks[0]).columns[name]
            np.take(view, ids - starts[blocks[0]], axis=0, out=out)
            return
        for block_id in blocks:
            mine = np.flatnonzero(block_of == block_id)
            out[mine] = self.dataset.block(block_id).columns[name][ids[mine] - starts[block_id]]

    def __fastload_batch__(self, sample_ids, allocate, rows: tuple[int, int] | None = None) -> dict:
        """The rows `sample_ids` as a dict of arrays from `allocate(shape, dtype)`; with
        `rows=(lo, hi)` only those rows are written (see `BatchDataset`)."""
        ids = np.asarray(sample_ids, np.int64).reshape(-1)
        count = len(ids)
        first, last = (0, count) if rows is None else rows
        ids = ids[first:last]
        if len(ids) and (ids.min() < 0 or ids.max() >= self.dataset.num_rows):
            raise IndexError(f"row ids must be in [0, {self.dataset.num_rows:,})")
        block_of = np.searchsorted(self.dataset.block_starts, ids, side="right") - 1
        blocks = np.unique(block_of).tolist()
        batch = {}
        for name, transform in self.transforms.items():
            shape, dtype = self.output(name)
            batch[name] = whole = allocate((count, *shape), dtype)
            out = whole[first:last]  # no rows (how the loader sizes slots) still runs the transforms' kernels, loading them once
            if transform is None:
                self._gather(name, ids, block_of, blocks, out)
            else:
                column = self.dataset.schema[name]
                raw = self._scratch_for(name, (len(ids), *column.shape), np.dtype(column.numpy_dtype))
                self._gather(name, ids, block_of, blocks, raw)
                transform.apply(raw, out)
        return batch

    def _scratch_for(self, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        scratch = self._scratch.get(name)
        if scratch is None or scratch.shape != shape:
            scratch = self._scratch[name] = np.empty(shape, dtype)
        return scratch

    def __len__(self) -> int:
        return self.dataset.num_rows

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            batch = self.__fastload_batch__([row_number(index, len(self), "rows")], np.empty)
            return {name: array[0] for name, array in batch.items()}
        return self.__fastload_batch__(index, np.empty)

    def __repr__(self) -> str:
        columns = ", ".join(f"{name}: {type(t).__name__ if t is not None else 'raw'}" for name, t in self.transforms.items())
        return f"ArrayDataset({str(self.dataset.path)!r}, columns=[{columns}])"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scratch": {}}
