"""The epoch geometry's one home: rows and tokens cut the same way, and the batch-dataset contract's options."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.errors import ConfigError
from fastload.packing.plan import PackPlan
from fastload.sampler import SamplerOptions, plan_epoch
from tests.packing.conftest import write_documents
from fastload.sampler.geometry import EpochGeometry, live_blocks, partition_count


def test_rows_and_tokens_share_one_geometry():
    """Packing two-token documents into rows of seq_len + 1 = 2 tokens puts one document in each
    row: the packer then cuts the same blocks, partitions and windows as the row sampler."""
    rng = np.random.default_rng(0)
    block_rows = rng.integers(1, 9, 40)
    options = SamplerOptions(seed=4, window_blocks=3, num_partitions=5, drop_last=True)
    rows = plan_epoch(block_rows, options=options, epoch=2, global_batch_size=10)
    # Every document 2 tokens with seq_len 1: a packed row holds exactly one document.
    tokens = PackPlan(np.full(int(block_rows.sum()), 2), block_rows, seq_len=1, global_batch_size=10, options=options, epoch=2, add_eos=False)
    assert np.array_equal(rows.geometry.block_order, tokens.geometry.block_order)
    assert np.array_equal(rows.column_bounds, tokens.column_bounds)
    assert np.array_equal(rows.partition_starts * 2, tokens.partition_starts)
    assert rows.num_batches == tokens.num_batches
    # Windows inside the epoch's positions agree (tokens keep the dropped tail in their last window).
    inside = rows.window_starts[rows.window_starts < rows.num_positions]
    assert np.array_equal(inside * 2, tokens.window_starts[: len(inside)])


def test_wrapping_repeats_the_epoch_start_and_padding_does_not():
    units = np.array([3, 4, 2])
    options = SamplerOptions(order="sequential")
    wrapped = EpochGeometry(units, options=options, epoch=0, global_batch_size=4, drop=False, wrap=True)
    padded = EpochGeometry(units, options=options, epoch=0, global_batch_size=4, drop=False, wrap=False)
    dropped = EpochGeometry(units, options=options, epoch=0, global_batch_size=4, drop=True, wrap=True)
    assert (wrapped.num_batches, padded.num_batches, dropped.num_batches) == (3, 3, 2)
    assert wrapped.virtual_starts[-1] >= wrapped.num_positions == 12 and wrapped.window_starts[-1] == 12
    assert padded.virtual_starts[-1] == 9 and padded.window_starts[-1] == 9
    assert dropped.window_starts[-1] == 8


def test_partition_count_and_live_blocks():
    assert partition_count(SamplerOptions(), 10) == 10
    assert partition_count(SamplerOptions(), 1000) == 64
    assert partition_count(SamplerOptions(num_partitions=3), 1000) == 3
    assert partition_count(SamplerOptions(order="uniform"), 1000) == 1
    assert live_blocks(SamplerOptions(window_blocks=4), 1000) == 2 * 4 * 64
    # A reader sizes its cache for the shuffled order whatever the default order says.
    assert live_blocks(SamplerOptions(order="sequential", window_blocks=2, num_partitions=5), 1000) == 20


def test_batch_datasets_hold_one_sampling_option(tmp_path):
    packed_path = tmp_path / "docs"
    write_documents(packed_path, [[1, 2, 3]] * 40, block_rows=4)
    packed = fastload.PackedDataset(packed_path, seq_len=16, eos_id=0, sampling=SamplerOptions(seed=7, window_blocks=2))
    assert packed.sampler_options(shuffle=True).order == "block_window"
    assert packed.sampler_options(shuffle=True).seed == 7
    assert packed.sampler_options(shuffle=False).order == "sequential"
    assert packed.sampler_options(shuffle=True, drop_last=True).drop_last
    uniform = fastload.PackedDataset(packed_path, seq_len=16, eos_id=0, sampling=SamplerOptions(order="uniform"))
    assert uniform.sampler_options(shuffle=True).order == "uniform"
    with pytest.raises(ConfigError, match="sampling= takes a fastload.SamplerOptions"):
        fastload.PackedDataset(packed_path, seq_len=16, eos_id=0, sampling={"seed": 1})
    with pytest.raises(ConfigError, match="sampling= takes"):
        fastload.PaddedDataset(packed_path, seq_len=16, eos_id=0, sampling=3)


# -- the read order a remote dataset fetches along ------------------------------------------------


def _first_use(blocks_per_batch: list[np.ndarray], from_batch: int) -> dict[int, int]:
    first = {}
    for b in range(from_batch, len(blocks_per_batch)):
        for block in blocks_per_batch[b].tolist():
            first.setdefault(block, b)
    return first


def _check_read_order(order: np.ndarray, blocks_per_batch: list[np.ndarray], from_batch: int) -> None:
    first = _first_use(blocks_per_batch, from_batch)
    assert len(np.unique(order)) == len(order), "each block once"
    assert set(order.tolist()) >= set(first), "every block a batch reads is in the order"
    used = [first[b] for b in order.tolist() if b in first]
    assert used == sorted(used), "blocks come in order of first use"


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("from_batch", [0, 3])
def test_read_order_of_packed_columns_is_every_block_they_read_in_order_of_first_use(world_size, from_batch):
    from fastload.packing.plan import PackPlan

    rng = np.random.default_rng(7)
    block_rows = rng.integers(3, 9, 40)
    doc_lengths = rng.integers(1, 300, int(block_rows.sum()))
    plan = PackPlan(doc_lengths, block_rows, seq_len=63, global_batch_size=8, options=SamplerOptions(seed=3, window_blocks=2, num_partitions=4), epoch=1)
    for rank in range(world_size):
        lo, hi = plan.rank_columns(rank, world_size)
        per_batch = []
        for b in range(plan.num_batches):
            windows = plan.column_runs(b, lo, hi)[0]
            per_batch.append(np.unique(np.concatenate([plan.blocks_of_window(w) for w in np.unique(windows[windows >= 0])])))
        _check_read_order(plan.geometry.blocks_in_read_order(lo, hi, from_batch), per_batch, from_batch)


@pytest.mark.parametrize("world_size", [1, 2])
def test_read_order_of_row_columns_is_every_block_they_read_in_order_of_first_use(world_size):
    from fastload.sampler.orders import plan_epoch

    block_rows = np.random.default_rng(1).integers(5, 20, 30)
    starts = np.concatenate([[0], np.cumsum(block_rows)])
    plan = plan_epoch(block_rows, options=SamplerOptions(seed=2, window_blocks=3, num_partitions=4), epoch=0, global_batch_size=16)
    geometry = plan.geometry
    for rank in range(world_size):
        lo, hi = plan.rank_columns(rank, world_size)
        order = geometry.blocks_in_read_order(lo, hi, 2)
        rows = [np.unique(np.searchsorted(starts, plan.rank_batch(b, rank, world_size), side="right") - 1) for b in range(plan.num_batches)]
        assert set(np.concatenate(rows[2:]).tolist()) <= set(order.tolist()), "every block a batch reads is in the order"
        # A window's rows are shuffled within it, so its blocks are all due from the first batch reaching into it.
        partitions, _, taken, offset = geometry.column_partitions(lo, hi)
        quota = np.diff(geometry.column_bounds)[partitions]
        windows = []
        for b in range(plan.num_batches):
            touched = [geometry.window_of(np.arange(s, s + n)) for s, n in zip(geometry.partition_starts[partitions] + offset + b * quota, taken)]
            windows.append(np.unique(np.concatenate([geometry.blocks_of_window(w) for w in np.unique(np.concatenate(touched))])))
        _check_read_order(order, windows, 2)
