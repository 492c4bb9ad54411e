"""Bad input: clear errors naming file and line, or counted skips; never a complete-looking dataset."""

import json

import pytest

import fastload
from fastload import ConvertError, Dataset, FormatError


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_malformed_json_line_names_file_and_line(tmp_path):
    lines = [json.dumps({"text": f"ok {i}"}) for i in range(10)]
    lines[6] = '{"text": "broken'
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConvertError, match=r"bad.jsonl, line 7: invalid JSON: Unterminated string"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_on_error_skip_drops_bad_lines_and_records_the_count(tmp_path):
    lines = [json.dumps({"text": f"ok {i}"}) for i in range(10)]
    lines[2] = "not json"
    lines[5] = "[1, 2, 3]"  # valid JSON, but not an object
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    result = fastload.convert(path, tmp_path / "out", on_error="skip", quiet=True)
    ds = Dataset(tmp_path / "out")
    assert [r["text"] for r in ds] == [f"ok {i}" for i in range(10) if i not in (2, 5)]
    assert result.num_skipped_rows == 2 and ds.index.num_skipped_rows == 2


def test_field_that_widens_between_files_is_promoted(tmp_path):
    a = _write_lines(tmp_path / "a.jsonl", [json.dumps({"x": i}) for i in range(5)])
    b = _write_lines(tmp_path / "b.jsonl", [json.dumps({"x": i + 0.5}) for i in range(5)])
    fastload.convert([a, b], tmp_path / "out", quiet=True)
    ds = Dataset(tmp_path / "out")
    assert ds.schema["x"].dtype == "float64"
    assert [r["x"] for r in ds] == [0, 1, 2, 3, 4, 0.5, 1.5, 2.5, 3.5, 4.5]


def test_field_that_changes_kind_between_files_names_both_files(tmp_path):
    a = _write_lines(tmp_path / "a.jsonl", [json.dumps({"x": i}) for i in range(5)])
    b = _write_lines(tmp_path / "b.jsonl", [json.dumps({"x": "text"}) for i in range(5)])
    with pytest.raises(ConvertError, match=r"field 'x' changes type: .*a.jsonl gave it scalar \(int64\), .*b.jsonl has text"):
        fastload.convert([a, b], tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_field_that_changes_type_inside_a_file_names_the_lines(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps({"x": 1}), json.dumps({"x": "one"})])
    with pytest.raises(ConvertError, match=r"a.jsonl, lines 1-2: .*different types"):
        fastload.convert(path, tmp_path / "out", quiet=True)


def test_empty_input_is_an_error_not_an_empty_dataset(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ConvertError, match="holds no rows"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    with pytest.raises(FormatError):
        Dataset(tmp_path / "out")


def test_missing_input_and_unknown_suffix_are_clear_errors(tmp_path):
    with pytest.raises(ConvertError, match="does not exist"):
        fastload.convert(tmp_path / "nope.jsonl", tmp_path / "out", quiet=True)
    (tmp_path / "data.weird").write_text("x")
    with pytest.raises(ConvertError, match="pass --format"):
        fastload.convert(tmp_path / "data.weird", tmp_path / "out", quiet=True)


def test_existing_output_needs_overwrite_and_overwrite_replaces_it(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps({"v": i}) for i in range(3)])
    fastload.convert(path, tmp_path / "out", quiet=True)
    with pytest.raises(fastload.ConfigError, match="not empty; pass --overwrite"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    path2 = _write_lines(tmp_path / "b.jsonl", [json.dumps({"w": i}) for i in range(4)])
    fastload.convert(path2, tmp_path / "out", overwrite=True, quiet=True)
    assert Dataset(tmp_path / "out").schema.names == ["w"] and len(Dataset(tmp_path / "out")) == 4


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps({"v": 1})])
    with pytest.raises(fastload.ConfigError, match=r"holds files fastload did not write \(precious.txt\)"):
        fastload.convert(path, tmp_path / "out", overwrite=True, quiet=True)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_overwrite_that_fails_before_writing_leaves_the_old_dataset_intact(tmp_path):
    good = _write_lines(tmp_path / "a.jsonl", [json.dumps({"v": i}) for i in range(3)])
    fastload.convert(good, tmp_path / "out", quiet=True)
    bad = _write_lines(tmp_path / "b.jsonl", ["{broken"])
    with pytest.raises(ConvertError):
        fastload.convert(bad, tmp_path / "out", overwrite=True, quiet=True)
    assert [r["v"] for r in Dataset(tmp_path / "out")] == [0, 1, 2]


