"""`fastload convert s3://bucket/corpus/ -o ...`: inputs in object storage give the dataset that the same
files on local disk give, byte for byte, read by ranged GETs (byte-range partitions included), on every
engine; missing, unreadable and changing objects are errors that name them, as local files' are."""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastload
from fastload.errors import ConvertError

pytest.importorskip("obstore", reason="remote inputs need the remote extra: pip install 'fastload[remote]'")
pipeline = importlib.import_module("fastload.convert.pipeline")

# Small partitions: the JSON Lines files are cut into byte ranges, which tasks read by ranged GETs.
OPTIONS = dict(block_bytes=8 << 10, shard_bytes=32 << 10, partition_bytes=96 << 10, workers=2, quiet=True)


def _rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "δέλτα", "эпсилон", "漢字", "line\nbreak", 'a "quote"']
    return [{"text": " ".join(rng.choice(words, 30)), "i": seed * 100_000 + i} for i in range(n)]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A folder of inputs of several kinds, one level nested: what a corpus prefix in a bucket holds."""
    folder = tmp_path / "corpus"
    (folder / "web").mkdir(parents=True)
    (folder / "web" / "part-0.jsonl").write_bytes(_jsonl(_rows(1500, 1)))
    (folder / "web" / "part-1.jsonl.gz").write_bytes(gzip.compress(_jsonl(_rows(700, 2))))
    (folder / "books.jsonl").write_bytes(_jsonl(_rows(900, 3)))
    pq.write_table(pa.Table.from_pylist(_rows(600, 4)), folder / "wiki.parquet", row_group_size=200)
    (folder / ".hidden.jsonl").write_bytes(b"{not json\n")  # left out of a folder, as locally
    return folder


def _upload(endpoint, folder: Path, prefix: str) -> str:
    client = endpoint.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=endpoint.bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())
    return f"s3://{endpoint.bucket}/{prefix}"


def _dataset_files(folder: Path) -> dict[str, bytes]:
    """Shards byte for byte, and index.json without the input names it records (a path here, a URL there)."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "index.json"}
    index = json.loads((folder / "index.json").read_text())
    index["source"].pop("inputs")
    return {**files, "index.json": json.dumps(index, sort_keys=True).encode()}


def test_a_corpus_in_a_bucket_converts_to_the_bytes_of_the_same_files_on_disk(tmp_path, moto_endpoint, corpus):
    url = _upload(moto_endpoint, corpus, "corpus")
    local = fastload.convert(corpus, tmp_path / "local", **OPTIONS)
    remote = fastload.convert(url, tmp_path / "remote", **OPTIONS)
    assert remote.num_partitions == local.num_partitions >= 4  # part-0.jsonl is cut into byte ranges
    assert remote.num_rows == 1500 + 700 + 900 + 600
    assert _dataset_files(tmp_path / "remote") == _dataset_files(tmp_path / "local")
    assert remote.index.source["inputs"] == [url]


def test_patterns_and_single_objects_name_what_local_globs_and_paths_would(tmp_path, moto_endpoint, corpus):
    url = _upload(moto_endpoint, corpus, "corpus")
    cases = [("**/*.jsonl", 1500 + 900), ("*.jsonl", 900), ("web/part-?.jsonl*", 1500 + 700), ("web/part-[!0].*", 700)]
    for pattern, rows in cases:
        result = fastload.convert(f"{url}/{pattern}", tmp_path / "out", overwrite=True, **OPTIONS)
        local = fastload.convert(str(corpus / pattern), tmp_path / "local", overwrite=True, **OPTIONS)
        assert result.num_rows == local.num_rows == rows, pattern
    single = fastload.convert(f"{url}/web/part-1.jsonl.gz", tmp_path / "one", **OPTIONS)
    assert single.num_rows == 700


def test_missing_and_unreadable_inputs_are_errors_that_name_them(tmp_path, moto_endpoint, corpus):
    url = _upload(moto_endpoint, corpus, "corpus")
    with pytest.raises(ConvertError, match=r"input 's3://.*/nothing-here' does not exist"):
        fastload.convert(f"{url}/nothing-here", tmp_path / "a", **OPTIONS)
    with pytest.raises(ConvertError, match=r"the pattern 's3://.*/\*\.csv' matches no objects"):
        fastload.convert(f"{url}/*.csv", tmp_path / "b", **OPTIONS)
    client = moto_endpoint.client()
    client.put_object(Bucket=moto_endpoint.bucket, Key="bad/rows.jsonl", Body=_jsonl(_rows(50, 5)) + b"{oops\n")
    with pytest.raises(ConvertError, match=r"s3://.*/bad/rows\.jsonl.*line 51"):
        fastload.convert(f"s3://{moto_endpoint.bucket}/bad/rows.jsonl", tmp_path / "c", **OPTIONS)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_an_object_rewritten_during_the_conversion_is_refused(tmp_path, moto_endpoint, corpus, monkeypatch):
    url = _upload(moto_endpoint, corpus, "corpus")
    real = pipeline.plan_in_rounds

    def plan_then_rewrite(files, **kwargs):
        planned = real(files, **kwargs)
        body = (corpus / "books.jsonl").read_bytes().replace(b"alpha", b"omega")  # same size, new ETag
        moto_endpoint.client().put_object(Bucket=moto_endpoint.bucket, Key="corpus/books.jsonl", Body=body)
        return planned

    monkeypatch.setattr(pipeline, "plan_in_rounds", plan_then_rewrite)
    with pytest.raises(ConvertError, match=r"books\.jsonl' changed while it was being converted"):
        fastload.convert(url, tmp_path / "out", **OPTIONS)


