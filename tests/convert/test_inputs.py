"""Every input kind `fastload convert` accepts becomes the same rows."""

import gzip
import json

import lz4.frame
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import fastload
from fastload import Dataset

ROWS = [{"text": f"document {i} — ünïcode ✓ {'x' * (i % 17)}", "n": i, "score": i / 4} for i in range(1000)]


def _jsonl_bytes(rows=ROWS) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _rows(path) -> list[dict]:
    return list(Dataset(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.lz4", ".jsonl.zst", ".ndjson"])
def test_json_lines_plain_and_compressed(tmp_path, suffix):
    data = _jsonl_bytes()
    path = tmp_path / f"in{suffix}"
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
    elif suffix.endswith(".lz4"):
        data = lz4.frame.compress(data)
    elif suffix.endswith(".zst"):
        zstandard = pytest.importorskip("zstandard")
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    fastload.convert(path, tmp_path / "out", quiet=True)
    assert _rows(tmp_path / "out") == ROWS


def test_parquet_csv_arrow_and_feather(tmp_path):
    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=300)
    pacsv.write_csv(table, tmp_path / "a.csv")
    feather.write_feather(table, tmp_path / "a.feather")
    with pa.ipc.new_file(str(tmp_path / "a.arrow"), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=128):
            writer.write_batch(batch)
    for name in ("a.parquet", "a.csv", "a.feather", "a.arrow"):
        out = tmp_path / f"out-{name}"
        fastload.convert(tmp_path / name, out, quiet=True)
        assert _rows(out) == ROWS, name


def test_text_files_one_document_per_file_or_per_line(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("second file\nstill the second document\n")
    (folder / "a.txt").write_text("first file ✓")
    fastload.convert(folder, tmp_path / "per-file", quiet=True)
    assert [r["text"] for r in _rows(tmp_path / "per-file")] == ["first file ✓", "second file\nstill the second document\n"]
    (tmp_path / "lines.txt").write_bytes(b"one\r\ntwo\n\nthree")
    fastload.convert(tmp_path / "lines.txt", tmp_path / "per-line", text_lines=True, text_field="body", quiet=True)
    assert _rows(tmp_path / "per-line") == [{"body": line, "source_file": "lines.txt"} for line in ("one", "two", "three")]


def test_globs_and_folders_are_read_in_sorted_order(tmp_path):
    for k in range(3):
        (tmp_path / f"part-{k}.jsonl").write_bytes(_jsonl_bytes(ROWS[k * 100 : (k + 1) * 100]))
    fastload.convert(str(tmp_path / "part-*.jsonl"), tmp_path / "out", quiet=True)
    assert _rows(tmp_path / "out") == ROWS[:300]


def test_python_sources_iterable_pandas_arrow_table(tmp_path):
    pd = pytest.importorskip("pandas")
    sources = {
        "iterable": (dict(r) for r in ROWS),
        "pandas": pd.DataFrame(ROWS),
        "table": pa.Table.from_pylist(ROWS),
        "batch": pa.RecordBatch.from_pylist(ROWS),
        "reader": pa.Table.from_pylist(ROWS).to_reader(max_chunksize=77),
    }
    for name, source in sources.items():
        fastload.convert(source, tmp_path / name, quiet=True)
        assert _rows(tmp_path / name) == ROWS, name


def test_numpy_arrays_in_dicts_become_ndarray_columns(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 3, 8, 8), dtype=np.uint8)
    fastload.convert(({"image": images[i], "label": i % 10} for i in range(50)), tmp_path / "out", quiet=True)
    ds = Dataset(tmp_path / "out")
    column = ds.schema["image"]
    assert (column.kind, column.dtype, column.shape) == ("ndarray", "uint8", (3, 8, 8))
    assert np.array_equal(ds[7]["image"], images[7])
    assert ds.stats["image"]["axis0"]["mean"] == pytest.approx(images.transpose(1, 0, 2, 3).reshape(3, -1).mean(axis=1).tolist())


def test_hugging_face_datasets_are_read_through_their_arrow_table(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    fastload.convert(ds, tmp_path / "out", quiet=True)
    assert _rows(tmp_path / "out") == ROWS
    # filter/select/shuffle give a view through an index mapping: the view is converted, not the table
    view = ds.filter(lambda row: row["n"] % 3 == 0).shuffle(seed=0)
    fastload.convert(view, tmp_path / "view", quiet=True)
    assert _rows(tmp_path / "view") == view.to_list()


def test_columns_option_keeps_only_the_named_fields(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(_jsonl_bytes())
    fastload.convert(tmp_path / "in.jsonl", tmp_path / "out", columns=["n", "text"], quiet=True)
    assert Dataset(tmp_path / "out").schema.names == ["n", "text"]


def test_integer_lists_are_stored_as_the_narrowest_token_type(tmp_path):
    rows = [{"tokens": list(range(i % 50))} for i in range(100)]
    fastload.convert(rows, tmp_path / "small", quiet=True)
    assert Dataset(tmp_path / "small").schema["tokens"].dtype == "uint16"
    fastload.convert(rows + [{"tokens": [70_000]}], tmp_path / "big", quiet=True)
    ds = Dataset(tmp_path / "big")
    assert ds.schema["tokens"].dtype == "uint32" and ds[100]["tokens"].tolist() == [70_000]


KEY_PATTERNS = ["*.jsonl", "**/*.jsonl", "a/**", "a/**/*.jsonl", "a/**/b/*.txt", "?.json*", "[ab]*/x.jsonl", "[!a]*/*",
                ".hidden/*", "**/.h*", "**", "*/*", "a/*/*", "**/b/**", "x[[]1].jsonl"]


def test_a_pattern_over_object_keys_matches_what_glob_matches_over_the_same_paths(tmp_path):
    """`remote_inputs`: a URL's pattern selects the keys that `glob.glob(recursive=True)` selects among the same
    files on disk: `*`, `?` within a level, `**` across levels, classes, and hidden names left to patterns that name them."""
    import glob
    from pathlib import Path

    from fastload.convert.remote_inputs import _key_pattern

    for key in ["a.jsonl", "b.json", "c.txt", ".h.jsonl", "a/x.jsonl", "a/b/y.jsonl", "a/b/z.txt", "b/x.jsonl", "b/.g/x.jsonl",
                ".hidden/x.jsonl", "ab/x.jsonl", "a/b/c/d.jsonl", "x[1].jsonl"]:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text("{}\n")
    keys = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    for pattern in KEY_PATTERNS:
        by_glob = sorted(Path(p).relative_to(tmp_path).as_posix() for p in glob.glob(str(tmp_path / pattern), recursive=True) if Path(p).is_file())
        assert [key for key in keys if _key_pattern(pattern).fullmatch(key)] == by_glob, pattern
