"""A mixture of row sources: each source's rows once per pass, exact counts, any world size, 'stop' ends the run."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastload.errors import ConfigError
from fastload.sampler import SamplerOptions
from fastload.sampler.mixing import exact_weights
from fastload.sampler.mixture_plan import MixturePlan


def _plan(layouts, raw, batch, **kwargs):
    names = [f"src{i}" for i in range(len(layouts))]
    weights = exact_weights(dict(zip(names, raw)))
    return MixturePlan.of_rows(dict(zip(names, layouts)), weights, options=SamplerOptions(seed=11, window_blocks=2), global_batch_size=batch, **kwargs)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), num_sources=st.integers(1, 4), batch=st.integers(1, 24))
def test_every_row_of_a_source_is_read_once_per_pass(data, num_sources, batch):
    layouts = [np.array(data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=12))) for _ in range(num_sources)]
    raw = data.draw(st.lists(st.integers(1, 9), min_size=num_sources, max_size=num_sources))
    try:
        plan = _plan(layouts, raw, batch)
    except ConfigError as error:
        assert "less than the" in str(error)
        return
    reads = defaultdict(list)  # (source, pass) -> rows
    for t in range(60):
        source, rows = plan.columns(t, 0, batch)
        _, column, source_batch = plan.layout.columns(t)
        for s, r, k in zip(source.tolist(), rows.tolist(), source_batch.tolist()):
            reads[(s, k // int(plan.batches_per_pass[s]))].append(r)
        counts = np.bincount(source, minlength=num_sources)
        assert np.array_equal(counts, plan.layout.batch_counts(t))
    for (s, e), rows in reads.items():
        total = int(layouts[s].sum())
        assert len(rows) == len(set(rows)), f"source {s} pass {e} repeats a row"
        assert all(0 <= r < total for r in rows)
    consumed = plan.consumed(60)
    for s, name in enumerate(plan.names):
        per_pass = int(plan.batches_per_pass[s]) * int(plan.layout.source_columns[s])
        assert consumed[name]["rows"] == sum(len(v) for (src, _), v in reads.items() if src == s)
        dropped = int(layouts[s].sum()) - per_pass  # a pass leaves out less than one source batch
        assert 0 <= dropped < int(plan.layout.source_columns[s])
        for e in range(consumed[name]["passes"]):  # a completed pass read every row of the pass
            assert len(set(reads[(s, e)])) == per_pass


@settings(max_examples=40, deadline=None)
@given(raw=st.lists(st.integers(1, 9), min_size=2, max_size=4), per_rank=st.integers(1, 6), world=st.sampled_from([2, 4]))
def test_ranks_read_slices_of_one_global_order(raw, per_rank, world):
    rng = np.random.default_rng(len(raw))
    layouts = [rng.integers(1, 20, 30) for _ in raw]
    batch = per_rank * world
    plan = _plan(layouts, raw, batch)
    for t in range(20):
        whole = plan.columns(t, 0, batch)
        parts = [plan.rank_batch(t, r, world) for r in range(world)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), whole[0])
        assert np.array_equal(np.concatenate([p[1] for p in parts]), whole[1])
        # the same columns as pieces: runs of source rows landing where columns() puts them
        lo, hi = per_rank, batch
        rebuilt = np.empty(hi - lo, np.int64)
        for piece in plan.pieces(t, lo, hi):
            positions = piece.batch * piece.columns + np.arange(piece.lo, piece.hi)
            rebuilt[piece.out] = plan.plan(piece.source, piece.epoch, piece.columns).samples_at(positions)
            assert np.all(plan.columns(t, lo, hi)[0][piece.out] == piece.source)
        assert np.array_equal(rebuilt, plan.columns(t, lo, hi)[1])


@settings(max_examples=40, deadline=None)
@given(raw=st.lists(st.integers(1, 9), min_size=2, max_size=4), batch=st.integers(2, 12), change=st.integers(1, 30), data=st.data())
def test_template_clocks_say_what_the_pieces_say(raw, batch, change, data):
    rng = np.random.default_rng(len(raw) + batch)
    layouts = [rng.integers(1, 9, 12) for _ in raw]
    stage = dict(zip([f"src{i}" for i in range(len(raw))], exact_weights({f"src{i}": w for i, w in enumerate(reversed(raw))}).values()))
    try:
        plan = _plan(layouts, raw, batch, schedule=[(change, stage)])  # a weight change: batches from no template while sources catch up
    except ConfigError:
        return
    lo = data.draw(st.integers(0, batch - 1))
    hi = data.draw(st.integers(lo + 1, batch))
    for t in [*range(60), *data.draw(st.lists(st.integers(60, 10**6), max_size=5))]:
        template, pieces = plan.arranged_pieces(t, lo, hi)
        found = plan.template_clocks(t, lo, hi)
        if template is None:
            assert found is None
        else:
            key, m, clocks = found
            assert key == template and len(clocks) == len(pieces)
            assert [divmod(a + m * c, n) for a, c, n in clocks] == [(p.epoch, p.batch) for p in pieces]
            event("from a template")


def test_a_source_set_to_stop_ends_the_mixture_before_its_second_pass():
    small, big = np.full(5, 4), np.full(50, 4)  # 20 and 200 rows
    plan = _plan([small, big], [1, 3], 8, on_exhausted={"src0": "stop"})  # src0: 2 rows a batch -> 10 batches a pass
    assert plan.num_batches == 10
    rows = np.concatenate([plan.columns(t, 0, 8)[1][plan.columns(t, 0, 8)[0] == 0] for t in range(10)])
    assert sorted(rows.tolist()) == list(range(20))
    with pytest.raises(IndexError, match="past the end"):
        plan.columns(10, 0, 8)
    assert _plan([small, big], [1, 3], 8).num_batches is None


def test_each_source_keeps_its_order_when_others_change():
    a, b, c = np.full(10, 7), np.full(12, 5), np.full(8, 9)
    two = _plan([a, b], [1, 1], 8)
    names = ["src0", "src1", "other"]
    three = MixturePlan.of_rows(dict(zip(names, [a, b, c])), exact_weights(dict(zip(names, [2, 1, 1]))), options=SamplerOptions(seed=11, window_blocks=2), global_batch_size=8)
    assert two.layout.source_columns[0] == three.layout.source_columns[0] == 4
    assert np.array_equal(two.plan(0, 1).samples(0, 68), three.plan(0, 1).samples(0, 68))
    assert two.source_options[0].seed != two.source_options[1].seed


def test_bad_configurations_name_the_source():
    with pytest.raises(ConfigError, match=r"'src0' holds 3 rows, less than the 8 rows \(at most\)"):
        _plan([np.array([3]), np.full(10, 10)], [1, 1], 16)
    with pytest.raises(ConfigError, match="on_exhausted must be one of"):
        _plan([np.full(10, 10)], [1], 4, on_exhausted={"src0": "sometimes"})
    with pytest.raises(ConfigError, match="not a source"):
        _plan([np.full(10, 10)], [1], 4, on_exhausted={"web": "stop"})


@settings(max_examples=80, deadline=None)
@given(data=st.data(), num_sources=st.integers(1, 3), batch=st.integers(1, 12), num_stages=st.integers(2, 4))
def test_a_schedule_changes_the_counts_and_never_loses_or_repeats_a_row_of_a_pass(data, num_sources, batch, num_stages):
    """With random schedules and exhaustion policies (a source set to drop or stop is never read twice)."""
    layouts = [np.array(data.draw(st.lists(st.integers(3, 12), min_size=2, max_size=8))) for _ in range(num_sources)]
    names = [f"src{i}" for i in range(num_sources)]
    weights_of = st.lists(st.integers(0, 5), min_size=num_sources, max_size=num_sources).map(lambda w: w if any(w) else [1, *w[1:]])
    stages = [data.draw(weights_of) for _ in range(num_stages)]
    starts = sorted(set(data.draw(st.lists(st.integers(1, 40), min_size=num_stages - 1, max_size=num_stages - 1, unique=True))))
    weights = [exact_weights(dict(zip(names, w))) for w in stages[: len(starts) + 1]]
    try:
        policies = dict(zip(names, data.draw(st.lists(st.sampled_from(["repeat", "repeat", "drop", "stop"]), min_size=num_sources, max_size=num_sources))))
        plan = MixturePlan.of_rows(dict(zip(names, layouts)), weights[0], options=SamplerOptions(seed=3, window_blocks=2),
                                   global_batch_size=batch, schedule=list(zip(starts, weights[1:])), on_exhausted=policies)
    except ConfigError as error:
        assert "less than the" in str(error)
        event("a source too small for its columns")
        return
    event("planned")
    reads = defaultdict(list)  # (source, pass) -> rows
    geometry = {}
    total = starts[-1] + 40 if plan.num_batches is None else min(starts[-1] + 40, plan.num_batches)
    for t in range(total):
        k = int(np.searchsorted(plan.stage_starts, t, side="right")) - 1
        source, epoch, within, column, columns = plan._slots(t)
        assert np.array_equal(np.bincount(source, minlength=num_sources), plan.layouts[k].batch_counts(t - plan.stage_starts[k]))
        _, rows = plan.columns(t, 0, batch)
        for s, e, G, r in zip(source.tolist(), epoch.tolist(), columns.tolist(), rows.tolist()):
            assert geometry.setdefault((s, e), G) == G, "a pass was read with two geometries"
            reads[(s, e)].append(r)
    for (s, e), rows in reads.items():
        assert len(rows) == len(set(rows)), f"source {s} pass {e} read a row twice"
    consumed = plan.consumed(total)
    for s, name in enumerate(names):
        assert consumed[name]["rows"] == sum(len(v) for (src, _), v in reads.items() if src == s)
        if consumed[name]["passes"] >= 2:
            event("a source passed twice")
        if len({G for (src, _), G in geometry.items() if src == s}) > 1:
            event("a source changed geometry")
        if policies[name] != "repeat":
            assert all(e == 0 for (src, e) in reads if src == s), f"{name} ({policies[name]}) was read a second time"
        for e in range(consumed[name]["passes"]):  # a completed pass read every row of it, once
            G = geometry[(s, e)]
            assert len(reads[(s, e)]) == plan.batches(s, G) * G, (s, e, G)


def test_a_source_set_to_drop_leaves_and_the_others_keep_their_proportions():
    small, big, other = np.full(5, 4), np.full(60, 4), np.full(60, 4)  # 20, 240 and 240 rows
    names = ["small", "big", "other"]
    plan = MixturePlan.of_rows(dict(zip(names, [small, big, other])), exact_weights(dict(zip(names, [2, 3, 3]))),
                               options=SamplerOptions(seed=1), global_batch_size=8, on_exhausted={"small": "drop"})
    assert plan.num_batches is None and plan.stage_starts == [0, 10]  # small: 2 rows a batch, 20 rows -> gone after batch 9
    small_rows = []
    for t in range(30):
        source, rows = plan.columns(t, 0, 8)
        counts = np.bincount(source, minlength=3).tolist()
        assert counts == ([2, 3, 3] if t < 10 else [0, 4, 4])
        small_rows += rows[source == 0].tolist()
    assert sorted(small_rows) == list(range(20))  # read whole, once
    everything = MixturePlan.of_rows({"small": small}, exact_weights({"small": 1}), options=SamplerOptions(), global_batch_size=4,
                                     on_exhausted={"small": "drop"})
    assert everything.num_batches == 5  # nothing left once the only source is dropped


def test_repetitions_count_the_passes_begun():
    plan = _plan([np.full(5, 4), np.full(50, 4)], [1, 3], 8)  # src0: 2 rows a batch of 20 -> a pass every 10 batches
    assert plan.repetitions(0) == {"src0": 0, "src1": 0}
    assert plan.repetitions(10)["src0"] == 1 and plan.repetitions(11)["src0"] == 2 and plan.repetitions(31)["src0"] == 4
