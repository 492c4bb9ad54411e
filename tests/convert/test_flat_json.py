"""The flat-object JSON scanner against pyarrow's reader: identical tables, or identical errors, whatever the lines.

Each chunk is parsed twice by `parse_json_lines`, with the scanner on and
with `FASTLOAD_DISABLE_FLAT_JSON=1` (pyarrow's reader, then Python's json for
the lines it rejects), and the outcomes must match to the byte: the table's
Arrow IPC serialisation, or the LineError's offset and message.
"""

import contextlib
import gzip
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from tests.convert.json_lines_strategies import HOSTILE_NUMBERS, HOSTILE_VALUES, json_lines_chunk

parse = importlib.import_module("fastload.convert.parse")
flat_json = importlib.import_module("fastload.convert.flat_json")
sources = importlib.import_module("fastload.convert.sources")
pipeline = importlib.import_module("fastload.convert.pipeline")

SWITCH = "FASTLOAD_DISABLE_FLAT_JSON"
DEMO_CORPUS = Path(fastload.__file__).parent / "assets" / "demo_corpus.jsonl.gz"


@contextlib.contextmanager
def _flat_json(enabled: bool):
    """The scanner on or off (hypothesis runs many examples per test, so no function-scoped monkeypatch)."""
    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = "0" if enabled else "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[SWITCH]
        else:
            os.environ[SWITCH] = before


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _outcome(data: bytes, on_error: str, *, flat: bool):
    with _flat_json(flat):
        try:
            table, skipped, num_lines = parse.parse_json_lines(memoryview(bytearray(data)), on_error)
        except parse.LineError as error:
            return "LineError", error.offset, error.detail, error.last_offset
        except Exception as error:  # noqa: BLE001 - whatever the old path raises, the new one must raise too
            return type(error).__name__, str(error)
    return "table", str(table.schema), _ipc_bytes(table), skipped, num_lines


def _assert_same(data: bytes, on_error: str = "fail"):
    expected = _outcome(data, on_error, flat=False)
    assert _outcome(data, on_error, flat=True) == expected
    return expected


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_lines_chunk(), st.sampled_from(["fail", "skip"]))
def test_hostile_chunks_give_the_same_table_or_error_with_and_without_the_scanner(data, on_error):
    _assert_same(data, on_error)


@st.composite
def typed_rows(draw) -> bytes:
    """Flat rows where each field keeps one type (string, int64, float, bool), fields missing or null at random."""
    kinds = draw(st.dictionaries(st.sampled_from(["text", "id", "score", "ok", "é", ""]), st.sampled_from(["str", "int", "float", "bool", "null"]), min_size=1, max_size=5))
    values = {
        "str": st.text(max_size=20),
        "int": st.integers(-(2**63), 2**63 - 1),
        # repr() of these has at most 2 exponent digits, which the scanner takes (hostile chunks try the rest)
        "float": st.floats(-(2.0**52), 2.0**52, allow_nan=False).filter(lambda x: x == 0 or abs(x) >= 1e-99),
        "bool": st.booleans(),
        "null": st.none(),
    }
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        keys = draw(st.permutations(list(kinds)))[: draw(st.integers(0, len(kinds)))]
        rows.append({k: draw(values[kinds[k]] | st.none()) if draw(st.integers(0, 4)) else None for k in keys})
    ensure_ascii = draw(st.booleans())
    return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_rows())
def test_flat_rows_of_consistent_types_are_read_by_the_scanner_into_the_same_table(data):
    expected = _assert_same(data)
    taken = flat_json.read_flat_json_lines(data)
    if any(json.loads(line) for line in data.splitlines()):  # some field: the scanner must have done the work,
        assert taken is not None  # so the comparison above was not the old path against itself


@pytest.mark.parametrize("wide", ["", "a", "b", "c", "missing"])
def test_the_column_written_apart_gives_the_same_table_whichever_it_is(monkeypatch, wide):
    # the scanner writes the column of the last chunk's widest text to a buffer of its own: a guess, never a change
    data = b'{"a": "x", "b": 1, "c": null}\n{"b": 2.5, "a": null}\n{"c": "\xc3\xa9", "a": "the widest"}\n{}\n{"a": "", "b": -1}\n'
    expected = _outcome(data, "fail", flat=False)
    monkeypatch.setattr(flat_json, "_wide_name", np.frombuffer(bytearray(wide.encode()), np.uint8))
    assert flat_json.read_flat_json_lines(data) is not None
    monkeypatch.setattr(flat_json, "_wide_name", np.frombuffer(bytearray(wide.encode()), np.uint8))
    assert _outcome(data, "fail", flat=True) == expected
    assert bytes(flat_json._wide_name) == b"a"  # the next chunk writes the widest column of this one apart


