"""PaddedDataset: one document per row, equal to the obvious implementation, through the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from fastload.errors import FormatError
from fastload.kernels.pack_reference import padded_rows_reference
from tests.packing.conftest import distinct_documents, write_documents

EOS, PAD = 0, 999_999


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    num_docs=st.integers(1, 60),
    max_len=st.integers(0, 30),
    block_rows=st.integers(1, 9),
    seq_len=st.integers(1, 24),
    add_eos=st.booleans(),
    compression=st.sampled_from(["none", "lz4"]),
)
def test_rows_equal_the_reference(tmp_path_factory, seed, num_docs, max_len, block_rows, seq_len, add_eos, compression):
    rng = np.random.default_rng(seed)
    documents = distinct_documents(rng, num_docs, max_len)
    path = tmp_path_factory.mktemp("ds") / "ds"
    write_documents(path, documents, block_rows=block_rows, compression=compression)
    padded = fastload.PaddedDataset(path, seq_len=seq_len, eos_id=EOS, pad_id=PAD, add_eos=add_eos)
    ids = rng.integers(0, num_docs, size=min(num_docs, 7))
    expected = padded_rows_reference(documents, ids.tolist(), seq_len=seq_len, eos_id=EOS, pad_id=PAD, add_eos=add_eos)
    got = padded[ids]
    for name, array in expected.items():
        assert np.array_equal(got[name], array), name


@pytest.fixture(scope="module")
def padded_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("padded") / "ds"
    write_documents(path, distinct_documents(np.random.default_rng(3), 500, 60), block_rows=20)
    return path


def _clone(loader) -> list:
    return [{k: v.clone() for k, v in batch.items()} for batch in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_the_loader_gives_the_sampler_order_for_any_number_of_workers_and_resumes(padded_path):
    padded = fastload.PaddedDataset(padded_path, seq_len=32, eos_id=EOS)
    serial = _clone(fastload.DataLoader(padded, batch_size=8, shuffle=True))
    sampler = padded.batch_sampler(8, shuffle=True)
    assert len(serial) == len(sampler)
    first_ids = next(iter(sampler))
    assert torch.equal(serial[0]["input_ids"], torch.from_numpy(padded[first_ids]["input_ids"]))
    loader = fastload.DataLoader(padded, batch_size=8, shuffle=True, num_workers=2)
    assert _same(_clone(loader), serial)
    loader = fastload.DataLoader(padded, batch_size=8, shuffle=True, num_workers=2)  # at epoch 0 again
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    del it
    resumed = fastload.DataLoader(fastload.PaddedDataset(padded_path, seq_len=32, eos_id=EOS), batch_size=8, shuffle=True)
    resumed.load_state_dict(state)
    assert _same(_clone(resumed), serial[3:])


def test_documents_are_read_from_blocks_kept_for_the_window(padded_path):
    padded = fastload.PaddedDataset(padded_path, seq_len=16, eos_id=EOS)
    for ids in padded.batch_sampler(10, shuffle=True):
        padded[ids]
    assert padded._blocks.blocks_loaded == padded.dataset.num_blocks


def test_a_changed_dataset_is_a_format_error(tmp_path):
    write_documents(tmp_path / "ds", [[1, 2], [3]], block_rows=2)
    padded = fastload.PaddedDataset(tmp_path / "ds", seq_len=4, eos_id=EOS)
    padded._doc_lengths = np.array([2, 5])
    with pytest.raises(FormatError, match="changed since it was opened"):
        padded[0]


def test_a_text_column_is_tokenized_per_block_without_counting_ahead(tmp_path, monkeypatch):
    from fastload.packing.documents import TokenDocuments

    tokenizer = fastload.Tokenizer.default()
    texts = [f"padded document {i} " * (i % 5) for i in range(60)]
    fastload.convert([{"text": t} for t in texts], tmp_path / "text", block_rows=16, quiet=True)
    monkeypatch.setattr(TokenDocuments, "_tokenize_to_count", lambda self, **_: pytest.fail("counted every document ahead"))
    padded = fastload.PaddedDataset(tmp_path / "text", seq_len=12, tokenizer=tokenizer)
    row = padded[7]
    expected = (tokenizer.encode(texts[7]) + [tokenizer.eos_id])[:13]
    assert row["input_ids"][: min(12, len(expected))].tolist() == expected[:12]
    assert padded._blocks.blocks_loaded == 1