def test_overwrite_that_fails_while_writing_keeps_the_old_dataset_and_leaves_nothing_of_its_own(tmp_path):
    fastload.convert(_write_lines(tmp_path / "old.jsonl", [json.dumps({"v": 1})]), tmp_path / "out", quiet=True)
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    good = _write_lines(tmp_path / "a.jsonl", [json.dumps({"v": i}) for i in range(3)])
    bad = _write_lines(tmp_path / "b.jsonl", ["{broken"])
    with pytest.raises(ConvertError, match="b.jsonl, line 1"):
        fastload.convert([good, bad], tmp_path / "out", overwrite=True, workers=1, quiet=True)
    assert [r["v"] for r in Dataset(tmp_path / "out")] == [1]  # the old dataset is replaced only by a complete new one
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before == ["index.json", "shard-00000-0000.arrow"]


def test_unsupported_nested_field_suggests_columns(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps({"text": "x", "meta": {"a": 1}})])
    with pytest.raises(ConvertError, match=r"field 'meta'.*--columns"):
        fastload.convert(path, tmp_path / "out", quiet=True)
    fastload.convert(path, tmp_path / "out", columns=["text"], quiet=True)


def test_a_field_null_everywhere_is_dropped_and_reported(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps({"text": "x", "meta": None})] * 3)
    result = fastload.convert(path, tmp_path / "out", quiet=True)
    assert result.dropped_columns == ["meta"]
    assert Dataset(tmp_path / "out").schema.names == ["text"]


def test_a_field_null_at_first_gets_its_type_from_later_input(tmp_path):
    a = _write_lines(tmp_path / "a.jsonl", [json.dumps({"text": "x", "label": None})] * 3)
    b = _write_lines(tmp_path / "b.jsonl", [json.dumps({"text": "y", "label": 7})] * 2)
    fastload.convert([a, b], tmp_path / "out", quiet=True)
    assert [r["label"] for r in Dataset(tmp_path / "out")] == [None, None, None, 7, 7]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_line_deep_in_a_big_file_is_named_by_its_true_line_number(tmp_path, monkeypatch, workers):
    from fastload.convert import sources

    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)  # many chunks, parsed in parallel
    lines = [json.dumps({"text": f"line {i} " + "x" * (i % 50)}) for i in range(3000)]
    lines[2345] = '{"text": oops}'
    path = _write_lines(tmp_path / "big.jsonl", lines)
    with pytest.raises(ConvertError, match=r"big.jsonl, line 2346: invalid JSON"):
        fastload.convert(path, tmp_path / "out", workers=workers, quiet=True)
    lines[2345] = json.dumps({"text": "fixed"})
    _write_lines(tmp_path / "big.jsonl", lines)
    fastload.convert(path, tmp_path / "out", workers=workers, quiet=True)
    assert [r["text"] for r in Dataset(tmp_path / "out")][2345] == "fixed"


def test_overwrite_never_deletes_files_fastload_did_not_write(tmp_path):
    import pyarrow as pa
    import pyarrow.feather as feather

    work = tmp_path / "work"
    work.mkdir()
    feather.write_feather(pa.table({"text": ["a", "b"]}), work / "raw.arrow")
    (work / "notes.txt").write_text("mine")
    with pytest.raises(ConvertError, match="inside the output folder"):
        fastload.convert(work / "raw.arrow", work, overwrite=True, quiet=True)
    source = _write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "x"})])
    with pytest.raises(fastload.ConfigError, match=r"files fastload did not write \(notes.txt, raw.arrow\)"):
        fastload.convert(source, work, overwrite=True, quiet=True)
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "raw.arrow"]


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_lines(corpus / "a.jsonl", [json.dumps({"text": f"t{i}"}) for i in range(5)])
    for _ in range(2):
        fastload.convert(corpus, corpus / "ds", overwrite=True, quiet=True)
        assert [r["text"] for r in Dataset(corpus / "ds")] == [f"t{i}" for i in range(5)]


def test_columns_naming_a_field_no_input_has_is_an_error_listing_the_fields(tmp_path, capsys):
    from fastload.cli import main

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a", "label": 1}\n{"text": "b", "extra": 2}\n')
    with pytest.raises(fastload.ConfigError, match=r"--columns names 'txt', which no input row has; the inputs' fields are: text, label, extra"):
        fastload.convert(source, tmp_path / "out", columns=["txt", "label"], quiet=True)
    assert not (tmp_path / "out" / "index.json").exists()
    assert main(["convert", str(source), "-o", str(tmp_path / "cli"), "--columns", "txt", "--quiet"]) == 1
    assert "which no input row has" in capsys.readouterr().err
    fastload.convert(source, tmp_path / "kept", columns=["text", "extra"], quiet=True)  # a field some rows lack is fine
    assert fastload.Dataset(tmp_path / "kept").schema.names == ["text", "extra"]
