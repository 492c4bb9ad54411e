"""The JSON Lines scanner equals its twin (Python's json, line by line): same records, same columns, same refusals."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.kernels.json_lines import FLOAT, INT, MAX_COLUMNS, NULL, REFUSED, STRING, TRUE, gather_spans, max_values, scan_json_lines
from fastload.kernels.json_lines_reference import gather_spans_reference, scan_json_lines_reference
from tests.convert.json_lines_strategies import json_lines_chunk


def _scan(data: bytes, wide_name: bytes = b""):
    """The kernel's output in the twin's shape, or None when it refuses; the column named `wide_name` is written apart."""
    raw = np.frombuffer(data, np.uint8)
    text, names, name_ends = np.empty(len(raw), np.uint8), np.empty(len(raw), np.uint8), np.empty(MAX_COLUMNS, np.int64)
    wide = np.empty(len(raw) if wide_name else 0, np.uint8)
    capacity = max_values(len(raw))
    rows, cols = np.empty(capacity, np.int32), np.empty(capacity, np.int32)
    kinds, ends = np.empty(capacity, np.uint8), np.empty(capacity, np.int64)
    counts = np.zeros(7, np.int64)
    num_values = scan_json_lines(raw, text, names, name_ends, rows, cols, kinds, ends, counts, np.frombuffer(bytearray(wide_name), np.uint8), wide)
    if num_values == REFUSED:
        return None
    num_rows, num_columns, newlines, text_bytes, non_ascii, wide_column, wide_bytes = counts.tolist()
    records = []
    written = {False: 0, True: 0}  # where the text in each buffer ends so far
    for k in range(num_values):
        in_wide = int(cols[k]) == wide_column
        source = wide if in_wide else text
        records.append((int(rows[k]), int(cols[k]), int(kinds[k]), bytes(source[written[in_wide] : ends[k]])))
        written[in_wide] = int(ends[k])
    assert (text_bytes, wide_bytes) == (written[False], written[True])
    name_starts = [0, *name_ends[: num_columns - 1].tolist()]
    column_names = [bytes(names[s:e]) for s, e in zip(name_starts, name_ends[:num_columns])]
    return records, column_names, num_rows, newlines, bool(non_ascii)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_lines_chunk(), st.sampled_from([b"", b"text", b"id", "é".encode()]))
def test_the_scanner_equals_its_twin_on_hostile_lines(data, wide_name):
    # the values of the column named wide_name, if any, are written to a buffer of their own: the same records
    assert _scan(data, wide_name) == scan_json_lines_reference(data)


def test_the_wide_columns_values_follow_one_another_in_their_own_buffer():
    data = b'{"id": 1, "text": "ab"}\n{"text": null}\n{"id": 2}\n{"text": "c\\nd", "id": 3}\n'
    assert _scan(data, b"text") == _scan(data) == scan_json_lines_reference(data)
    assert _scan(data, b"nope") == _scan(data)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# characters (encoded surrogates among them) and stray bytes, mixed
_TEXT_AND_BYTES = st.lists(
    st.one_of(st.text(min_size=1, max_size=3).map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(min_size=1, max_size=2)),
    max_size=6,
).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(_TEXT_AND_BYTES, st.integers(0, 9))
def test_bytes_inside_a_string_are_taken_exactly_when_they_are_utf8(inner, pad):
    # sequences split every way by the 8-byte words, and cut short by the quote or the chunk's end
    inner = inner.replace(b'"', b"").replace(b"\\", b"")
    inner = bytes(b for b in inner if b >= 0x20)
    data = b'{"k": "' + b"a" * pad + inner + b'"}\n'
    found = _scan(data)
    assert (found is not None) == _utf8(data)
    if found is not None:
        assert found[0][0][3] == b"a" * pad + inner
    assert _scan(data[:-3]) is None  # the string never ends


@pytest.mark.parametrize(
    "sequence, valid",
    [
        (b"\xc2\x80", True), (b"\xdf\xbf", True), (b"\xe0\xa0\x80", True), (b"\xed\x9f\xbf", True), (b"\xee\x80\x80", True),
        (b"\xf0\x90\x80\x80", True), (b"\xf4\x8f\xbf\xbf", True),
        (b"\xc0\x80", False), (b"\xc1\xbf", False), (b"\xe0\x9f\xbf", False), (b"\xed\xa0\x80", False), (b"\xf0\x8f\xbf\xbf", False),
        (b"\xf4\x90\x80\x80", False), (b"\xf5\x80\x80\x80", False), (b"\xff", False), (b"\x80", False), (b"\xe2\x82", False),
    ],
)
def test_the_edges_of_utf8_are_those_of_pythons_decoder(sequence, valid):
    for where in range(9):  # the sequence at every offset of a word, and in the bytes after the last whole word
        data = b'{"k": "' + b"x" * where + sequence + b'"}\n'
        assert (_scan(data) is not None) == valid == _utf8(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=200), min_size=1, max_size=4), st.booleans())
def test_long_strings_are_unescaped_exactly_wherever_their_escapes_fall_in_a_word(texts, ensure_ascii):
    # the scanner reads strings 8 bytes at a time: escapes, quotes and the chunk's end at every offset
    data = "".join(json.dumps({"text": t}, ensure_ascii=ensure_ascii) + "\n" for t in texts).encode()
    found = _scan(data)
    assert found == scan_json_lines_reference(data)
    assert [r[3].decode() for r in found[0]] == texts


def test_flat_lines_become_records_in_order_and_columns_in_order_of_first_appearance():
    data = '{"text": "a\\nb", "id": -0}\n\r\n {"score":1.5e3 ,"text":"\\ud83d\\ude00é", "ok": true, "id": null}\r\n{}'.encode()
    records, names, num_rows, newlines, non_ascii = _scan(data)
    assert non_ascii  # é, written raw
    assert names == [b"text", b"id", b"score", b"ok"]
    assert (num_rows, newlines) == (3, 3)
    assert records == [
        (0, 0, STRING, b"a\nb"),
        (0, 1, INT, b"-0"),
        (1, 2, FLOAT, b"1.5e3"),
        (1, 0, STRING, "😀é".encode()),
        (1, 3, TRUE, b""),
        (1, 1, NULL, b""),
    ]


def test_what_the_scanner_leaves_to_the_general_parser():
    refused = [
        b'{"a": {"b": 1}}\n', b'{"a": [1]}\n', b'{"a": "\\ud800"}\n', b'{"a": "\\udc00"}\n', b'{"a": 1, "a": 2}\n',
        b'{"a": 0.0e400}\n', b'{"a": 1e100}\n', b'{"a": 01}\n', b'{"a": "x\ty"}\n', b'{"a": 1}{"a": 2}\n', b'{"a":\n1}\n',
        b'{"a": NaN}\n', b'{"a": 1,}\n', b"[1]\n", b'{"a": "' + b"1" * 10 + b'", "b": ' + b"1" * (41) + b"}\n",
    ]
    for data in refused:
        assert _scan(data) is None, data
        assert scan_json_lines_reference(data) is None, data


def test_more_fields_than_the_scanner_keeps_are_refused():
    def fields(n: int) -> bytes:
        return ("{" + ",".join(f'"k{i}": {i}' for i in range(n)) + "}\n").encode()

    assert _scan(fields(MAX_COLUMNS + 1)) is None
    assert _scan(fields(MAX_COLUMNS)) is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.lists(st.tuples(st.integers(0, 64), st.integers(0, 64)), max_size=8))
def test_gather_spans_equals_its_twin(src, spans):
    spans = [(min(a, b, len(src)), min(max(a, b), len(src))) for a, b in spans]
    starts = np.array([s for s, _ in spans], np.int64)
    ends = np.array([e for _, e in spans], np.int64)
    expected, expected_offsets = gather_spans_reference(src, starts.tolist(), ends.tolist())
    out, offsets = np.empty(len(expected), np.uint8), np.empty(len(spans) + 1, np.int32)
    assert gather_spans(np.frombuffer(src, np.uint8), starts, ends, out, offsets) == len(expected)
    assert out.tobytes() == expected and offsets.tolist() == expected_offsets
