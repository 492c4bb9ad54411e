"""find_invalid_utf8 flags exactly the documents Python's strict decoder rejects."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.tokenizer.kernels.utf8 import find_invalid_utf8
from fastload.tokenizer.kernels.utf8_reference import find_invalid_utf8_reference

# Bytes near the edges of UTF-8's rules: ASCII, continuation bytes, lead bytes of every
# length, overlong leads (C0, C1, E0, F0), surrogate leads (ED) and bytes never valid (F5-FF).
EDGE_BYTES = st.sampled_from([0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF])
DOCUMENT = st.one_of(
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.lists(st.one_of(EDGE_BYTES, st.integers(0, 255)), max_size=12).map(bytes),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(DOCUMENT, st.booleans()), max_size=8))
def test_find_invalid_utf8_matches_python_strict_decoding(documents):
    data = np.frombuffer(b"".join(d for d, _ in documents), dtype=np.uint8)
    offsets = np.cumsum([0] + [len(d) for d, _ in documents]).astype(np.int64)
    valid = np.array([v for _, v in documents], dtype=np.uint8)
    bad = np.zeros(len(documents), dtype=bool)
    count = find_invalid_utf8(data, offsets, valid, bad)
    expected = find_invalid_utf8_reference(data, offsets, valid)
    assert bad.tolist() == expected.tolist()
    assert count == int(expected.sum())


def test_documents_without_a_validity_mask_are_all_checked():
    data = np.frombuffer(b"ok\xffok", dtype=np.uint8)
    offsets = np.array([0, 2, 3, 5], np.int64)
    bad = np.zeros(3, dtype=bool)
    assert find_invalid_utf8(data, offsets, np.zeros(0, np.uint8), bad) == 1
    assert bad.tolist() == [False, True, False]