HOSTILE_LINES = [
    *[f'{{"a": {n}}}\n{{"a": 1}}\n' for n in HOSTILE_NUMBERS],
    *[f'{{"a": 1.5}}\n{{"a": {n}}}\n' for n in HOSTILE_NUMBERS],
    *[f'{{"a": "x"}}\n{{"a": {v}}}\n' for v in HOSTILE_VALUES],
    '{"a": "\\ud83d\\ude00 \\u00e9 \\u4e2d 😀 é 中"}\n',  # pairs, 2-, 3- and 4-byte characters
    '{"a": "\\ud800"}\n{"a": "ok"}\n',  # a lone high surrogate
    '{"a": "ok"}\n{"a": "\\udfff"}\n',  # a lone low surrogate
    '{"a": "\\"\\\\\\/\\b\\f\\n\\r\\t"}\n',
    '{"\\u0061": 1, "b\\n": "x"}\n{"a": 2}\n',  # keys with escapes, one the same key as "a"
    '{"a": 1, "a": 2}\n',
    '{"a": 1}\n{"b": "x"}\n{}\n{"a": null, "c": null}\n',  # missing keys, an empty object, a null-only column
    '{"a": null}\n{"a": null}\n',
    '{"a": 1}\n{"a": 2.5}\n{"a": -0}\n',  # ints and floats in one column
    '{"a": 1}\n{"a": "1"}\n',  # a number, then a string
    '{"a": true}\n{"a": 0}\n',
    '{"a": 9007199254740993}\n{"a": 0.5}\n',  # an integer float64 would round, among floats
    '\n\n  \n{"a": 1}\n\n',  # empty and blank lines
    ' \t{ "a" : 1 , "b" :\t"x" } \r\n{"a":2,"b":"y"}\r\n',  # whitespace around every token, CRLF
    '{"a": 1}\n{"a": 2}',  # the last line without its newline
    '{"a": 1}{"a": 2}\n',
    '{"a":\n1}\n',
    '{"a": 1}\n[1, 2]\n',
    '{"a": "x\ty"}\n',
    "{}\n{}\n",
    "\n",
    "",
]


@pytest.mark.parametrize("text", HOSTILE_LINES)
@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_hostile_lines_give_the_same_table_or_error_with_and_without_the_scanner(text, on_error):
    _assert_same(text.encode("utf-8", "surrogatepass"), on_error)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])
def test_text_that_is_not_utf8_gives_the_same_error(bad):
    data = b'{"text": "good"}\n{"text": "a' + bad + b'b"}\n'
    assert _assert_same(data)[0] == "LineError"
    assert flat_json.read_flat_json_lines(data) is None


def test_lines_nested_deeper_than_the_limit_give_the_same_error():
    deep = b'{"a": ' + b"[" * 600 + b"]" * 600 + b"}\n"
    assert _assert_same(b'{"a": 1}\n' + deep)[0] == "LineError"


def test_the_scanner_reads_the_demo_corpus_into_pyarrows_table():
    data = gzip.decompress(DEMO_CORPUS.read_bytes())
    assert flat_json.read_flat_json_lines(data) is not None
    assert _assert_same(data)[0] == "table"


MIXED_ROWS = [
    {"text": "plain", "id": 1, "score": 0.25, "ok": True, "url": None},
    {"text": "é 中 😀\n\"quoted\"\t", "id": -(2**63), "ok": False, "url": "https://example.org/a?b=c"},
    {"id": 2**63 - 1, "score": -0.0, "text": "", "extra": None},
    {"text": "missing fields", "score": 1e-300},
]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_conversion_writes_the_same_bytes_with_and_without_the_scanner(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)  # many chunks, some holding only some of the fields
    monkeypatch.setattr(pipeline, "FLAT_JSON_MIN_BYTES", 0)  # the scanner for these small files too
    read = _count_calls(monkeypatch)
    lines = [json.dumps({**MIXED_ROWS[i % len(MIXED_ROWS)], "n": i}, ensure_ascii=i % 3 == 0) for i in range(400)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    demo = tmp_path / "demo.jsonl"
    demo.write_bytes(gzip.decompress(DEMO_CORPUS.read_bytes()))
    folders = {}
    for flat in (True, False):
        monkeypatch.setenv(SWITCH, "0" if flat else "1")
        read["chunks"] = 0 if flat else read["chunks"]
        out = tmp_path / f"out-{flat}"
        fastload.convert([path], out, workers=workers, quiet=True)
        fastload.convert([demo], out / "demo", workers=workers, quiet=True)
        folders[flat] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert read["chunks"] > 10  # the scanner read the chunks while it was on (and none while it was off)
    assert folders[True].keys() == folders[False].keys()
    for name in folders[True]:
        assert folders[True][name] == folders[False][name], name


def _count_calls(monkeypatch) -> dict:
    """Count the scanner's calls in `read["chunks"]`."""
    read = {"chunks": 0}
    original = flat_json.read_flat_json_lines

    def counting(data):
        read["chunks"] += 1
        return original(data)

    monkeypatch.setattr(flat_json, "read_flat_json_lines", counting)
    return read


def test_a_small_conversion_does_not_load_the_scanner_and_a_large_one_warms_it_up_before_the_clock(tmp_path, monkeypatch):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MIXED_ROWS))
    read = _count_calls(monkeypatch)
    monkeypatch.setattr(flat_json, "_warm", False)  # as in a fresh process: warmed up once per process
    fastload.convert(path, tmp_path / "small", quiet=True)
    assert read["chunks"] == 0  # below FLAT_JSON_MIN_BYTES: pyarrow's reader alone
    monkeypatch.setattr(pipeline, "FLAT_JSON_MIN_BYTES", path.stat().st_size)
    fastload.convert(path, tmp_path / "large", quiet=True)
    assert read["chunks"] == 3  # the two warm-up calls, then the file's one chunk


def test_a_chunk_larger_than_the_scanner_takes_is_left_to_pyarrow(monkeypatch):
    data = b'{"text": "a"}\n' * 100
    assert flat_json.read_flat_json_lines(data) is not None
    monkeypatch.setattr(flat_json, "_MAX_CHUNK_BYTES", len(data) - 1)
    assert flat_json.read_flat_json_lines(data) is None
    assert _assert_same(data)[0] == "table"
