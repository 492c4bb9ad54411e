import math

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.format import Column, Dataset, DatasetWriter, Schema, WriteOptions, read_index, verify_dataset
from tests.conftest import ALL_KINDS, all_kinds_batch


def _write(path, schema, rows_or_batches, **options):
    with DatasetWriter(path, schema, options=WriteOptions(**options)) as writer:
        for batch in rows_or_batches:
            writer.write(batch)
    return Dataset(path)


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_every_column_kind_round_trips_exactly(tmp_path, compression):
    rng = np.random.default_rng(1)
    batches = [all_kinds_batch(rng, 97, start=97 * k) for k in range(4)]
    ds = _write(tmp_path / "ds", ALL_KINDS, batches, block_rows=30, shard_bytes=20_000, compression=compression)
    expected = pa.Table.from_batches(batches).to_pylist()
    assert len(ds) == len(expected)
    for i, row in enumerate(expected):
        got = ds[i]
        assert got["text"] == row["text"]
        assert got["tokens"].tolist() == row["tokens"]
        assert got["image"].shape == (3, 4, 4)
        assert got["image"].reshape(-1).tolist() == row["image"]
        assert got["label"] == row["label"]
        assert got["score"] == pytest.approx(row["score"])
        assert got["blob"] == row["blob"]
    assert verify_dataset(tmp_path / "ds") == []


def test_empty_values_nans_and_very_long_documents_round_trip(tmp_path):
    schema = Schema((Column("text", "text", "utf8"), Column("tokens", "tokens", "uint32"), Column("x", "scalar", "float64")))
    long_text = "ünïcödé ✓ " * 300_000  # ~3.6 MB, larger than a block
    long_tokens = np.arange(2_000_000, dtype=np.uint32) % 100_000
    batch = pa.record_batch(
        [
            pa.array(["", long_text, "a", ""], pa.string()),
            pa.array([[], long_tokens, [70_000], []], pa.list_(pa.uint32())),
            pa.array([math.nan, 1.5, -math.inf, None], pa.float64()),
        ],
        schema=schema.arrow_schema(),
    )
    ds = _write(tmp_path / "ds", schema, [batch], block_bytes=1 << 20)
    assert ds[0]["text"] == "" and ds[3]["text"] == ""
    assert ds[1]["text"] == long_text
    assert ds[0]["tokens"].size == 0
    assert np.array_equal(ds[1]["tokens"], long_tokens)
    assert math.isnan(ds[0]["x"]) and ds[2]["x"] == -math.inf and ds[3]["x"] is None
    stats = ds.stats["x"]
    assert stats["nan_count"] == 1 and stats["null_count"] == 1 and stats["count"] == 1  # only 1.5 is finite
    assert ds.stats["tokens"]["tokens"] == 2_000_001


def test_block_views_are_zero_copy_views_of_the_mapped_shard(small_dataset):
    ds = Dataset(small_dataset)
    block = ds.block(0)
    tokens = block.columns["tokens"]
    assert not tokens.values.flags.writeable  # a view into the memory map, not a copy
    assert len(tokens) == block.num_rows == 50
    assert np.array_equal(tokens[3], ds[3]["tokens"])
    assert block.columns["image"].shape == (50, 3, 4, 4)
    text = block.columns["text"]
    assert text[1].tobytes().decode() == ds[1]["text"]


def test_block_boundaries_do_not_depend_on_how_rows_arrive(tmp_path):
    rng = np.random.default_rng(2)
    table = pa.Table.from_batches([all_kinds_batch(rng, 500)])
    a = _write(tmp_path / "a", ALL_KINDS, table.to_batches(max_chunksize=500), block_bytes=3000)
    b = _write(tmp_path / "b", ALL_KINDS, table.to_batches(max_chunksize=7), block_bytes=3000)
    assert a.block_rows.tolist() == b.block_rows.tolist()
    assert (tmp_path / "a" / "shard-00000.arrow").read_bytes() == (tmp_path / "b" / "shard-00000.arrow").read_bytes()


def test_iteration_yields_rows_in_storage_order(small_dataset):
    ds = Dataset(small_dataset)
    assert [row["label"] for row in ds] == list(range(600))


