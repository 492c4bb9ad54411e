"""A `fastload.Dataset` with `shuffle=True` and no sampler: the locality-aware order, read through a
block cache sized to what that order has live, outside torch.distributed too."""

import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.format import Column, DatasetWriter, Schema, WriteOptions

LABELS = Schema((Column("label", "scalar", "int64"),))


def _labels(rows):
    return torch.tensor([r["label"] for r in rows])


def _ids(loader):
    return [batch.tolist() for batch in loader]


class CountingReads(fastload.Dataset):
    """Counts the blocks this process decodes (a cache miss is a read)."""

    reads = 0

    def read_block(self, block_id):
        self.reads += 1
        return super().read_block(block_id)


@pytest.fixture(scope="module")
def many_blocks(tmp_path_factory):
    """1,100 blocks of 3 rows: more blocks than the default order keeps live (2 x 8 x 64 = 1,024)."""
    path = tmp_path_factory.mktemp("many") / "ds"
    with DatasetWriter(path, LABELS, options=WriteOptions(block_rows=3, compression="lz4")) as writer:
        writer.write(pa.record_batch([pa.array(np.arange(3300, dtype=np.int64))], schema=LABELS.arrow_schema()))
    return path


def _sampler_batches(ds, batch_size, seed, **options):
    return [b.tolist() for b in fastload.Sampler(ds.block_rows, global_batch_size=batch_size, shuffle=True, seed=seed, **options).batches()]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffled_batches_are_a_fastload_samplers_with_a_seed_drawn_from_torch(small_dataset, num_workers):
    ds = fastload.Dataset(small_dataset)
    torch.manual_seed(3)
    loader = fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=num_workers, collate_fn=_labels)
    batches = _ids(loader)
    assert batches == _sampler_batches(ds, 32, loader.batch_sampler.seed)
    torch.manual_seed(3)  # torch's seed keeps deciding the order, as with torch's RandomSampler
    assert _ids(fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=num_workers, collate_fn=_labels)) == batches
    torch.manual_seed(4)
    assert _ids(fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=num_workers, collate_fn=_labels)) != batches
    # A loader's own generator decides it instead of the global RNG, as for torch's sampler.
    generator = torch.Generator().manual_seed(3)
    assert _ids(fastload.DataLoader(ds, batch_size=32, shuffle=True, num_workers=num_workers, collate_fn=_labels, generator=generator)) == batches


def test_epochs_differ_and_each_sees_every_row(small_dataset):
    loader = fastload.DataLoader(fastload.Dataset(small_dataset), batch_size=32, shuffle=True, collate_fn=_labels)
    first, second = _ids(loader), _ids(loader)
    assert first != second
    for epoch in (first, second):
        seen = [i for batch in epoch for i in batch]
        # 600 rows in 19 full batches: the last is completed with 8 rows repeated from the epoch's start.
        assert len(epoch) == 19 and len(seen) == 608 and set(seen) == set(range(600))


@pytest.mark.parametrize("workers_before, workers_after", [(0, 0), (2, 2), (0, 2)])
@pytest.mark.parametrize("epoch", [0, 1])
def test_resuming_mid_epoch_gives_exactly_the_remaining_batches(small_dataset, workers_before, workers_after, epoch):
    def make(num_workers):
        return fastload.DataLoader(fastload.Dataset(small_dataset), batch_size=16, shuffle=True, num_workers=num_workers, collate_fn=_labels)

    torch.manual_seed(7)
    reference = make(workers_before)
    expected = [_ids(reference) for _ in range(epoch + 1)][epoch]
    torch.manual_seed(7)
    first = make(workers_before)
    for _ in range(epoch):
        _ids(first)
    iterator = iter(first)
    head = [next(iterator).tolist() for _ in range(5)]
    state = first.state_dict()
    del iterator, first
    torch.manual_seed(999)  # whatever the training loop did since
    resumed = make(workers_after)
    resumed.load_state_dict(state)
    assert head + _ids(resumed) == expected


def test_each_block_is_read_once_per_partition_stream_with_the_fitted_cache(many_blocks):
    ds = CountingReads(many_blocks)
    loader = fastload.DataLoader(ds, batch_size=64, shuffle=True, collate_fn=_labels, drop_last=True)
    assert ds.cache_blocks == 2 * 8 * 64 < ds.num_blocks
    batches = _ids(loader)
    # The order reads a block once in each partition stream that reaches it: only the blocks a
    # partition boundary cuts are read twice (once at each end of the epoch).
    plan = fastload.Sampler(ds.block_rows, global_batch_size=64, shuffle=True, seed=loader.batch_sampler.seed, drop_last=True).plan()
    ids = np.asarray(batches)  # (num_batches, 64)
    bounds = plan.column_bounds
    per_stream = sum(len(np.unique(plan.block_of(ids[:, bounds[p] : bounds[p + 1]].ravel()))) for p in range(len(bounds) - 1))
    assert ds.reads == per_stream <= ds.num_blocks + 63

    small = CountingReads(many_blocks, cache_blocks=16)  # a size the user chose stays, and costs re-reads
    _ids(fastload.DataLoader(small, batch_size=64, shuffle=True, collate_fn=_labels, drop_last=True))
    assert small.cache_blocks == 16 and small.reads > 2 * ds.reads


def test_the_fitted_cache_size_reaches_the_workers_copy_and_a_chosen_one_is_kept(many_blocks):
    ds = fastload.Dataset(many_blocks)
    fastload.DataLoader(ds, batch_size=64, shuffle=True)
    assert ds.cache_blocks == 1024 and pickle.loads(pickle.dumps(ds)).cache_blocks == 1024
    chosen = fastload.Dataset(many_blocks, cache_blocks=100)
    fastload.DataLoader(chosen, batch_size=64, shuffle=True)
    assert chosen.cache_blocks == 100 and chosen.options()["cache_blocks"] == 100
    assert fastload.Dataset(many_blocks).options()["cache_blocks"] is None  # nothing sized it: it can still be fitted


def test_a_sampler_passed_by_hand_sizes_the_cache_for_its_own_windows(many_blocks):
    ds = fastload.Dataset(many_blocks)
    sampler = fastload.Sampler(ds.block_rows, global_batch_size=64, shuffle=True, window_blocks=2, num_partitions=16)
    fastload.DataLoader(ds, batch_sampler=sampler)
    assert ds.cache_blocks == 2 * 2 * 16 == sampler.live_blocks()


def test_storage_order_keeps_torchs_sampler_and_the_default_cache(many_blocks):
    ds = fastload.Dataset(many_blocks)
    loader = fastload.DataLoader(ds, batch_size=64, shuffle=False)
    assert isinstance(loader.sampler, torch.utils.data.SequentialSampler) and loader.batch_size == 64
    assert ds.cache_blocks == 16
