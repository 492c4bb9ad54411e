"""`fastload convert ... -o s3://...`: the same dataset as a local conversion, uploaded shard by shard,
`index.json` last; a failed run leaves nothing that opens, and nothing of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload import Dataset
from fastload.errors import ConfigError, ConvertError, FormatError
from fastload.format.remote_output import ShardUploads

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")

SMALL_SHARDS = dict(block_bytes=16 << 10, shard_bytes=64 << 10, quiet=True, workers=2)


def _rows(n: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    words = ["alpha", "beta", "gamma", "δέλτα", "эпсилон", "漢字"]
    return [{"text": " ".join(rng.choice(words, 40)), "i": start + i} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict], bad_line_at: int | None = None) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write("{not json\n" if i == bad_line_at else json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _index(dataset: Dataset) -> dict:
    return dataset.index.to_json()


def _all_rows(dataset: Dataset) -> list[dict]:
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()} for row in dataset]


@pytest.fixture
def rows_file(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "in.jsonl", _rows(4000))


def test_a_conversion_to_s3_is_the_local_conversion_bit_for_bit(tmp_path, moto_endpoint, rows_file):
    url = f"s3://{moto_endpoint.bucket}/web/v1"
    local = fastload.convert(rows_file, tmp_path / "local", **SMALL_SHARDS)
    remote = fastload.convert(rows_file, url, **SMALL_SHARDS)
    assert remote.path == url and len(remote.index.shards) >= 4  # several shards, so staging and order matter
    uploaded = {key.removeprefix("web/v1/"): moto_endpoint.client().get_object(Bucket=moto_endpoint.bucket, Key=key)["Body"].read()
                for key in moto_endpoint.keys("web/v1/")}
    on_disk = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    assert uploaded == on_disk  # index.json (every CRC, row count and byte range) and every shard, byte for byte
    opened = Dataset(url, cache_dir=tmp_path / "cache")
    assert _index(opened) == _index(Dataset(tmp_path / "local"))
    assert _all_rows(opened) == _all_rows(Dataset(tmp_path / "local"))
    assert local.num_rows == remote.num_rows == 4000


def test_local_disk_holds_only_the_shards_in_flight_and_the_staging_folder_is_removed(tmp_path, moto_endpoint, rows_file, monkeypatch):
    staging = tmp_path / "staging"
    staging.mkdir()
    staged_bytes = []
    upload = ShardUploads._upload

    def staged_now() -> int:
        total = 0
        for p in staging.rglob("*"):
            try:  # the writer renames its temporary shard while this walks the folder
                total += p.stat().st_size if p.is_file() else 0
            except FileNotFoundError:
                pass
        return total

    def measured_upload(self, path, final):
        staged_bytes.append(staged_now())
        upload(self, path, final)

    monkeypatch.setattr(ShardUploads, "_upload", measured_upload)
    result = fastload.convert(rows_file, f"s3://{moto_endpoint.bucket}/bounded", staging_dir=staging, **SMALL_SHARDS)
    largest_shard = max(s.num_bytes for s in result.index.shards)
    assert len(result.index.shards) >= 8 and len(staged_bytes) == len(result.index.shards)
    # the shard being written plus the finished ones waiting for upload (2), never the whole dataset
    assert max(staged_bytes) <= 4 * largest_shard < result.index.num_bytes
    assert list(staging.iterdir()) == []


def _good_then_bad(tmp_path, start: int = 0) -> list[Path]:
    """Two input files: the first fills several shards (uploaded) before the second's line 3 fails."""
    return [_write_jsonl(tmp_path / "good.jsonl", _rows(4000, start)), _write_jsonl(tmp_path / "bad.jsonl", _rows(10), bad_line_at=2)]