def test_a_shard_is_a_plain_arrow_ipc_file_readable_by_pyarrow(small_dataset):
    index = read_index(small_dataset)
    tables = [ipc.open_file(str(small_dataset / s.file)).read_all() for s in index.shards]
    assert [t.num_rows for t in tables] == [s.num_rows for s in index.shards]
    combined = pa.concat_tables(tables)
    assert combined.column("label").to_pylist() == list(range(600))
    assert combined.schema.field("image").metadata[b"fastload.shape"] == b"[3, 4, 4]"


def test_polars_and_duckdb_read_a_shard_when_installed(small_dataset):
    shard = str(small_dataset / "shard-00000.arrow")
    checked = 0
    try:
        import polars
    except ImportError:
        polars = None
    if polars is not None:
        assert polars.read_ipc(shard)["label"].to_list()[:3] == [0, 1, 2]
        checked += 1
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        shard_table = ipc.open_file(shard).read_all()  # noqa: F841  (DuckDB scans the local variable)
        assert duckdb.sql("select min(label), count(*) from shard_table").fetchall() == [(0, shard_table.num_rows)]
        checked += 1
    if not checked:
        pytest.skip("neither polars nor duckdb is installed (pyarrow interop is covered above)")


def test_dataset_pickles_as_its_path_and_reopens(small_dataset):
    import pickle

    ds = Dataset(small_dataset)
    ds[5]
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 500
    assert clone[5]["text"] == ds[5]["text"]


def test_works_as_a_map_style_dataset_for_torch_dataloader(small_dataset):
    torch = pytest.importorskip("torch")
    ds = Dataset(small_dataset)
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, collate_fn=lambda rows: [r["label"] for r in rows])
    labels = [label for batch in loader for label in batch]
    assert labels == list(range(600))


# -- property test against an in-memory model ---------------------------------

_row = st.fixed_dictionaries(
    {
        "text": st.one_of(st.none(), st.text(max_size=40)),
        "tokens": st.lists(st.integers(0, 2**16 - 1), max_size=20),
        "vec": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
        "flag": st.booleans(),
        "blob": st.binary(max_size=30),
    }
)
_SCHEMA = Schema(
    (
        Column("text", "text", "utf8"),
        Column("tokens", "tokens", "uint16"),
        Column("vec", "ndarray", "float32", (3,)),
        Column("flag", "scalar", "bool"),
        Column("blob", "bytes", "binary"),
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=120), block_rows=st.integers(1, 40), chunk=st.integers(1, 50))
def test_any_rows_read_back_as_written(tmp_path_factory, rows, block_rows, chunk):
    path = tmp_path_factory.mktemp("prop") / "ds"
    table = pa.Table.from_pylist(rows, schema=_SCHEMA.arrow_schema())
    ds = _write(path, _SCHEMA, table.to_batches(max_chunksize=chunk), block_rows=block_rows, shard_bytes=2000, compression="lz4")
    assert len(ds) == len(rows)
    for i, row in enumerate(rows):
        got = ds[i]
        assert got["text"] == row["text"]
        assert got["tokens"].tolist() == row["tokens"]
        np.testing.assert_array_equal(got["vec"], np.asarray(row["vec"], np.float32))
        assert got["flag"] == row["flag"]
        assert got["blob"] == row["blob"]
    assert ds.block_rows.max() <= block_rows


def test_a_tokenizer_other_than_the_one_used_is_refused_unless_allowed(small_dataset):
    import json

    from fastload import FormatError

    index_path = small_dataset / "index.json"
    obj = json.loads(index_path.read_text())
    obj["tokenizer"] = {"column": "tokens", "fingerprint": "a" * 64, "vocab_size": 65536}
    index_path.write_text(json.dumps(obj))

    class Fake:
        def __init__(self, fingerprint):
            self.fingerprint = fingerprint

    Dataset(small_dataset, tokenizer=Fake("a" * 64))
    with pytest.raises(FormatError, match="was tokenized with tokenizer aaaa.*allow_tokenizer_mismatch=True"):
        Dataset(small_dataset, tokenizer=Fake("b" * 64))
    Dataset(small_dataset, tokenizer=Fake("b" * 64), allow_tokenizer_mismatch=True)


