"""Workers that share each batch: every block is loaded once per epoch whatever the number of workers.

A dataset that computes whole batches and can write any rows of one
(`splits_rows`) is computed by all workers together, each its partitions'
rows of every batch, into the same slot. These tests count block loads in
every process (a shared counter per block, inherited through fork) and check
that the batches are those of one process.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.format import Column, DatasetWriter, Schema, WriteOptions
from tests.packing.conftest import distinct_documents, write_documents

EOS = 0
FORK = multiprocessing.get_context("fork")


class CountingDataset(fastload.Dataset):
    """A dataset that counts, in shared memory, how often each block is read by any process."""

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        self.loads = FORK.Array("i", self.num_blocks, lock=False)

    def read_block(self, block_id):
        self.loads[block_id] += 1
        return super().read_block(block_id)

    def take_loads(self) -> np.ndarray:
        counts = np.array(self.loads[:], np.int64)
        self.loads[:] = [0] * self.num_blocks
        return counts


@pytest.fixture(scope="module")
def tokens_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared") / "ds"
    write_documents(path, distinct_documents(np.random.default_rng(3), 3000, 60), block_rows=25)  # 120 blocks
    return path


@pytest.fixture(scope="module")
def arrays_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared_arrays") / "ds"
    schema = Schema((Column("x", "ndarray", "float32", (3, 4)), Column("y", "scalar", "int64")))
    n = 1280
    x = np.random.default_rng(0).standard_normal((n, 12)).astype(np.float32)
    batch = pa.record_batch([pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 12), pa.array(np.arange(n, dtype=np.int64))], schema=schema.arrow_schema())
    with DatasetWriter(path, schema, options=WriteOptions(block_rows=16)) as writer:  # 80 blocks
        writer.write(batch)
    return path


def _epoch(dataset, *, num_workers, batch_size=16, **kwargs) -> list[dict]:
    loader = fastload.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, multiprocessing_context=FORK if num_workers else None, **kwargs)
    return [{k: v.clone() for k, v in batch.items()} for batch in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["packed", "padded"])
def test_each_block_is_loaded_about_as_often_with_any_number_of_workers_as_with_none(tokens_path, kind):
    counting = CountingDataset(tokens_path)
    make = {
        "packed": lambda: fastload.PackedDataset(counting, seq_len=31, eos_id=EOS),
        "padded": lambda: fastload.PaddedDataset(counting, seq_len=31, eos_id=EOS),
    }[kind]
    serial = _epoch(make(), num_workers=0)
    alone = counting.take_loads()
    assert alone.sum() > 0
    # Once per block, but for blocks a partition boundary cuts (their head and tail are read apart).
    assert alone.max() <= 2 and alone.sum() <= counting.num_blocks + 64
    for workers in (1, 2, 4):
        batches = _epoch(make(), num_workers=workers)
        loads = counting.take_loads()
        assert _same(batches, serial), workers
        # A cut between two workers may fall inside a block (at a partition boundary): both read it.
        # Rows (padded) also complete the last batch from the epoch's first blocks: one more.
        assert alone.sum() <= loads.sum() <= alone.sum() + workers, (workers, loads.sum(), alone.sum())


def test_array_batches_are_shared_and_each_block_loaded_once(arrays_path):
    arrays = fastload.ArrayDataset(arrays_path)
    options = arrays.dataset.options()  # it opens its own dataset, its cache sized to the live window

    def epoch(workers):
        arrays.dataset = counting = CountingDataset(arrays_path, **options)  # nothing cached, in this process or the workers it forks
        return _epoch(arrays, num_workers=workers, drop_last=True), counting.take_loads()

    serial, loads = epoch(0)
    assert (loads == 1).all()
    for workers in (2, 4):
        batches, loads = epoch(workers)
        assert _same(batches, serial)
        assert loads.min() == 1 and loads.sum() <= len(loads) + workers - 1  # a cut inside a block: read by both


def test_the_workers_rows_tile_each_batch_at_partition_boundaries(tokens_path):
    packed = fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS)
    sampler = packed.batch_sampler(16)
    for workers in (2, 3, 4):
        rows = sampler.worker_rows(workers)
        assert rows[0][0] == 0 and rows[-1][1] == 16 and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
        bounds = set(sampler.packed.plan(0, 16, sampler.options).column_bounds.tolist())
        assert all(lo in bounds for lo, _ in rows)


def test_resume_mid_epoch_with_shared_batches_continues_exactly(tokens_path):
    packed = fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS)
    reference = _epoch(packed, num_workers=0)
    loader = fastload.DataLoader(packed, batch_size=16, shuffle=True, num_workers=2)
    it = iter(loader)
    for _ in range(7):
        next(it)
    state = loader.state_dict()
    del it
    resumed = fastload.DataLoader(fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS), batch_size=16, shuffle=True, num_workers=2)
    resumed.load_state_dict(state)
    rest = [{k: v.clone() for k, v in batch.items()} for batch in resumed]
    assert _same(rest, reference[7:])


class _FailsInSecondHalf(fastload.PackedDataset):
    """Fails in the rows [8, 16) of batch 5 only: one worker's share of it."""

    def __fastload_batch__(self, key, allocate, rows=None):
        if key.batch == 5 and rows is not None and rows[0] >= 8:
            raise ValueError("the second half of batch 5 is cursed")
        return super().__fastload_batch__(key, allocate, rows=rows)


