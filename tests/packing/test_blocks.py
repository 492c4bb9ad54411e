"""Text packed on the fly is tokenized document by document: a batch tokenizes the documents it touches, not their blocks."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.errors import FormatError
from fastload.packing import PackedDataset

SEQ_LEN, BATCH = 31, 4


@pytest.fixture(scope="module")
def tokenizer():
    return fastload.Tokenizer.default()


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(7)
    return [" ".join(f"w{rng.integers(0, 500)}" for _ in range(rng.integers(0, 120))) for _ in range(400)]


@pytest.fixture(scope="module")
def text_path(tmp_path_factory, texts):
    path = tmp_path_factory.mktemp("text") / "text"
    fastload.convert([{"text": t} for t in texts], path, block_rows=20, quiet=True)
    return path


def _packed(text_path, tokenizer, **arguments):
    return PackedDataset(text_path, seq_len=SEQ_LEN, tokenizer=tokenizer, **arguments)


def _documents_touched(plan, batch: int) -> set[int]:
    """Documents with real tokens (not only their EOS) inside the rows of `batch`, from the plan alone."""
    touched = set()
    lengths = plan.lengths.of_blocks(np.arange(plan.lengths.num_blocks))  # real tokens of each document
    for x in plan.row_starts(batch, 0, plan.global_batch_size).tolist():
        end = x + SEQ_LEN + 1
        for w in range(plan.num_windows):
            units = plan.window(w)
            begin = units.start + units.cum[:-1]
            real = np.clip(lengths[units.doc] - units.skip, 0, units.take)
            hit = np.maximum(begin, x) < np.minimum(begin + real, end)  # the row holds some of its real tokens
            touched.update(units.doc[hit].tolist())
    return touched


def test_the_first_batch_tokenizes_only_the_documents_it_touches(text_path, tokenizer, texts):
    packed = _packed(text_path, tokenizer)
    sampler = packed.batch_sampler(BATCH, shuffle=True)
    key = next(iter(sampler))
    packed[key]
    blocks = packed._blocks
    touched = _documents_touched(packed.plan(0, BATCH, sampler.options), 0)
    assert blocks.documents_tokenized == len(touched) > 0
    assert blocks.bytes_tokenized == sum(len(texts[d].encode()) for d in touched)
    assert np.flatnonzero(blocks.ready).tolist() == sorted(touched)
    block_bytes = sum(len(texts[d].encode()) for b in range(packed.dataset.num_blocks) if blocks.slot_of_block[b] >= 0
                      for d in range(packed.dataset.block_starts[b], packed.dataset.block_starts[b + 1]))
    assert blocks.bytes_tokenized < block_bytes / 4  # the blocks it reads hold much more than it needs


def test_an_epoch_on_the_fly_tokenizes_each_document_about_once_and_equals_pre_tokenized(tmp_path, text_path, tokenizer, texts):
    fastload.convert([{"text": t} for t in texts], tmp_path / "tokens", tokenizer=tokenizer, block_rows=20, quiet=True)
    pre = PackedDataset(tmp_path / "tokens", seq_len=SEQ_LEN)
    fly = _packed(text_path, tokenizer)
    sampler = fly.batch_sampler(BATCH, shuffle=True)
    plan = fly.plan(0, BATCH, sampler.options)
    touched = set()
    for key in sampler:
        for name, array in fly[key].items():
            assert np.array_equal(array, pre[key][name]), (name, key.batch)
        touched |= _documents_touched(plan, key.batch)
    # A document cut by a partition boundary is read by two windows: its block may be dropped in between.
    assert len(touched) <= fly._blocks.documents_tokenized <= len(touched) * 1.1


def test_a_document_whose_tokens_differ_from_its_planned_length_is_a_format_error(text_path, tokenizer):
    counted = _packed(text_path, tokenizer).doc_lengths
    packed = _packed(text_path, tokenizer, doc_lengths=counted + 1)
    with pytest.raises(FormatError, match="changed since it was opened"):
        for i in range(len(packed)):
            packed[i]
