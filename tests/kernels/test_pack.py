"""Packing: the Numba kernel equals its readable twin, and the stream it cuts is exact."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload import FormatError
from fastload.kernels.pack import PackCursor, cu_seqlens, pack_documents, pack_reference

EOS = 65_000

documents_st = st.lists(st.lists(st.integers(0, 60_000), max_size=40), min_size=1, max_size=30)


def _flatten(documents):
    lengths = [len(d) for d in documents]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.asarray([t for d in documents for t in d], np.uint16)
    return values, offsets


def _pack_all(documents, window, rows_per_call):
    values, offsets = _flatten(documents)
    order = np.arange(len(documents))
    cursor = PackCursor()
    pieces = []
    while True:
        out = [np.full((rows_per_call, window), -1, np.int64) for _ in range(3)]
        rows = pack_documents(values, offsets, order, cursor, eos_id=EOS, out_tokens=out[0], out_segments=out[1], out_positions=out[2])
        pieces.append([o[:rows] for o in out])  # only complete rows count
        if rows < rows_per_call:
            break
    return [np.concatenate([p[i] for p in pieces]) for i in range(3)]


@settings(max_examples=200, deadline=None)
@given(documents=documents_st, window=st.integers(2, 33), rows_per_call=st.integers(1, 7))
def test_the_kernel_equals_the_reference_whatever_the_rows_per_call(documents, window, rows_per_call):
    tokens, segments, positions = _pack_all(documents, window, rows_per_call)
    expected = pack_reference(documents, eos_id=EOS, window=window)
    assert np.array_equal(tokens, expected[0])
    assert np.array_equal(segments, expected[1])
    assert np.array_equal(positions, expected[2])


@settings(max_examples=100, deadline=None)
@given(documents=documents_st, window=st.integers(2, 33))
def test_every_token_appears_once_in_order_with_eos_after_each_document(documents, window):
    tokens, segments, positions = _pack_all(documents, window, 4)
    stream = [t for d in documents for t in [*d, EOS]]
    assert tokens.reshape(-1).tolist() == stream[: tokens.size]  # the remainder (< one row) is dropped
    assert len(stream) - tokens.size < window
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    assert np.array_equal(inputs[:, 1:], labels[:, :-1])  # labels are the inputs shifted by one
    # positions restart exactly where segments change, and at every row start
    restarts = np.ones_like(segments, dtype=bool)
    restarts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    assert np.array_equal(positions == 0, restarts)
    assert (tokens[:, :-1][segments[:, 1:] != segments[:, :-1]] == EOS).all()  # a segment ends with EOS or at the row end


def test_cu_seqlens_marks_every_segment_start_of_the_inputs():
    segments = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 2, 2]])
    assert cu_seqlens(segments, seq_len=4).tolist() == [0, 2, 4, 5, 7, 8]


def test_offsets_outside_the_data_raise_format_error_naming_the_document():
    values = np.arange(10, dtype=np.uint16)
    offsets = np.array([0, 4, 400])
    out = [np.zeros((2, 5), np.int64) for _ in range(3)]
    with pytest.raises(FormatError, match="document 1 has offsets"):
        pack_documents(values, offsets, np.array([0, 1]), PackCursor(), eos_id=0, out_tokens=out[0], out_segments=out[1], out_positions=out[2])
    with pytest.raises(FormatError, match="document index 7"):
        pack_documents(values, np.array([0, 4, 10]), np.array([7]), PackCursor(), eos_id=0, out_tokens=out[0], out_segments=out[1], out_positions=out[2])
