"""Hostile and awkward input: each becomes a ConvertError naming file and line (or item and
field), a counted skip, or exactly the data given; never a crash, a raw Python exception,
a silently changed value, or a dataset that fails to read."""

import gzip
import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import fastload
from fastload import ConvertError, Dataset, FormatError

sources = importlib.import_module("fastload.convert.sources")
partition_work = importlib.import_module("fastload.convert.partition_work")
parse = importlib.import_module("fastload.convert.parse")
prescan = importlib.import_module("fastload.convert.prescan")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _assert_no_dataset(out):
    with pytest.raises(FormatError):
        Dataset(out)


# -- text that is not UTF-8 ---------------------------------------------------------


def test_a_json_string_holding_a_non_utf8_byte_names_the_line(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"text": "good"}\n{"text": "ab\xff"}\n{"text": "c"}\n')
    with pytest.raises(ConvertError, match=r"in.jsonl, line 2: not valid UTF-8"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    _assert_no_dataset(tmp_path / "out")


def test_on_error_skip_drops_a_non_utf8_line_counts_it_and_keeps_the_others_readable(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"text": "good"}\n{"text": "ab\xff"}\n{"text": "c"}\n')
    result = fastload.convert(path, tmp_path / "out", on_error="skip", quiet=True)
    assert result.num_skipped_rows == 1
    assert [r["text"] for r in Dataset(tmp_path / "out")] == ["good", "c"]


def test_a_non_utf8_byte_in_a_field_name_names_the_line(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"text": "a"}\n{"te\xffxt": "b"}\n')
    with pytest.raises(ConvertError, match=r"in.jsonl, line 2: not valid UTF-8"):
        fastload.convert(path, tmp_path / "out", quiet=True)


def test_a_non_utf8_line_deep_in_a_big_file_is_named_by_its_true_line_number(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    lines = [json.dumps({"text": f"line {i} ✓"}).encode() for i in range(3000)]
    lines[2345] = b'{"text": "\xc3\x28"}'
    path = _write(tmp_path / "big.jsonl", b"\n".join(lines) + b"\n")
    with pytest.raises(ConvertError, match=r"big.jsonl, line 2346: not valid UTF-8"):
        fastload.convert(path, tmp_path / "out", workers=2, quiet=True)


@pytest.mark.parametrize("first", [b"null\n", b"\n \r\n  null\n"])
def test_a_chunk_whose_first_value_is_null_is_named_not_a_segfault(tmp_path, first):
    # pyarrow's JSON reader (26.0) dies of a segfault when a block starts with a bare null
    path = _write(tmp_path / "in.jsonl", first + b'{"text": "a"}\n')
    null_line = first.count(b"\n")
    with pytest.raises(ConvertError, match=rf"in.jsonl, line {null_line}: expected a JSON object"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    result = fastload.convert(path, tmp_path / "out", on_error="skip", quiet=True)
    assert result.num_skipped_rows == 1


def test_a_lone_surrogate_escape_is_named_not_blamed_on_changing_types(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"text": "a"}\n{"text": "\\ud800x"}\n{"text": "pair \\ud83d\\ude00"}\n')
    with pytest.raises(ConvertError, match=r"in.jsonl, line 2: .*surrogate"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    result = fastload.convert(path, tmp_path / "out", on_error="skip", quiet=True)
    assert result.num_skipped_rows == 1
    assert [r["text"] for r in Dataset(tmp_path / "out")] == ["a", "pair 😀"]


def test_a_python_string_with_a_lone_surrogate_names_the_item_and_field(tmp_path):
    rows = [{"text": "fine"}, {"text": "a\ud800b"}]
    with pytest.raises(ConvertError, match=r"item 2, field 'text': .*not valid Unicode text"):
        fastload.convert(rows, tmp_path / "out", quiet=True)


@pytest.mark.parametrize("kind", ["parquet", "arrow", "table"])
def test_arrow_and_parquet_strings_that_are_not_utf8_are_refused(tmp_path, kind):
    table = pa.table({"n": [1, 2, 3], "text": pa.array([b"ok", b"ok", b"ab\xff"], pa.binary()).view(pa.string())})
    source = {"parquet": tmp_path / "in.parquet", "arrow": tmp_path / "in.arrow", "table": table}[kind]
    if kind == "parquet":
        pq.write_table(table, source)
    elif kind == "arrow":
        feather.write_feather(table, source)
    with pytest.raises(ConvertError, match=r"field 'text'.* row 3 .*not valid UTF-8"):
        fastload.convert(source, tmp_path / "out", quiet=True)
    _assert_no_dataset(tmp_path / "out")


def test_text_lines_that_are_not_utf8_are_named_or_skipped(tmp_path):
    path = _write(tmp_path / "in.txt", b"one\nab\xff\nthree\n")
    with pytest.raises(ConvertError, match=r"in.txt, line 2: not valid UTF-8"):
        fastload.convert(path, tmp_path / "out", text_lines=True, quiet=True)
    result = fastload.convert(path, tmp_path / "out", text_lines=True, on_error="skip", quiet=True)
    assert result.num_skipped_rows == 1 and [r["text"] for r in Dataset(tmp_path / "out")] == ["one", "three"]


# -- nesting deep enough to overflow a parser's stack --------------------------------

_CONVERT_IN_A_CHILD = textwrap.dedent(
    """
    import sys, fastload
    try:
        result = fastload.convert(sys.argv[1], sys.argv[2], on_error=sys.argv[3], quiet=True)
    except fastload.ConvertError as exc:
        print("ConvertError:", exc)
    else:
        print("rows", [int(r["a"]) for r in fastload.Dataset(sys.argv[2])], "skipped", result.num_skipped_rows)
    """
)


def _convert_in_a_child(path, out, on_error="fail") -> str:
    # A segfault must fail this test, not kill pytest.
    done = subprocess.run([sys.executable, "-c", _CONVERT_IN_A_CHILD, str(path), str(out), on_error], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"convert died with status {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("nest", [lambda d: "[" * d + "]" * d, lambda d: '{"a":' * d + "1" + "}" * d], ids=["lists", "objects"])
def test_a_line_nested_ten_thousand_deep_is_refused_naming_the_line_not_a_crash(tmp_path, nest):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "x": ' + nest(10_000) + '}\n{"a": 3}\n')
    out = _convert_in_a_child(path, tmp_path / "out")
    assert f"deep.jsonl, line 2: nested deeper than {prescan.MAX_JSON_DEPTH} levels" in out
    assert _convert_in_a_child(path, tmp_path / "skipped", on_error="skip").strip() == "rows [1, 3] skipped 1"


def test_nesting_up_to_the_limit_is_parsed_and_brackets_inside_strings_do_not_count(tmp_path):
    limit = prescan.MAX_JSON_DEPTH
    within = "[" * (limit - 1) + "]" * (limit - 1)  # the row object is one level
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"a": 1, "text": "[{" * 20_000}) + "\n" + '{"a": 2, "text": "x", "deep": ' + within + "}\n")
    fastload.convert(path, tmp_path / "out", columns=["a", "text"], quiet=True)
    assert [r["a"] for r in Dataset(tmp_path / "out")] == [1, 2]
    path.write_text('{"a": 1, "deep": [' + within + "]}\n")
    with pytest.raises(ConvertError, match=rf"in.jsonl, line 1: nested deeper than {limit} levels"):
        fastload.convert(path, tmp_path / "out2", columns=["a"], quiet=True)


