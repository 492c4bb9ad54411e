"""PackPlan: which document tokens fill which rows — exact, deterministic, local."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.errors import ConfigError
from fastload.packing import PackPlan
from fastload.sampler import SamplerOptions


def _plan(lengths, block_rows, *, order="block_window", seq_len=7, batch=4, epoch=0, remainder="drop", add_eos=True, blocks=None, **options):
    return PackPlan(
        np.asarray(lengths), np.asarray(block_rows), seq_len=seq_len, global_batch_size=batch,
        options=SamplerOptions(order=order, **options), epoch=epoch, add_eos=add_eos, remainder=remainder, blocks=blocks,
    )


def _delivered(plan: PackPlan, world_size: int = 1) -> list[tuple[int, int]]:
    """(document, token position) of every stream token the epoch's batches deliver, padding left out."""
    out = []
    for b in range(plan.num_batches):
        for rank in range(world_size):
            windows, begin, end, _ = plan.rank_runs(b, rank, world_size)
            for w, x, e in zip(windows.tolist(), begin.tolist(), end.tolist()):
                if w < 0:
                    continue
                units = plan.window(w)
                for doc, skip, take, c in zip(units.doc.tolist(), units.skip.tolist(), units.take.tolist(), units.cum[:-1].tolist()):
                    lo, hi = max(x, units.start + c), min(e, units.start + c + take)
                    out.extend((doc, skip + i - (units.start + c)) for i in range(lo, hi))
    return out


layouts = st.lists(st.integers(1, 6), min_size=1, max_size=12).flatmap(
    lambda rows: st.tuples(st.just(rows), st.lists(st.integers(0, 40), min_size=sum(rows), max_size=sum(rows)))
)


@settings(max_examples=60, deadline=None)
@given(
    layout=layouts,
    order=st.sampled_from(["block_window", "uniform", "sequential"]),
    seq_len=st.integers(1, 20),
    batch=st.sampled_from([1, 2, 4, 6]),
    window_blocks=st.integers(1, 4),
    num_partitions=st.sampled_from([None, 1, 3, 8]),
    remainder=st.sampled_from(["drop", "pad"]),
    add_eos=st.booleans(),
    world_size=st.sampled_from([1, 2]),
)
def test_every_token_is_delivered_at_most_once_and_only_the_remainder_is_dropped(layout, order, seq_len, batch, window_blocks, num_partitions, remainder, add_eos, world_size):
    block_rows, lengths = layout
    batch *= world_size
    try:
        plan = _plan(lengths, block_rows, order=order, seq_len=seq_len, batch=batch, remainder=remainder, add_eos=add_eos, window_blocks=window_blocks, num_partitions=num_partitions)
    except ConfigError:
        assert sum(lengths) + add_eos * len(lengths) < batch * (seq_len + 1) or remainder == "pad" and sum(lengths) + add_eos * len(lengths) == 0
        return
    delivered = _delivered(plan, world_size)
    assert len(delivered) == len(set(delivered)), "a token was delivered twice"
    stream_lengths = np.asarray(lengths) + add_eos
    assert all(0 <= position < stream_lengths[doc] for doc, position in delivered)
    total = int(stream_lengths.sum())
    if remainder == "drop":
        assert len(delivered) == plan.num_batches * batch * (seq_len + 1)
        assert total - len(delivered) < batch * (seq_len + 1)
    else:
        assert len(delivered) == total


def test_the_plan_is_a_pure_function_of_seed_and_epoch():
    rng = np.random.default_rng(0)
    lengths, rows = rng.integers(0, 50, 300), [10] * 30
    a, b = _plan(lengths, rows, seed=3), _plan(lengths, rows, seed=3)
    for w in range(a.num_windows):
        assert np.array_equal(a.window(w).doc, b.window(w).doc)
    first = np.concatenate([a.window(w).doc for w in range(a.num_windows)])
    other_epoch = _plan(lengths, rows, seed=3, epoch=1)
    other_seed = _plan(lengths, rows, seed=4)
    for plan in (other_epoch, other_seed):
        docs = np.concatenate([plan.window(w).doc for w in range(plan.num_windows)])
        assert not np.array_equal(first[:100], docs[:100])