def test_a_bad_input_line_after_several_shards_leaves_nothing_under_the_prefix(tmp_path, moto_endpoint, monkeypatch):
    uploaded = []
    monkeypatch.setattr(ShardUploads, "_upload", lambda self, path, final, upload=ShardUploads._upload: (uploaded.append(final), upload(self, path, final)))
    with pytest.raises(ConvertError, match="bad.jsonl.*line 3"):
        fastload.convert(_good_then_bad(tmp_path), f"s3://{moto_endpoint.bucket}/failed", **SMALL_SHARDS)
    assert len(uploaded) >= 4  # shards were uploaded before the failure ...
    assert moto_endpoint.keys() == []  # ... and deleted after it
    with pytest.raises(FormatError, match="index.json does not exist"):
        Dataset(f"s3://{moto_endpoint.bucket}/failed", cache_dir=tmp_path / "cache")


def test_an_interrupt_raised_by_an_in_memory_source_mid_way_leaves_nothing_under_the_prefix(tmp_path, moto_endpoint):
    uploaded_before = []
    schema = pa.schema([("text", pa.string()), ("i", pa.int64())])

    def batches_then_interrupt():
        for k in range(10):
            if k == 8:
                uploaded_before.extend(moto_endpoint.keys())
                raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
            yield pa.RecordBatch.from_pylist(_rows(500, start=500 * k), schema=schema)

    source = pa.RecordBatchReader.from_batches(schema, batches_then_interrupt())
    with pytest.raises(KeyboardInterrupt):
        fastload.convert(source, f"s3://{moto_endpoint.bucket}/interrupted", **SMALL_SHARDS)
    assert uploaded_before and "interrupted/index.json" not in uploaded_before  # shards were uploaded, the index was not
    assert moto_endpoint.keys() == []


def test_a_non_empty_prefix_is_refused_without_overwrite_and_the_dataset_in_it_is_kept(tmp_path, moto_endpoint, rows_file):
    url = f"s3://{moto_endpoint.bucket}/ds"
    fastload.convert(rows_file, url, **SMALL_SHARDS)
    before = moto_endpoint.keys()
    other = _write_jsonl(tmp_path / "other.jsonl", _rows(100, start=10_000))
    with pytest.raises(ConfigError, match="is not empty.*--overwrite"):
        fastload.convert(other, url, **SMALL_SHARDS)
    assert moto_endpoint.keys() == before
    assert len(Dataset(url, cache_dir=tmp_path / "cache")) == 4000


def test_overwrite_replaces_the_dataset_and_removes_the_old_shards_it_no_longer_names(tmp_path, moto_endpoint, rows_file):
    url = f"s3://{moto_endpoint.bucket}/ds"
    first = fastload.convert(rows_file, url, **SMALL_SHARDS)
    smaller = _write_jsonl(tmp_path / "smaller.jsonl", _rows(500, start=10_000))
    second = fastload.convert(smaller, url, overwrite=True, **SMALL_SHARDS)
    assert len(second.index.shards) < len(first.index.shards)
    assert moto_endpoint.keys("ds/") == sorted(["ds/index.json", *(f"ds/{s.file}" for s in second.index.shards)])
    reference = fastload.convert(smaller, tmp_path / "reference", **SMALL_SHARDS)
    assert _all_rows(Dataset(url, cache_dir=tmp_path / "cache")) == _all_rows(Dataset(reference.path))


def test_an_overwrite_that_fails_before_its_first_upload_keeps_the_old_dataset(tmp_path, moto_endpoint, rows_file):
    url = f"s3://{moto_endpoint.bucket}/ds"
    fastload.convert(rows_file, url, **SMALL_SHARDS)
    before = moto_endpoint.keys()
    early_error = _write_jsonl(tmp_path / "early.jsonl", _rows(100), bad_line_at=5)
    with pytest.raises(ConvertError, match="line 6"):
        fastload.convert(early_error, url, overwrite=True, **SMALL_SHARDS)
    assert moto_endpoint.keys() == before
    assert len(Dataset(url, cache_dir=tmp_path / "cache")) == 4000


def test_an_overwrite_that_fails_after_uploading_leaves_no_index_and_no_shards(tmp_path, moto_endpoint, rows_file):
    url = f"s3://{moto_endpoint.bucket}/ds"
    fastload.convert(rows_file, url, **SMALL_SHARDS)
    with pytest.raises(ConvertError, match="bad.jsonl.*line 3"):
        fastload.convert(_good_then_bad(tmp_path, start=7), url, overwrite=True, **SMALL_SHARDS)
    assert moto_endpoint.keys() == []  # the old index went before the first new shard; nothing of either run is left


