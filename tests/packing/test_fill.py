"""Packed batches from the kernels equal the slow reference, and bad data is an error, not a crash."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.errors import ConfigError, FormatError
from fastload.kernels.pack import IGNORE_INDEX, fill_packed_rows
from fastload.packing import BatchKey, PackedDataset
from fastload.packing.blocks import AddressBook
from fastload.packing.fill import PackedArrays, fill_together
from fastload.sampler import SamplerOptions
from fastload.kernels.pack_reference import packed_epoch_reference
from tests.packing.conftest import distinct_documents, write_documents

EOS, PAD = 0, 999_999


def _key(packed, plan, b, rank, world, order):
    return BatchKey(plan.epoch, b, rank, world, plan.global_batch_size, order, packed.sampling.seed, packed.sampling.window_blocks, packed.sampling.num_partitions)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    num_docs=st.integers(1, 80),
    max_len=st.integers(0, 60),
    block_rows=st.integers(1, 9),
    seq_len=st.integers(1, 24),
    batch=st.sampled_from([1, 2, 4]),
    order=st.sampled_from(["block_window", "uniform", "sequential"]),
    remainder=st.sampled_from(["drop", "pad"]),
    add_eos=st.booleans(),
    window_blocks=st.integers(1, 3),
    compression=st.sampled_from(["none", "lz4"]),
)
def test_batches_equal_the_reference(tmp_path_factory, seed, num_docs, max_len, block_rows, seq_len, batch, order, remainder, add_eos, window_blocks, compression):
    rng = np.random.default_rng(seed)
    documents = distinct_documents(rng, num_docs, max_len)
    path = tmp_path_factory.mktemp("ds") / "ds"
    write_documents(path, documents, block_rows=block_rows, compression=compression)
    packed = PackedDataset(path, seq_len=seq_len, eos_id=EOS, pad_id=PAD, add_eos=add_eos, remainder=remainder, sampling=SamplerOptions(window_blocks=window_blocks, seed=seed))
    try:
        plan = packed.plan(1, batch * 2, packed.sampler_options(order=order))
    except ConfigError:
        return  # fewer tokens than one batch (checked in test_plan)
    expected = packed_epoch_reference(plan, documents, eos_id=EOS, pad_id=PAD)
    for b in range(plan.num_batches):
        for world in (1, 2):
            for rank in range(world):
                got = packed[_key(packed, plan, b, rank, world, order)]
                rows = slice(rank * 2 * batch // world, (rank + 1) * 2 * batch // world)
                for name, array in expected.items():
                    assert np.array_equal(got[name], array[b, rows]), (name, b, rank, world)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    num_docs=st.integers(20, 80),
    seq_len=st.integers(1, 24),
    remainder=st.sampled_from(["drop", "pad"]),
    num_partitions=st.sampled_from([None, 1, 3]),
)
def test_rows_of_several_batches_and_passes_land_in_any_output_rows_as_the_reference_has_them(tmp_path_factory, seed, num_docs, seq_len, remainder, num_partitions):
    rng = np.random.default_rng(seed)
    documents = distinct_documents(rng, num_docs, 30)
    path = tmp_path_factory.mktemp("ds") / "ds"
    write_documents(path, documents, block_rows=4)
    packed = PackedDataset(path, seq_len=seq_len, eos_id=EOS, pad_id=PAD, remainder=remainder, sampling=SamplerOptions(window_blocks=2, seed=seed, num_partitions=num_partitions))
    try:
        plans = [packed.plan(epoch, 6, packed.sampler_options()) for epoch in (0, 1)]
    except ConfigError:
        return  # fewer tokens than one batch
    expected = [packed_epoch_reference(plan, documents, eos_id=EOS, pad_id=PAD) for plan in plans]
    # a mixture's source: some rows of one batch, some of another, some of the next pass, spread over the output
    wanted = [(e, int(rng.integers(plans[e].num_batches)), lo, hi) for e, lo, hi in ((0, 0, 3), (0, 3, 4), (1, 1, 6))]
    rows = rng.permutation(sum(hi - lo for *_, lo, hi in wanted))
    starts, bounds = [plans[e].row_starts(b, lo, hi) for e, b, lo, hi in wanted], np.cumsum([0] + [hi - lo for *_, lo, hi in wanted])
    runs = [(plans[0], ("test", 0), 0, int(bounds[2])), (plans[1], ("test", 1), int(bounds[2]), int(bounds[3]))]  # rows of each pass: a run
    out = PackedArrays.empty(len(rows), seq_len)
    packed._batch_filler().fill_runs(runs, np.concatenate(starts), rows, out)
    got = out.as_dict()
    for (e, b, lo, hi), a, z in zip(wanted, bounds, bounds[1:]):
        for name, array in expected[e].items():
            assert np.array_equal(got[name][rows[a:z]], array[b, lo:hi]), (name, e, b, lo, hi)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), seq_len=st.integers(1, 24), compression=st.sampled_from(["none", "lz4"]))
def test_rows_of_several_datasets_and_passes_written_in_one_call_are_the_references_rows(tmp_path_factory, seed, seq_len, compression):
    rng = np.random.default_rng(seed)
    datasets, wanted = [], []
    for d in range(2):  # two datasets (a mixture's sources), each with rows of two passes
        documents = distinct_documents(rng, int(rng.integers(30, 80)), 30)
        path = tmp_path_factory.mktemp("ds") / "ds"
        write_documents(path, documents, block_rows=int(rng.integers(2, 6)), compression=compression)
        packed = PackedDataset(path, seq_len=seq_len, eos_id=EOS, pad_id=PAD, sampling=SamplerOptions(window_blocks=2, seed=seed))
        try:
            plans = [packed.plan(epoch, 4, packed.sampler_options()) for epoch in (0, 1)]
        except ConfigError:
            return  # fewer tokens than one batch
        datasets.append((packed, plans, [packed_epoch_reference(plan, documents, eos_id=EOS, pad_id=PAD) for plan in plans]))
        wanted += [(d, e, int(rng.integers(plans[e].num_batches)), lo, hi) for e, lo, hi in ((0, 0, 3), (1, 1, 4))]
    rows = rng.permutation(sum(hi - lo for *_, lo, hi in wanted))
    parts, starts, bounds = [], [], [0]
    for d, e, b, lo, hi in wanted:
        packed, plans, _ = datasets[d]
        parts.append((packed._batch_filler(), plans[e], ("test", e)))
        starts.append(plans[e].row_starts(b, lo, hi))
        bounds.append(bounds[-1] + hi - lo)
    out = PackedArrays.empty(len(rows), seq_len)
    # fresh fillers: the call stops for every table and block of every part, and resumes from that part
    fill_together(parts, np.array(bounds), np.concatenate(starts), rows, out)
    got = out.as_dict()
    for (d, e, b, lo, hi), a, z in zip(wanted, bounds, bounds[1:]):
        for name, array in datasets[d][2][e].items():
            assert np.array_equal(got[name][rows[a:z]], array[b, lo:hi]), (name, d, e, b, lo, hi)


def test_labels_are_inputs_shifted_by_one_and_positions_restart_per_document(tmp_path):
    documents = distinct_documents(np.random.default_rng(0), 300, 40)
    write_documents(tmp_path / "ds", documents, block_rows=25)
    packed = PackedDataset(tmp_path / "ds", seq_len=32, eos_id=EOS)
    plan = packed.plan(0, 8, packed.sampler_options(order="block_window"))
    for b in range(plan.num_batches):
        batch = packed[_key(packed, plan, b, 0, 1, "block_window")]
        ids, labels, positions, docs = batch["input_ids"], batch["labels"], batch["position_ids"], batch["document_ids"]
        assert np.array_equal(labels[:, :-1], ids[:, 1:])
        new_doc = np.ones_like(docs, dtype=bool)
        new_doc[:, 1:] = docs[:, 1:] != docs[:, :-1]
        assert np.all(positions[new_doc] == 0)
        assert np.all(positions[:, 1:][~new_doc[:, 1:]] == positions[:, :-1][~new_doc[:, 1:]] + 1)
        # A token right after an EOS starts a new document (unless a row starts there).
        after_eos = ids[:, :-1] == EOS
        assert np.all(new_doc[:, 1:][after_eos])


def test_padding_has_ignored_labels(tmp_path):
    write_documents(tmp_path / "ds", [[1, 2, 3], [4, 5]], block_rows=2)
    packed = PackedDataset(tmp_path / "ds", seq_len=4, eos_id=EOS, pad_id=PAD, remainder="pad")
    assert len(packed) == 2
    rows = [packed[i] for i in range(len(packed))]
    # Rows are consecutive windows of seq_len + 1 = 5 stream tokens: 1 2 3 EOS 4 | 5 EOS pad pad pad.
    assert rows[0]["input_ids"].tolist() == [1, 2, 3, EOS]
    assert rows[0]["labels"].tolist() == [2, 3, EOS, 4]
    assert rows[1]["input_ids"].tolist() == [5, EOS, PAD, PAD]
    assert rows[1]["labels"].tolist() == [EOS, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert rows[1]["document_ids"].tolist() == [0, 0, 1, 1]
    assert rows[1]["position_ids"].tolist() == [0, 1, 0, 1]


def test_each_block_is_read_once_per_epoch_per_process(tmp_path):
    documents = distinct_documents(np.random.default_rng(1), 2000, 50)
    write_documents(tmp_path / "ds", documents, block_rows=40)
    packed = PackedDataset(tmp_path / "ds", seq_len=63, eos_id=EOS)
    sampler = packed.batch_sampler(8, shuffle=True)
    for key in sampler:
        packed[key]
    assert packed._blocks.blocks_loaded == packed.dataset.num_blocks


def test_a_table_that_points_past_its_block_is_a_format_error_not_a_crash():
    tokens = np.arange(10, dtype=np.uint16)
    table = np.array([[0, 0], [5, 0], [8, 0], [0, 8], [0, 0]], np.int64)  # reads tokens 5..12 of block 0 (document 0), which has 10
    out = [np.zeros((1, 7), np.int64) for _ in range(3)] + [np.zeros((1, 7), np.int32)]
    windows = (np.array([0, 8, np.iinfo(np.int64).max]), np.array([0]), np.zeros(1, np.int64), 1)  # one window of 8 tokens, its table 0
    row = np.array([0], np.int64), np.array([0], np.int64)  # the row from stream position 0, into output row 0

    def fill():
        return fill_packed_rows(
            (np.array([tokens.ctypes.data]), np.array([10]), tokens[:0]), np.array([0]), (np.array([table.ctypes.data]), np.array([1])),
            windows, *row, eos_id=0, pad_id=0, input_ids=out[0], labels=out[1], positions=out[2], segments=out[3],
        )

    with pytest.raises(FormatError, match="corrupt"):
        fill()
    table[0, 0] = 3
    with pytest.raises(FormatError, match="does not exist"):
        fill()
    row = np.array([0], np.int64), np.array([1], np.int64)  # an output row that is not there
    with pytest.raises(ValueError, match="row 0 .* does not fit"):
        fill()


def test_a_dataset_changed_under_the_plan_is_a_format_error(tmp_path):
    write_documents(tmp_path / "ds", [[1, 2, 3], [4, 5], [6]], block_rows=2)
    packed = PackedDataset(tmp_path / "ds", seq_len=2, eos_id=EOS, doc_lengths=np.array([3, 2, 2]))
    with pytest.raises(FormatError, match="changed since it was opened"):
        for i in range(len(packed)):  # blocks load as rows reach them; the second block disagrees
            packed[i]


def test_configuration_errors_say_what_to_do(tmp_path):
    write_documents(tmp_path / "ds", [[1, 2, 3], [4, 5]], block_rows=2)
    with pytest.raises(ConfigError, match="pass eos_id="):
        PackedDataset(tmp_path / "ds", seq_len=2)
    assert PackedDataset(tmp_path / "ds", seq_len=2, add_eos=False)[0]["input_ids"].tolist() == [1, 2]
    with pytest.raises(ConfigError, match="no column 'text'"):
        PackedDataset(tmp_path / "ds", seq_len=2, eos_id=0, column="text")
    with pytest.raises(ConfigError, match="seq_len"):
        PackedDataset(tmp_path / "ds", seq_len=0, eos_id=0)
    with pytest.raises(ConfigError, match="doc_lengths"):
        PackedDataset(tmp_path / "ds", seq_len=2, eos_id=0, doc_lengths=[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_rows_kept_between_calls_are_made_again_once_an_address_book_has_grown(tmp_path, seed):
    # The kept rows point at the address books' arrays; loading more blocks than a book holds replaces
    # them (and dropping blocks zeroes only the new ones): rows kept from before must not be used again.
    rng = np.random.default_rng(seed)
    datasets = []
    for d in range(2):
        documents = distinct_documents(rng, 120, 30)
        write_documents(tmp_path / f"ds{d}", documents, block_rows=1)  # a block a document: many blocks live in a window
        packed = PackedDataset(tmp_path / f"ds{d}", seq_len=8, eos_id=EOS, pad_id=PAD, sampling=SamplerOptions(window_blocks=40, seed=seed))
        plan = packed.plan(0, 4, packed.sampler_options())
        datasets.append((packed, plan, packed_epoch_reference(plan, documents, eos_id=EOS, pad_id=PAD)))
    parts = [(packed._batch_filler(), plan, ("test", 0)) for packed, plan, _ in datasets]
    bounds, rows = np.array([0, 2, 4]), np.array([3, 0, 2, 1])

    def fill(b: int, kept: list | None) -> dict:
        out = PackedArrays.empty(4, 8)
        fill_together(parts, bounds, np.concatenate([plan.row_starts(b, 1, 3) for _, plan, _ in datasets]), rows, out, kept=kept)
        return out.as_dict()

    def assert_is_reference(got: dict, b: int) -> None:
        for d, (_, _, expected) in enumerate(datasets):
            for name, array in expected.items():
                assert np.array_equal(got[name][rows[2 * d : 2 * d + 2]], array[b, 1:3]), (name, d, b)

    kept: list = []
    assert_is_reference(fill(0, kept), 0)
    growths = AddressBook.growths
    last = min(plan.num_batches for _, plan, _ in datasets) - 1
    for b in range(1, last):  # other batches, the rows not kept: blocks come and go, the books grow
        assert_is_reference(fill(b, None), b)
    assert AddressBook.growths > growths, "the test must grow an address book between the kept calls"
    assert_is_reference(fill(last, kept), last)