def test_a_deep_line_is_found_across_scan_blocks_among_long_lines():
    limit = prescan.MAX_JSON_DEPTH
    long_line = json.dumps({"text": "x" * 2000, "ids": [[1, 2]] * 300}).encode()  # 601 openers, depth 3
    lines = [long_line] * 400
    k = prescan._SCAN_BLOCK // (len(long_line) + 1)  # the line where the first scan block ends
    pad = prescan._SCAN_BLOCK - k * (len(long_line) + 1) - limit // 2  # its brackets straddle that boundary
    lines[k] = b'{"pad": "' + b"y" * max(pad - 20, 0) + b'", "x": ' + b"[" * (limit + 5) + b"]" * (limit + 5) + b"}"
    with pytest.raises(parse.LineError) as caught:
        parse.parse_json_lines(b"\n".join(lines) + b"\n", "fail")
    assert caught.value.offset == k and f"nested deeper than {limit}" in caught.value.detail


@pytest.mark.parametrize("layout", ["short lines, one deep line late", "long lines", "no final newline"])
def test_the_depth_prescan_finds_exactly_the_lines_a_line_by_line_check_finds(layout):
    rng = np.random.default_rng(0)
    limit = prescan.MAX_JSON_DEPTH
    lines = []
    for i in range(30_000 if layout.startswith("short") else 600):
        width = int(rng.integers(2, 60 if layout.startswith("short") else 5000))
        lines.append(json.dumps({"i": i, "ids": [[1]] * (width // 8), "t": "x" * width}).encode())
    for k in (20_000, 20_001, 25_000) if layout.startswith("short") else (100, 599):
        lines[k] = b'{"x": ' + b"[" * (limit + k % 3) + b"]" * (limit + k % 3) + b"}"  # limit, limit+1, limit+2 deep
    data = b"\n".join(lines) + (b"" if layout == "no final newline" else b"\n")
    num_lines, deep = prescan.deep_lines(data)
    assert num_lines == data.count(b"\n")
    assert deep == {i for i, line in enumerate(data.split(b"\n")) if prescan.json_depth(line) > limit}
    assert len(deep) >= 1


@pytest.mark.parametrize(
    ("line", "depth"),
    [
        (b'{"a": [1, {"b": [2]}]}', 4),
        (b'{"a": "[[[[{{{{", "b": []}', 2),
        (b'{"a": "quote \\" [[[", "b": [[]]}', 3),  # an escaped quote does not end the string
        (b'{"a": "backslash \\\\", "b": [[]]}', 3),  # an escaped backslash does not escape the quote
        (b"[[[[[", 5),  # unclosed: counted as deep as it goes
    ],
)
def test_json_depth_counts_brackets_outside_strings_only(line, depth):
    assert prescan.json_depth(line) == depth


# -- integers that float64 or int64 cannot hold ----------------------------------------


@pytest.mark.parametrize("big", [2**63, 2**64, -(2**63) - 1, 10**30])
def test_a_json_integer_beyond_int64_is_refused_naming_field_and_line(tmp_path, big):
    path = _write(tmp_path / "in.jsonl", _jsonl([{"n": 1}, {"n": 2**53 + 1}, {"n": big}]))
    with pytest.raises(ConvertError, match=rf"in.jsonl, line 3: field 'n' holds the integer {big}, outside int64"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    _assert_no_dataset(tmp_path / "out")
    result = fastload.convert(path, tmp_path / "out", on_error="skip", quiet=True)
    assert result.num_skipped_rows == 1
    values = [r["n"] for r in Dataset(tmp_path / "out")]
    assert values == [1, 2**53 + 1] and Dataset(tmp_path / "out").schema["n"].dtype == "int64"


def test_a_json_integer_that_float64_would_round_is_refused_where_the_field_holds_floats(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"n": 9007199254740993}\n{"n": 1.5}\n')
    with pytest.raises(ConvertError, match=r"in.jsonl, line 1: field 'n' holds the integer 9007199254740993, which float64"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    _write(tmp_path / "ok.jsonl", b'{"n": 9007199254740992}\n{"n": 1.5}\n{"n": 1e300}\n')
    fastload.convert(tmp_path / "ok.jsonl", tmp_path / "ok", quiet=True)  # exact as float64: kept
    assert [r["n"] for r in Dataset(tmp_path / "ok")] == [2.0**53, 1.5, 1e300]


def test_a_huge_integer_in_a_json_list_is_refused_naming_the_field(tmp_path):
    path = _write(tmp_path / "in.jsonl", b'{"ids": [1, 2, 3]}\n{"ids": [1, 9223372036854775808]}\n')
    with pytest.raises(ConvertError, match=r"in.jsonl, line 2: field 'ids' holds the integer 9223372036854775808, outside int64"):
        fastload.convert(path, tmp_path / "out", quiet=True)


def test_an_integer_column_that_meets_floats_in_a_later_part_never_loses_digits(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    rows = [{"n": 2**53 + 1}] + [{"n": i} for i in range(2000)] + [{"n": 0.5}]
    path = _write(tmp_path / "in.jsonl", _jsonl(rows))
    with pytest.raises(ConvertError, match=r"field 'n'"):
        fastload.convert(path, tmp_path / "out", quiet=True)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (b"n,s\n1,a\n9223372036854775808,b\n", r"row 2: field 'n' holds the integer 9223372036854775808, outside int64"),
        (b"n,s\n9007199254740993,a\n1.5,b\n", r"row 1: field 'n' holds the integer 9007199254740993, which float64"),
    ],
)
def test_a_csv_integer_that_float64_would_change_is_refused_naming_the_row(tmp_path, csv, message):
    with pytest.raises(ConvertError, match=rf"in.csv, {message}"):
        fastload.convert(_write(tmp_path / "in.csv", csv), tmp_path / "out", quiet=True)


def test_large_csv_floats_in_many_blocks_are_kept_and_a_late_rounded_integer_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    values = [f"{i}e20" if i % 2 else f"{i}.5" for i in range(3000)] + ["9007199254740992"]
    fastload.convert(_write(tmp_path / "ok.csv", ("x\n" + "\n".join(values) + "\n").encode()), tmp_path / "ok", quiet=True)
    assert [r["x"] for r in Dataset(tmp_path / "ok")] == [float(v) for v in values]
    values[2500] = "9007199254740993"
    with pytest.raises(ConvertError, match=r"bad.csv, row 2501: field 'x' holds the integer 9007199254740993"):
        fastload.convert(_write(tmp_path / "bad.csv", ("x\n" + "\n".join(values) + "\n").encode()), tmp_path / "bad", quiet=True)


def test_python_integers_beyond_int64_name_the_item_and_field(tmp_path):
    for rows, item in (([{"n": 1}, {"n": 2**63}], 2), ([{"n": -(2**63) - 1}], 1), ([{"n": 1.5}, {"n": 2**53 + 1}], 2)):
        with pytest.raises(ConvertError, match=rf"item {item}, field 'n': .*integer"):
            fastload.convert(rows, tmp_path / "out", quiet=True)


def test_a_dataframe_column_pyarrow_cannot_take_is_named(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a", "b"], "n": [1, 2**64]})
    with pytest.raises(ConvertError, match=r"column 'n': the DataFrame cannot be converted"):
        fastload.convert(frame, tmp_path / "out", quiet=True)


def test_numpy_uint64_values_are_stored_exactly(tmp_path):
    rows = [{"n": np.uint64(2**64 - 1)}, {"n": np.uint64(3)}]
    fastload.convert(rows, tmp_path / "out", quiet=True)
    ds = Dataset(tmp_path / "out")
    assert ds.schema["n"].dtype == "uint64" and [int(r["n"]) for r in ds] == [2**64 - 1, 3]


# -- numpy arrays of varying length ----------------------------------------------------------


def test_variable_length_1d_arrays_become_a_ragged_list_column(tmp_path):
    arrays = [np.array([1, 2, 3]), np.array([4, 5]), np.array([], np.int64), np.array([70_000])]
    fastload.convert([{"tokens": a, "label": i} for i, a in enumerate(arrays)], tmp_path / "arrays", quiet=True)
    fastload.convert([{"tokens": a.tolist(), "label": i} for i, a in enumerate(arrays)], tmp_path / "lists", quiet=True)
    ds = Dataset(tmp_path / "arrays")
    assert ds.schema == Dataset(tmp_path / "lists").schema
    assert (ds.schema["tokens"].kind, ds.schema["tokens"].dtype) == ("tokens", "uint32")
    for i, a in enumerate(arrays):
        assert np.array_equal(ds[i]["tokens"], a)


def test_a_ragged_array_field_stays_ragged_in_later_chunks_that_happen_to_be_uniform(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_ROWS", 4)
    arrays = [np.arange(i % 3 + 1, dtype=np.uint16) for i in range(4)] + [np.arange(2, dtype=np.uint16)] * 8
    fastload.convert(({"ids": a} for a in arrays), tmp_path / "out", quiet=True)
    ds = Dataset(tmp_path / "out")
    assert ds.schema["ids"].kind == "tokens"
    assert all(np.array_equal(ds[i]["ids"], a) for i, a in enumerate(arrays))


def test_a_fixed_shape_array_field_that_varies_in_a_later_chunk_is_an_error_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_ROWS", 4)
    arrays = [np.arange(3)] * 6 + [np.arange(2)]
    with pytest.raises(ConvertError, match=r"item 7, field 'ids': .*shape \(2,\).*shape \(3,\).*tolist\(\)"):
        fastload.convert(({"ids": a} for a in arrays), tmp_path / "out", quiet=True)


def test_arrays_of_more_than_one_dimension_must_share_a_shape(tmp_path):
    rows = [{"image": np.zeros((2, 3))}, {"image": np.zeros((3, 3))}]
    with pytest.raises(ConvertError, match=r"item 2, field 'image': expected an array of shape \(2, 3\)"):
        fastload.convert(rows, tmp_path / "out", quiet=True)


# -- which file each text row came from ---------------------------------------------------------


def test_text_files_record_which_file_each_row_came_from(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("doc a")
    (corpus / "sub" / "b.txt").write_text("line 1\nline 2\n")
    fastload.convert(corpus, tmp_path / "docs", quiet=True)
    assert list(Dataset(tmp_path / "docs")) == [
        {"text": "doc a", "source_file": "a.txt"},
        {"text": "line 1\nline 2\n", "source_file": "sub/b.txt"},
    ]
    fastload.convert(str(corpus / "**" / "*.txt"), tmp_path / "lines", text_lines=True, quiet=True)
    assert [(r["text"], r["source_file"]) for r in Dataset(tmp_path / "lines")] == [
        ("doc a", "a.txt"),
        ("line 1", "sub/b.txt"),
        ("line 2", "sub/b.txt"),
    ]
    fastload.convert(corpus / "a.txt", tmp_path / "one", quiet=True)
    assert list(Dataset(tmp_path / "one")) == [{"text": "doc a", "source_file": "a.txt"}]


def test_convert_help_documents_the_source_file_column(capsys):
    from fastload.cli import main

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "source_file" in capsys.readouterr().out


# -- inputs that vanish or break while being read ------------------------------------------------


def _meddling(action, *, after_chunks=1):
    """A stand-in for file_chunks that calls `action()` once the first file has yielded some chunks."""
    real = sources.file_chunks
    calls = []

    def file_chunks(*args, **kwargs):
        calls.append(args)
        for i, chunk in enumerate(real(*args, **kwargs)):
            if len(calls) == 1 and i == after_chunks:
                action()
            yield chunk

    return file_chunks


def _delete(path, *, replace_with_folder=False):
    def action():
        path.unlink()
        if replace_with_folder:
            path.mkdir()

    return action


@pytest.mark.parametrize("replace_with_folder", [False, True])
def test_an_input_deleted_mid_run_is_a_convert_error_and_no_dataset_is_left(tmp_path, monkeypatch, replace_with_folder):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [{"text": f"row {i}"} for i in range(2000)]
    _write(corpus / "a.jsonl", _jsonl(rows))
    _write(corpus / "b.jsonl", _jsonl(rows))
    monkeypatch.setattr(partition_work, "file_chunks", _meddling(_delete(corpus / "b.jsonl", replace_with_folder=replace_with_folder)))
    reason = "Is a directory" if replace_with_folder else "No such file or directory"
    with pytest.raises(ConvertError, match=rf"cannot read input '.*b.jsonl': .*{reason}"):
        fastload.convert(corpus, tmp_path / "out", workers=1, quiet=True)
    assert not (tmp_path / "out").exists()


def test_a_parquet_file_deleted_between_row_groups_is_a_convert_error(tmp_path, monkeypatch):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": np.arange(3000)}), path, row_group_size=500)
    monkeypatch.setattr(partition_work, "file_chunks", _meddling(_delete(path), after_chunks=2))
    with pytest.raises(ConvertError, match=r"cannot read input '.*in.parquet': .*No such file"):
        fastload.convert(path, tmp_path / "out", workers=1, quiet=True)
    _assert_no_dataset(tmp_path / "out")


def test_truncated_and_mislabelled_compressed_inputs_are_convert_errors(tmp_path):
    whole = gzip.compress(_jsonl([{"text": "x" * 100}] * 100))
    _write(tmp_path / "cut.jsonl.gz", whole[: len(whole) // 2])
    with pytest.raises(ConvertError, match=r"cannot read input '.*cut.jsonl.gz': .*(ended|truncated)"):
        fastload.convert(tmp_path / "cut.jsonl.gz", tmp_path / "out", quiet=True)
    _write(tmp_path / "plain.jsonl.gz", b'{"text": "not gzip"}\n')
    with pytest.raises(ConvertError, match=r"cannot read input '.*plain.jsonl.gz': .*gzip"):
        fastload.convert(tmp_path / "plain.jsonl.gz", tmp_path / "out", quiet=True)


@pytest.mark.parametrize("change", ["truncate", "append"])
def test_an_input_written_to_mid_run_is_refused_not_silently_cut_short(tmp_path, monkeypatch, change):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    path = _write(tmp_path / "in.jsonl", _jsonl([{"text": f"row {i}"} for i in range(2000)]))

    def action():
        if change == "truncate":
            data = path.read_bytes()
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n", 0, len(data) // 2) + 1)  # after a whole line: no half line gives it away
        else:
            with open(path, "ab") as f:
                f.write(_jsonl([{"text": "late"}]))

    monkeypatch.setattr(partition_work, "file_chunks", _meddling(action))
    with pytest.raises(ConvertError, match=r"input '.*in.jsonl' changed while it was being converted"):
        fastload.convert(path, tmp_path / "out", workers=1, quiet=True)
    assert not (tmp_path / "out").exists()


_TRUNCATE_ARROW_IN_A_CHILD = textwrap.dedent(
    """
    import importlib, os, sys, fastload
    sources = importlib.import_module("fastload.convert.sources")
    partition_work = importlib.import_module("fastload.convert.partition_work")
    real = sources.file_chunks

    def file_chunks(*args, **kwargs):
        for i, chunk in enumerate(real(*args, **kwargs)):
            if i == 2:
                os.truncate(sys.argv[1], 1000)
            yield chunk

    partition_work.file_chunks = file_chunks
    try:
        fastload.convert(sys.argv[1], sys.argv[2], workers=1, quiet=True)
    except fastload.ConvertError as exc:
        print("ConvertError:", exc)
    """
)


def test_an_arrow_input_truncated_mid_run_is_a_convert_error_not_sigbus(tmp_path):
    path = tmp_path / "in.arrow"
    table = pa.table({"text": ["x" * 1000] * 20_000})
    with pa.ipc.new_file(str(path), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=1000):
            writer.write_batch(batch)
    done = subprocess.run([sys.executable, "-c", _TRUNCATE_ARROW_IN_A_CHILD, str(path), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"convert died with status {done.returncode}: {done.stderr[-2000:]}"
    assert "ConvertError: cannot read input" in done.stdout and "in.arrow" in done.stdout
    _assert_no_dataset(tmp_path / "out")