def test_overwrite_refuses_a_prefix_holding_objects_fastload_did_not_write(tmp_path, moto_endpoint, rows_file):
    moto_endpoint.client().put_object(Bucket=moto_endpoint.bucket, Key="mine/notes.txt", Body=b"keep me")
    with pytest.raises(ConfigError, match="did not write.*notes.txt"):
        fastload.convert(rows_file, f"s3://{moto_endpoint.bucket}/mine", overwrite=True, **SMALL_SHARDS)
    assert moto_endpoint.keys() == ["mine/notes.txt"]


def test_a_promoted_column_rewrites_shards_already_uploaded(tmp_path, moto_endpoint):
    rows = [{"i": i, "x": i} for i in range(3000)] + [{"i": 3000 + i, "x": i + 0.5} for i in range(10)]  # ints, then floats
    source = _write_jsonl(tmp_path / "promote.jsonl", rows)
    options = dict(SMALL_SHARDS, block_bytes=4 << 10, shard_bytes=8 << 10)
    url = f"s3://{moto_endpoint.bucket}/promoted"
    fastload.convert(source, url, **options)
    reference = fastload.convert(source, tmp_path / "reference", **options)
    assert len(reference.index.shards) >= 3
    opened = Dataset(url, cache_dir=tmp_path / "cache")
    assert _index(opened) == _index(Dataset(reference.path))
    assert _all_rows(opened) == _all_rows(Dataset(reference.path))


_CONVERT = """
import sys, fastload
fastload.convert(sys.argv[1], sys.argv[2], workers=1, block_bytes=16 << 10, shard_bytes=64 << 10, overwrite=True, quiet=True)
"""


def test_a_killed_conversion_leaves_no_index_and_overwrite_clears_its_shards(tmp_path, moto_endpoint):
    import os
    import signal
    import subprocess
    import sys
    import time

    source = _write_jsonl(tmp_path / "big.jsonl", _rows(60_000))
    url = f"s3://{moto_endpoint.bucket}/killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", _CONVERT, str(source), url], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(moto_endpoint.keys("killed/")) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the conversion ended before two shards were uploaded: make the input bigger"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    left = moto_endpoint.keys("killed/")
    assert left and "killed/index.json" not in left
    with pytest.raises(FormatError, match="index.json does not exist"):
        Dataset(url, cache_dir=tmp_path / "cache")
    small = _write_jsonl(tmp_path / "small.jsonl", _rows(300))
    with pytest.raises(ConfigError, match="shards without an index.json, left by a conversion that was killed"):
        fastload.convert(small, url, **SMALL_SHARDS)
    result = fastload.convert(small, url, overwrite=True, **SMALL_SHARDS)
    assert moto_endpoint.keys("killed/") == sorted(["killed/index.json", *(f"killed/{s.file}" for s in result.index.shards)])


def test_the_ray_engine_uploads_the_local_conversions_bytes_from_its_tasks(tmp_path, moto_endpoint, s3_env, rows_file):
    ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'fastload[ray]'")
    options = dict(SMALL_SHARDS, partition_bytes=128 << 10)  # several partitions, each uploading its own shards
    url = f"s3://{moto_endpoint.bucket}/from-ray"
    local = fastload.convert(rows_file, tmp_path / "local", **options)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(s3_env)})  # tasks reach moto too
    try:
        result = fastload.convert(rows_file, url, engine="ray", **options)
    finally:
        ray.shutdown()
    assert result.num_partitions >= 3 and result.index.to_json() == local.index.to_json()
    uploaded = {key.removeprefix("from-ray/"): moto_endpoint.client().get_object(Bucket=moto_endpoint.bucket, Key=key)["Body"].read()
                for key in moto_endpoint.keys("from-ray/")}
    assert uploaded == {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