def test_a_window_holds_only_the_documents_of_its_own_blocks():
    rng = np.random.default_rng(1)
    rows = rng.integers(1, 9, 40)
    lengths = rng.integers(1, 30, int(rows.sum()))
    plan = _plan(lengths, rows, window_blocks=3)
    starts = np.concatenate([[0], np.cumsum(rows)])
    for w in range(plan.num_windows):
        blocks = set(plan.blocks_of_window(w).tolist())
        assert len(blocks) <= 3 + 1  # window_blocks, plus one cut by a partition start
        assert set((np.searchsorted(starts, plan.window(w).doc, side="right") - 1).tolist()) <= blocks


def test_sequential_keeps_storage_order():
    lengths = [3, 0, 5, 2, 7, 1]
    plan = _plan(lengths, [2, 2, 2], order="sequential", seq_len=3, batch=1)
    docs = np.concatenate([plan.window(w).doc for w in range(plan.num_windows)])
    assert docs.tolist() == [0, 1, 2, 3, 4, 5]  # every document takes at least its EOS


def test_ranks_read_disjoint_blocks_when_the_world_divides_partitions_and_batch():
    rng = np.random.default_rng(2)
    rows = [20] * 64
    plan = _plan(rng.integers(50, 200, 20 * 64), rows, batch=8, seq_len=127, num_partitions=8)
    read = []
    for rank in range(4):
        blocks = set()
        for b in range(plan.num_batches):
            for w in plan.rank_runs(b, rank, 4)[0].tolist():
                blocks |= set(plan.blocks_of_window(w).tolist())
        read.append(blocks)
    shared = sum(len(read[i] & read[j]) for i in range(4) for j in range(i + 1, 4))
    assert shared <= 3  # only blocks cut by the boundary between two ranks' partitions
    assert sum(map(len, read)) <= 64 + 3


def _placements(runs, shift: int) -> set:
    """(window, stream position, flat output position) of every token the runs place."""
    return {
        (w, x, out + shift + (x - begin))
        for w, begin, end, out in zip(*(a.tolist() for a in runs))
        for x in range(begin, end)
    }


def test_ranks_together_deliver_the_global_batch():
    rng = np.random.default_rng(3)
    plan = _plan(rng.integers(0, 40, 200), [10] * 20, batch=6, seq_len=9)
    share = 2 * plan.row_tokens  # each of 3 ranks takes 2 rows
    for b in range(plan.num_batches):
        ranks = set().union(*(_placements(plan.rank_runs(b, r, 3), r * share) for r in range(3)))
        assert ranks == _placements(plan.rank_runs(b, 0, 1), 0)


def test_too_few_tokens_for_one_batch_is_a_config_error_that_says_what_to_do():
    with pytest.raises(ConfigError, match="lower the batch size or seq_len"):
        _plan([3, 4], [2], seq_len=100, batch=4)
    assert _plan([3, 4], [2], seq_len=100, batch=4, remainder="pad").num_batches == 1


@pytest.mark.parametrize("bad", [dict(seq_len=0), dict(batch=0), dict(remainder="wrap"), dict(epoch=-1)])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ConfigError):
        _plan([3, 4], [2], **bad)


def test_a_plan_over_some_blocks_reads_only_them():
    rng = np.random.default_rng(4)
    rows = [10] * 20
    lengths = rng.integers(1, 40, 200)
    subset = [1, 4, 5, 9, 17]
    for order in ("block_window", "sequential", "uniform"):
        plan = _plan(lengths, rows, order=order, batch=2, seq_len=15, blocks=subset)
        docs = np.concatenate([plan.window(w).doc for w in range(plan.num_windows)])
        assert set((docs // 10).tolist()) <= set(subset)
        assert plan.num_tokens == sum(int(lengths[b * 10 : (b + 1) * 10].sum()) + 10 for b in subset)
    with pytest.raises(ConfigError, match="block ids"):
        _plan(lengths, rows, blocks=[3, 20])