def test_the_ray_engine_reads_its_partitions_from_the_bucket_and_writes_the_local_bytes(tmp_path, moto_endpoint, s3_env, corpus):
    ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'fastload[ray]'")
    url = _upload(moto_endpoint, corpus, "corpus")
    local = fastload.convert(corpus, tmp_path / "local", **OPTIONS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(s3_env)})  # tasks reach moto too
    try:
        result = fastload.convert(url, f"s3://{moto_endpoint.bucket}/dataset", engine="ray", **OPTIONS)
    finally:
        ray.shutdown()
    assert result.num_partitions == local.num_partitions
    out = tmp_path / "downloaded"
    out.mkdir()
    for key in moto_endpoint.keys("dataset/"):
        (out / key.removeprefix("dataset/")).write_bytes(moto_endpoint.client().get_object(Bucket=moto_endpoint.bucket, Key=key)["Body"].read())
    assert _dataset_files(out) == _dataset_files(tmp_path / "local")


def test_a_corpus_in_gcs_or_azure_converts_to_the_local_bytes(tmp_path, cloud_endpoint, corpus):
    target = cloud_endpoint.object_file("corpus")
    shutil.copytree(corpus, target)  # the folder server serves the bucket's folder as it is
    (target / ".hidden.jsonl").unlink()
    local = fastload.convert(corpus, tmp_path / "local", **OPTIONS)
    remote = fastload.convert(cloud_endpoint.url("corpus"), tmp_path / "remote", storage_options=cloud_endpoint.storage_options, **OPTIONS)
    assert remote.num_rows == local.num_rows
    assert _dataset_files(tmp_path / "remote") == _dataset_files(tmp_path / "local")


def test_a_killed_conversion_of_objects_resumes_from_the_partitions_it_finished(tmp_path, moto_endpoint, corpus, monkeypatch):
    """The resume key of a partition of objects holds their URLs, sizes and ETags, as a local file's holds its path, size and mtime."""
    from tests.convert.test_resume import OPTIONS as KILLED_OPTIONS, _killed_run  # SIGKILLed as partition 3 starts

    url = _upload(moto_endpoint, corpus, "corpus")
    out = tmp_path / "out"
    _killed_run(url, out)  # (the S3 environment is inherited)
    converted = []
    real = pipeline.convert_partition
    monkeypatch.setattr(pipeline, "convert_partition", lambda partition, job, **kw: converted.append(partition.partition_id) or real(partition, job, **kw))
    result = fastload.convert(url, out, resume=True, **KILLED_OPTIONS)
    assert converted == list(range(3, result.num_partitions))
    fastload.convert(corpus, tmp_path / "local", **KILLED_OPTIONS)
    assert _dataset_files(out) == _dataset_files(tmp_path / "local")


def test_a_file_behind_plain_https_is_read_by_range_and_a_prefix_there_cannot_be_listed(tmp_path, cloud_server, corpus):
    """https:// (http:// here) names single files: ranged GETs and a HEAD suffice; plain HTTP has no listing."""
    from fastload.errors import StoreError

    target = cloud_server.root / "http-inputs" / "web"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(corpus / "web" / "part-0.jsonl", target / "part-0.jsonl")
    url = f"{cloud_server.endpoint}/http-inputs/web/part-0.jsonl"
    remote = fastload.convert(url, tmp_path / "remote", **OPTIONS)
    fastload.convert(corpus / "web" / "part-0.jsonl", tmp_path / "local", **OPTIONS)
    assert remote.num_partitions > 1  # byte ranges of one file over HTTP
    assert _dataset_files(tmp_path / "remote") == _dataset_files(tmp_path / "local")
    with pytest.raises(StoreError, match="plain HTTP cannot list objects; name each input file by its URL"):
        fastload.convert(f"{cloud_server.endpoint}/http-inputs/web/", tmp_path / "prefix", **OPTIONS)