def test_an_error_in_one_share_is_the_error_of_its_batch_in_order(tokens_path):
    reference = _epoch(fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS), num_workers=0)
    loader = fastload.DataLoader(_FailsInSecondHalf(tokens_path, seq_len=31, eos_id=EOS), batch_size=16, shuffle=True, num_workers=2)
    got = []
    with pytest.raises(ValueError, match="second half of batch 5"):
        for batch in loader:
            got.append({k: v.clone() for k, v in batch.items()})
    assert _same(got, reference[:5])


def test_batches_the_loop_keeps_send_the_next_one_whole_to_one_worker(tokens_path):
    packed = fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS)
    reference = _epoch(packed, num_workers=0)
    loader = fastload.DataLoader(packed, batch_size=16, shuffle=True, num_workers=2, prefetch_factor=1)
    with pytest.warns(RuntimeWarning, match="holds every one"):
        kept = list(loader)  # every batch kept: the slots run out, and later batches bring their own segments
    assert _same(kept, reference)


def test_a_subclass_that_overrides_the_batch_without_rows_still_works_whole(tokens_path):
    class OldStyle(fastload.PackedDataset):
        def __fastload_batch__(self, key, allocate):
            return super().__fastload_batch__(key, allocate)

    reference = _epoch(fastload.PackedDataset(tokens_path, seq_len=31, eos_id=EOS), num_workers=0)
    assert _same(_epoch(OldStyle(tokens_path, seq_len=31, eos_id=EOS), num_workers=2), reference)


def test_a_packed_mixture_is_shared_too(tokens_path, tmp_path, monkeypatch):
    other = tmp_path / "other"
    write_documents(other, distinct_documents(np.random.default_rng(5), 800, 40), block_rows=20)
    mixture = fastload.Mixture({"a": (str(tokens_path), 0.7), "b": (str(other), 0.3)})
    loads = FORK.Value("i", 0)  # block reads by any process, through every source's dataset
    read_block = fastload.Dataset.read_block

    def counting(self, block_id):
        with loads.get_lock():
            loads.value += 1
        return read_block(self, block_id)

    monkeypatch.setattr(fastload.Dataset, "read_block", counting)
    serial = _epoch(fastload.PackedDataset(mixture, seq_len=31, eos_id=EOS), num_workers=0)
    alone, loads.value = loads.value, 0
    shared = _epoch(fastload.PackedDataset(mixture, seq_len=31, eos_id=EOS), num_workers=2)
    assert _same(shared, serial)
    # A mixture's rows are cut evenly (its lanes interleave sources), not at every source's partition
    # boundaries: a few more blocks are read by both workers, far from twice as many (whole batches).
    assert alone <= loads.value <= 1.25 * alone, (loads.value, alone)
