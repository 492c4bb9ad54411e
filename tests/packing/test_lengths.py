"""Packing plans read each block's token total from index.json and a document's length only when a window needs it."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import fastload
from fastload.errors import FormatError
from fastload.format import Dataset, verify_dataset
from tests.packing.conftest import distinct_documents, write_documents

SEQ_LEN, BATCH = 15, 4


@pytest.fixture()
def documents():
    return distinct_documents(np.random.default_rng(7), 300, 40)


def _edit_index(path, edit):
    obj = json.loads((path / "index.json").read_text())
    edit(obj)
    (path / "index.json").write_text(json.dumps(obj))


def _batches(path, *, workers=0, n=None):
    packed = fastload.PackedDataset(path, seq_len=SEQ_LEN, eos_id=0)
    loader = fastload.DataLoader(packed, batch_size=BATCH, shuffle=True, num_workers=workers)
    out = [b["input_ids"].clone() for b in loader]
    return out if n is None else out[:n]


def test_the_index_records_every_blocks_token_total(tmp_path, documents):
    write_documents(tmp_path / "ds", documents, block_rows=9)
    ds = Dataset(tmp_path / "ds")
    totals = ds.index.block_values("tokens")
    expected = [sum(len(d) for d in documents[s:e]) for s, e in zip(ds.block_starts[:-1].tolist(), ds.block_starts[1:].tolist())]
    assert totals.tolist() == expected
    assert verify_dataset(tmp_path / "ds") == []


@pytest.mark.parametrize("workers", [0, 2])
def test_planning_from_the_totals_reads_no_block_and_gives_the_batches_of_planning_from_every_length(tmp_path, documents, workers, monkeypatch):
    write_documents(tmp_path / "new", documents, block_rows=9)
    write_documents(tmp_path / "old", documents, block_rows=9)
    _edit_index(tmp_path / "old", lambda o: [s["blocks"].pop("values") for s in o["shards"]])  # as written before the totals
    assert Dataset(tmp_path / "old").index.block_values("tokens") is None

    packed = fastload.PackedDataset(tmp_path / "new", seq_len=SEQ_LEN, eos_id=0)
    reads = []
    monkeypatch.setattr(Dataset, "row_lengths", lambda self, column: reads.append(column))  # the pass over every block
    sampler = packed.batch_sampler(BATCH)
    assert len(sampler) > 10 and not reads  # the epoch is planned, and nothing read every block's lengths
    assert not any(packed.document_lengths().knows(b) for b in range(packed.dataset.num_blocks))  # nothing read yet
    monkeypatch.undo()

    assert [b.tolist() for b in _batches(tmp_path / "new", workers=workers)] == [b.tolist() for b in _batches(tmp_path / "old", workers=workers)]


def test_a_block_total_that_disagrees_with_the_shard_is_a_format_error_not_shifted_tokens(tmp_path, documents):
    write_documents(tmp_path / "ds", documents, block_rows=9)

    def move_a_token(o):  # the totals still add up: only the blocks' own offsets can tell
        values = o["shards"][0]["blocks"]["values"]["tokens"]
        values[0] += 1
        values[1] -= 1

    _edit_index(tmp_path / "ds", move_a_token)
    with pytest.raises(FormatError, match="index.json records .* tokens: the index and the shards disagree"):
        _batches(tmp_path / "ds")
    problems = verify_dataset(tmp_path / "ds")
    assert any("block 0" in p and "index.json records" in p for p in problems)


def test_values_for_a_column_that_is_not_tokens_or_of_the_wrong_length_are_refused(tmp_path, documents):
    write_documents(tmp_path / "ds", documents, block_rows=9)
    _edit_index(tmp_path / "ds", lambda o: o["shards"][0]["blocks"]["values"]["tokens"].pop())
    with pytest.raises(FormatError, match=r"blocks.values\['tokens'\] must be a list of"):
        Dataset(tmp_path / "ds")
    write_documents(tmp_path / "ds2", documents, block_rows=9)
    _edit_index(tmp_path / "ds2", lambda o: o["shards"][0]["blocks"]["values"].update(other=o["shards"][0]["blocks"]["values"]["tokens"]))
    with pytest.raises(FormatError, match="'other', which is not a tokens column"):
        Dataset(tmp_path / "ds2")



def test_a_packed_dataset_reading_lengths_ahead_pickles_for_a_spawned_worker_which_reads_its_own(tmp_path, documents):
    write_documents(tmp_path / "ds", documents, block_rows=9)
    packed = fastload.PackedDataset(tmp_path / "ds", seq_len=SEQ_LEN, eos_id=0)
    lengths = packed.document_lengths()
    lengths.read_ahead(range(lengths.num_blocks))  # threads and futures in flight, in this process
    lengths.of_block(0)
    copy = pickle.loads(pickle.dumps(packed)).document_lengths()  # as a spawned DataLoader worker receives it
    assert not copy.knows(0)  # lengths are learnt per process, from the blocks it reads
    copy.read_ahead(range(lengths.num_blocks - 1, -1, -1))
    assert all(np.array_equal(copy.of_block(b), lengths.of_block(b)) for b in range(lengths.num_blocks))