@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_crc32_combine_equals_the_crc_of_the_concatenation(a, b):
    import zlib

    from fastload.format.checksum import crc32_combine

    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@given(data=st.binary(max_size=70_000), start=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_the_writers_crc32_is_zlibs_whichever_library_computes_it(data, start):
    # ISA-L's when the fastcrc extra is installed: what index.json records must not depend on it
    import zlib

    from fastload.format.checksum import crc32

    assert crc32(data, start) == zlib.crc32(data, start)
    assert crc32(memoryview(data)[1:]) == zlib.crc32(data[1:])


@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=9)), max_size=30),
    cut=st.tuples(st.integers(0, 30), st.integers(0, 30)),
    binary=st.booleans(),
    two_chunks=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_a_block_serialises_the_same_whether_its_rows_were_a_slice_or_copied(values, cut, binary, two_chunks):
    # the writer makes a block's text column without copying its bytes; the file must not tell
    import importlib

    writer = importlib.import_module("fastload.format.writer")
    kind = pa.binary() if binary else pa.string()
    array = pa.array([v if v is None or not binary else v.encode() for v in values], kind)
    start, end = min(cut[0], len(array)), min(max(cut), len(array))
    column = pa.chunked_array([array.slice(0, start), array.slice(start, end - start)] if two_chunks else [array.slice(start, end - start)], kind)

    def serialised(block_array: pa.Array) -> bytes:
        batch = pa.RecordBatch.from_arrays([block_array], names=["c"])
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, batch.schema) as file:
            file.write_batch(batch)
        return sink.getvalue().to_pybytes()

    assert serialised(writer._block_array(column)) == serialised(pa.concat_arrays(column.chunks))


@given(lengths=st.lists(st.one_of(st.integers(0, 70), st.sampled_from([255, 256, 257, 1023, 1024, 65535, 65536])), max_size=40), nulls=st.booleans())
@settings(max_examples=200, deadline=None)
def test_text_statistics_count_each_length_in_its_power_of_two_bucket(lengths, nulls):
    from fastload.format.stats import new_stats

    values = [None if nulls and i % 3 == 0 else "x" * n for i, n in enumerate(lengths)]
    stats = new_stats(Column("text", "text", "utf8"))
    stats.add(pa.array(values[: len(values) // 2], pa.string()))
    stats.add(pa.array(values[len(values) // 2 :], pa.string()).slice(0))
    kept = [len(v) for v in values if v is not None]
    histogram = [0] * (max(kept, default=0).bit_length() + 1)
    for n in kept:
        histogram[n.bit_length()] += 1  # bucket 0: length 0; bucket k: [2**(k-1), 2**k)
    found = stats.to_json()
    assert (found["documents"], found["bytes"], found["min_length"], found["max_length"]) == (len(kept), sum(kept), min(kept, default=None), max(kept, default=None))
    assert found["length_histogram"] == (histogram if kept else [])


@given(lengths=st.lists(st.integers(0, 3000), min_size=1, max_size=60), cuts=st.lists(st.integers(0, 60), max_size=6), kind=st.sampled_from(["text", "tokens"]))
@settings(max_examples=100, deadline=None)
def test_order_free_statistics_do_not_depend_on_how_rows_are_grouped_or_ordered(lengths, cuts, kind):
    """The writer counts `order_free` statistics per arriving batch and the rest per block: the
    grouping a conversion happens to see must not show in `index.json`."""
    from fastload.format.stats import new_stats

    column = Column("c", "text", "utf8") if kind == "text" else Column("c", "tokens", "uint16")

    def array(rows):
        return pa.array(["x" * n for n in rows], pa.string()) if kind == "text" else pa.array([[1] * n for n in rows], pa.list_(pa.uint16()))

    whole = new_stats(column)
    whole.add(array(lengths))
    assert whole.order_free
    bounds = [0, *sorted(min(c, len(lengths)) for c in cuts), len(lengths)]
    groups = [lengths[a:b] for a, b in zip(bounds, bounds[1:])]
    grouped = new_stats(column)
    for rows in reversed(groups):
        grouped.add(array(rows))
    assert grouped.state() == whole.state()
    assert not new_stats(Column("n", "scalar", "float64")).order_free  # float moments: storage order, whole blocks
