"""The sampler's promises, as properties over random layouts, seeds, world sizes and stop points."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload import ConfigError
from fastload.sampler import Sampler, SamplerOptions, plan_epoch
from fastload.sampler.metrics import io_amplification, rank_blocks

layouts = st.lists(st.integers(1, 60), min_size=1, max_size=40).map(lambda rows: np.asarray(rows, np.int64))
orders = st.sampled_from(["block_window", "uniform", "sequential"])


def _epoch(plan):
    return np.concatenate([plan.global_batch(b) for b in range(plan.num_batches)]) if plan.num_batches else np.zeros(0, np.int64)


@settings(max_examples=150, deadline=None)
@given(rows=layouts, order=orders, seed=st.integers(0, 2**32), epoch=st.integers(0, 5), batch=st.integers(1, 48),
       window=st.integers(1, 6), partitions=st.one_of(st.none(), st.integers(1, 20)), drop_last=st.booleans())
def test_every_sample_appears_exactly_once_per_epoch_or_as_documented_for_padding(rows, order, seed, epoch, batch, window, partitions, drop_last):
    options = SamplerOptions(order=order, seed=seed, window_blocks=window, num_partitions=partitions, drop_last=drop_last)
    plan = plan_epoch(rows, options=options, epoch=epoch, global_batch_size=batch)
    ids = _epoch(plan)
    n = int(rows.sum())
    assert len(ids) == plan.num_batches * batch
    counts = np.bincount(ids, minlength=n)
    if drop_last:
        assert plan.num_batches == n // batch
        assert counts.max(initial=0) <= 1  # each sample at most once; the tail of the epoch's order is dropped
        assert n - counts.sum() < batch
    else:
        assert plan.num_batches == -(-n // batch)
        assert counts.min() >= 1  # everything at least once
        extra = counts.sum() - n
        assert extra < batch and counts.max() <= 1 + -(-extra // n)  # padding repeats samples, fewer than one batch


@settings(max_examples=100, deadline=None)
@given(rows=layouts, order=orders, seed=st.integers(0, 1000), batch_per_rank=st.integers(1, 8), world=st.sampled_from([1, 2, 3, 4, 6]))
def test_ranks_get_disjoint_equal_shares_that_concatenate_to_the_global_batch(rows, order, seed, batch_per_rank, world):
    batch = batch_per_rank * world
    samplers = [Sampler(rows, global_batch_size=batch, rank=r, world_size=world, order=order, seed=seed, drop_last=True) for r in range(world)]
    lengths = {len(s) for s in samplers}
    assert len(lengths) == 1  # same number of batches on every rank: no DDP hang
    single = plan_epoch(rows, options=SamplerOptions(order=order, seed=seed, drop_last=True), epoch=0, global_batch_size=batch)
    for b, shares in enumerate(zip(*[list(s) for s in samplers])):
        assert all(len(share) == batch_per_rank for share in shares)
        joined = np.concatenate(shares)
        assert joined.tolist() == single.global_batch(b).tolist()  # same order for any world size
        assert len(set(joined.tolist())) == batch  # the shares are disjoint



@settings(max_examples=100, deadline=None)
@given(rows=layouts, order=orders, seed=st.integers(0, 1000), batch_per_rank=st.integers(1, 9), world=st.sampled_from([1, 2, 3]),
       window=st.integers(1, 6), drop_last=st.booleans(), at_once=st.integers(1, 20))
def test_batches_computed_several_at_once_equal_the_samples_at_their_positions(rows, order, seed, batch_per_rank, world, window, drop_last, at_once):
    """`rank_batches` (what iterating a sampler uses) against `samples` (a position at a time, another code path)."""
    batch = batch_per_rank * world
    plan = plan_epoch(rows, options=SamplerOptions(order=order, seed=seed, window_blocks=window, drop_last=drop_last), epoch=seed % 3, global_batch_size=batch)
    for rank in range(world):
        lo, hi = plan.rank_columns(rank, world)
        for first in range(0, plan.num_batches, at_once):
            count = min(at_once, plan.num_batches - first)
            got = plan.rank_batches(first, count, rank, world)
            assert got.dtype == np.int64 and got.shape == (count, hi - lo)
            for i in range(count):
                b = first + i
                assert got[i].tolist() == plan.samples(b * batch + lo, b * batch + hi).tolist()
    with pytest.raises(IndexError):
        plan.rank_batches(plan.num_batches, 1, 0, world)

@settings(max_examples=100, deadline=None)
@given(rows=layouts, order=orders, seed=st.integers(0, 1000), world_before=st.sampled_from([1, 2, 4]), world_after=st.sampled_from([1, 2, 4]),
       stop=st.integers(0, 30), epoch=st.integers(0, 3))
def test_resuming_from_any_point_with_any_world_size_yields_exactly_the_remaining_sequence(rows, order, seed, world_before, world_after, stop, epoch):
    batch = 8
    before = Sampler(rows, global_batch_size=batch, rank=0, world_size=world_before, order=order, seed=seed)
    before.set_epoch(epoch)
    taken = 0
    for _ in before:
        taken += 1
        if taken >= stop:
            break
    else:
        taken = 0  # the epoch was exhausted: the sampler moved on to the next epoch by itself
    state = before.state_dict(batches_done=taken)
    # (when the epoch ended before the stop point, the state points at the start of the next epoch)
    full = plan_epoch(rows, options=SamplerOptions(order=order, seed=seed), epoch=state["epoch"], global_batch_size=batch)
    rest = []
    for r in range(world_after):
        after = Sampler(rows, global_batch_size=batch, rank=r, world_size=world_after, order=order, seed=seed)
        after.load_state_dict(state)
        rest.append(list(after.batches()))
    resumed = [np.concatenate(parts).tolist() for parts in zip(*rest)]
    expected = [full.global_batch(b).tolist() for b in range(state["samples_consumed"] // batch, full.num_batches)]
    assert resumed == expected


@given(rows=layouts, seed=st.integers(0, 1000))
@settings(max_examples=50, deadline=None)
def test_epochs_differ_and_the_same_seed_gives_the_same_order(rows, seed):
    if rows.sum() < 20:
        return
    a0 = _epoch(plan_epoch(rows, options=SamplerOptions(seed=seed), epoch=0, global_batch_size=4))
    again = _epoch(plan_epoch(rows, options=SamplerOptions(seed=seed), epoch=0, global_batch_size=4))
    a1 = _epoch(plan_epoch(rows, options=SamplerOptions(seed=seed), epoch=1, global_batch_size=4))
    assert a0.tolist() == again.tolist()
    assert a0.tolist() != a1.tolist()


def test_the_same_seed_gives_the_same_order_in_another_process():
    import subprocess
    import sys

    code = (
        "import numpy as np\nfrom fastload.sampler import plan_epoch, SamplerOptions\n"
        "p = plan_epoch(np.arange(1, 30), options=SamplerOptions(seed=7), epoch=3, global_batch_size=16)\n"
        "print(p.global_batch(5).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    here = plan_epoch(np.arange(1, 30), options=SamplerOptions(seed=7), epoch=3, global_batch_size=16).global_batch(5).tolist()
    assert out.strip() == str(here)


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_each_rank_reads_about_one_world_th_of_the_blocks_when_the_world_divides_the_partitions(world):
    rows = np.random.default_rng(0).integers(100, 300, size=256)
    plan = plan_epoch(rows, options=SamplerOptions(num_partitions=8), epoch=0, global_batch_size=64)
    per_rank, total = io_amplification(plan, rows, world)
    one_block = rows.max() / rows.sum()
    # Only blocks cut by a partition boundary (7) and the one that padding wraps around to are read twice.
    assert total <= 1 + 8 * one_block
    assert max(per_rank) <= 1 / world + 2 * one_block
    blocks = [set(rank_blocks(plan, r, world).tolist()) for r in range(world)]
    shared = sum(len(a & b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert shared <= 8


def test_world_sizes_outside_the_partition_set_keep_the_order_and_read_a_little_more():
    rows = np.full(240, 100)
    plan = plan_epoch(rows, options=SamplerOptions(num_partitions=8), epoch=0, global_batch_size=48)
    per_rank, total = io_amplification(plan, rows, 3)
    assert 1.0 < total < 1.5


def test_each_block_is_read_once_per_partition_stream_within_a_bounded_window():
    rows = np.full(64, 50)
    plan = plan_epoch(rows, options=SamplerOptions(num_partitions=4, window_blocks=3), epoch=2, global_batch_size=16)
    bounds = plan.column_bounds
    for p in range(4):
        columns = np.arange(bounds[p], bounds[p + 1])
        stream = np.concatenate([plan.samples(b * 16 + columns[0], b * 16 + columns[-1] + 1) for b in range(plan.num_batches)])
        blocks = plan.block_of(stream)
        # Once a block is left behind it never comes back, and at most 2 windows' worth of blocks are open at a time.
        last_seen = {blk: i for i, blk in enumerate(blocks)}
        first_seen = {}
        for i, blk in enumerate(blocks):
            first_seen.setdefault(blk, i)
        live = np.zeros(len(blocks), int)
        for blk in first_seen:
            live[first_seen[blk] : last_seen[blk] + 1] += 1
        assert live.max() <= 2 * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(window_blocks=0), "window_blocks must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(order="random"), "valid orders are block_window, uniform, sequential"),
        (dict(num_partitions=0), "num_partitions must be a positive integer"),
    ],
)
def test_bad_options_raise_config_error_saying_what_to_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplerOptions(**kwargs)


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused():
    with pytest.raises(ConfigError, match="world size 3 does not divide the global batch size 16.*e.g. 18"):
        Sampler(np.full(4, 10), global_batch_size=16, rank=0, world_size=3)


def test_resuming_with_another_seed_or_batch_size_is_refused():
    sampler = Sampler(np.full(4, 10), global_batch_size=8, seed=1)
    state = sampler.state_dict(batches_done=1)
    with pytest.raises(ConfigError, match="differs in seed 1"):
        Sampler(np.full(4, 10), global_batch_size=8, seed=2).load_state_dict(state)
    with pytest.raises(ConfigError, match="num_blocks 4 \\(now 5\\)"):
        Sampler(np.full(5, 8), global_batch_size=8, seed=1).load_state_dict(state)
    with pytest.raises(ConfigError, match="num_partitions"):
        Sampler(np.full(4, 10), global_batch_size=8, seed=1, num_partitions=2).load_state_dict(state)


def test_a_billion_sample_epoch_plans_without_materialising_the_samples():
    rows = np.full(100_000, 10_000)
    plan = plan_epoch(rows, options=SamplerOptions(), epoch=0, global_batch_size=1024)
    assert plan.num_samples == 10**9
    batch = plan.rank_batch(123_456, 3, 8)
    assert len(batch) == 128 and len(np.unique(batch)) == 128 and batch.max() < 10**9


@settings(max_examples=100, deadline=None)
@given(rows=layouts, batch_per_rank=st.integers(1, 24), world=st.sampled_from([1, 2, 4]), workers=st.integers(1, 5), partitions=st.integers(1, 16))
def test_worker_columns_tile_the_rank_share_whatever_the_number_of_workers(rows, batch_per_rank, world, workers, partitions):
    batch = batch_per_rank * world
    plan = plan_epoch(rows, options=SamplerOptions(num_partitions=partitions), epoch=0, global_batch_size=batch)
    for rank in range(world):
        columns = plan.worker_columns(rank, world, workers)
        assert len(columns) == workers
        lo, hi = plan.rank_columns(rank, world)
        assert columns[0][0] == lo and columns[-1][1] == hi
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(columns, columns[1:]))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_that_own_whole_partitions_read_each_block_once_per_rank(workers):
    from fastload.sampler.metrics import worker_reads

    rows = np.full(128, 200)
    plan = plan_epoch(rows, options=SamplerOptions(num_partitions=16), epoch=0, global_batch_size=64)
    for rank in range(2):
        # 8 partitions per rank; only blocks cut at partition boundaries can be read by two workers
        assert worker_reads(plan, rank, 2, workers) <= 1 + workers / (128 / 2)


def test_torch_style_shuffle_flag_picks_block_window_or_sequential():
    rows = np.full(8, 10)
    assert Sampler(rows, global_batch_size=4, shuffle=True).options.order == "block_window"
    sequential = Sampler(rows, global_batch_size=4, shuffle=False)
    assert sequential.options.order == "sequential" and next(iter(sequential)) == [0, 1, 2, 3]
    assert next(iter(sequential)) == [0, 1, 2, 3]  # iterating again starts over, as torch's samplers do
    with pytest.raises(ConfigError, match="shuffle= .* or order="):
        Sampler(rows, global_batch_size=4, shuffle=True, order="uniform")


def test_the_registry_of_orders_names_exactly_the_implemented_orders():
    from fastload.sampler import options, orders

    assert set(options.ORDERS) == set(orders.ORDERS)


def test_a_sampler_state_whose_version_is_not_an_integer_is_refused():
    sampler = Sampler(np.full(10, 8), global_batch_size=4, shuffle=True)
    state = sampler.state_dict()
    state["version"] = "1"
    with pytest.raises(ConfigError, match="'version' must be an integer"):
        Sampler(np.full(10, 8), global_batch_size=4, shuffle=True).load_state_dict(state)


def test_live_blocks_counts_two_windows_of_each_partition_the_rank_serves():
    rows = np.full(2000, 10)
    assert Sampler(rows, global_batch_size=256, shuffle=True).live_blocks() == 2 * 8 * 64
    assert Sampler(rows, global_batch_size=256, shuffle=True, window_blocks=2, num_partitions=8, rank=1, world_size=4).live_blocks() == 2 * 2 * 2
    assert Sampler(rows, global_batch_size=16, shuffle=True).live_blocks() == 2 * 8 * 16  # 16 columns: 16 partitions read
    assert Sampler(rows[:40], global_batch_size=16, shuffle=True).live_blocks() == 40  # never more than the dataset
    assert Sampler(rows, global_batch_size=16, order="uniform").live_blocks() == 2000
    assert Sampler(rows, global_batch_size=16, shuffle=False).live_blocks() == 2 * 8
