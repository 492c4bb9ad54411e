"""The folder S3 server answers boto3 and obstore as S3 does: ranges, heads, listings, uploads, errors;
and a fastload dataset converted to it reads back equal to the local one."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("boto3", reason="the S3 tests need boto3: pip install boto3")
obstore = pytest.importorskip("obstore", reason="the S3 tests need obstore: pip install obstore")

import botocore.exceptions  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from obstore.store import S3Store  # noqa: E402

from tests.remote.fault_proxy import FaultProxy  # noqa: E402
from tests.remote import folder_s3  # noqa: E402
from tests.remote.folder_s3 import TEMP_PREFIX, FolderS3Server  # noqa: E402
from tests.remote.s3 import CREDENTIALS, OVERRIDING_ENV_VARS, REGION, s3_client  # noqa: E402

OBJECT = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()  # random: a misplaced range cannot match
KEY = "data/object.bin"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with FolderS3Server(tmp_path_factory.mktemp("folder-s3")) as server:
        yield server


@pytest.fixture
def bucket(server) -> str:
    return server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def stored(server, bucket) -> str:
    server.client().put_object(Bucket=bucket, Key=KEY, Body=OBJECT)
    return bucket


def store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(bucket, endpoint=endpoint, region=REGION, access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                   secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                   client_options={"allow_http": True, "timeout": timedelta(seconds=10)}, retry_config={"max_retries": 0})


def read(client: str, server, bucket: str, key: str = KEY, start: int | None = None, end: int | None = None) -> bytes:
    """Bytes [start, end) of `key` through `client`, the whole object when start is None."""
    if client == "boto3":
        extra = {} if start is None else {"Range": f"bytes={start}-{end - 1}"}
        return server.client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    if start is None:
        return bytes(obstore.get(store(server.endpoint, bucket), key).bytes())
    return bytes(obstore.get_range(store(server.endpoint, bucket), key, start=start, end=end))


CLIENTS = pytest.mark.parametrize("client", ["boto3", "obstore"])


@CLIENTS
def test_ranged_reads_return_exactly_the_file_bytes(client, server, stored):
    for start, end in [(0, 1), (123_457, 1_123_457), (len(OBJECT) - 16_384, len(OBJECT)), (65_530, 65_540), (1 << 20, 2 << 20)]:
        assert read(client, server, stored, KEY, start, end) == OBJECT[start:end]
    assert read(client, server, stored) == OBJECT


def test_a_range_answer_carries_its_content_range_and_a_suffix_range_is_served(server, stored):
    reply = server.client().get_object(Bucket=stored, Key=KEY, Range="bytes=100-199")
    assert (reply["ResponseMetadata"]["HTTPStatusCode"], reply["ContentRange"], reply["ContentLength"]) == (206, f"bytes 100-199/{len(OBJECT)}", 100)
    assert server.client().get_object(Bucket=stored, Key=KEY, Range="bytes=-10")["Body"].read() == OBJECT[-10:]
    assert server.client().get_object(Bucket=stored, Key=KEY, Range=f"bytes={len(OBJECT) - 5}-{len(OBJECT) + 5}")["Body"].read() == OBJECT[-5:]


@CLIENTS
def test_a_range_past_the_end_is_refused_with_416(client, server, stored):
    if client == "boto3":
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            server.client().get_object(Bucket=stored, Key=KEY, Range=f"bytes={len(OBJECT)}-{len(OBJECT) + 9}")
        assert (caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InvalidRange", 416)
    else:
        with pytest.raises(obstore.exceptions.BaseError):
            obstore.get_range(store(server.endpoint, stored), KEY, start=len(OBJECT), end=len(OBJECT) + 10)


def test_head_gives_size_etag_and_last_modified_to_both_clients(server, stored):
    head = server.client().head_object(Bucket=stored, Key=KEY)
    meta = obstore.head(store(server.endpoint, stored), KEY)
    assert head["ContentLength"] == meta["size"] == len(OBJECT)
    assert head["ETag"] == meta["e_tag"] and len(head["ETag"]) == 34
    assert abs(head["LastModified"].timestamp() - time.time()) < 600
    assert meta["last_modified"] == head["LastModified"]


def test_an_etag_changes_when_the_object_is_replaced(server, stored):
    before = server.client().head_object(Bucket=stored, Key=KEY)["ETag"]
    server.client().put_object(Bucket=stored, Key=KEY, Body=b"new")
    assert server.client().head_object(Bucket=stored, Key=KEY)["ETag"] != before


def test_missing_keys_and_buckets_are_404_with_s3_error_codes(server, bucket):
    client = server.client()
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=bucket, Key="nope")
    with pytest.raises(client.exceptions.NoSuchBucket):
        client.get_object(Bucket="no-such-bucket", Key="nope")
    with pytest.raises(botocore.exceptions.ClientError, match="404"):
        client.head_object(Bucket=bucket, Key="nope")
    with pytest.raises(botocore.exceptions.ClientError, match="404"):
        client.head_bucket(Bucket="no-such-bucket")
    with pytest.raises(FileNotFoundError):  # obstore's NotFoundError derives from it
        obstore.get(store(server.endpoint, bucket), "nope")


LISTED_KEYS = sorted(["a.txt", "data/1", "data/2", "data/sub/3", "data/sub/4", "data/zz/5", "logs/x", "z", "sp ace/ü+&.bin"])


@pytest.fixture
def listed(server, bucket) -> str:
    for key in LISTED_KEYS:
        server.client().put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_boto3_lists_with_prefix_delimiter_and_pages(server, listed, page_size):
    paginator = server.client().get_paginator("list_objects_v2")

    def listing(**options):
        pages = list(paginator.paginate(Bucket=listed, PaginationConfig={"PageSize": page_size}, **options))
        keys = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
        return keys, [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])], len(pages)

    assert listing()[0] == LISTED_KEYS
    keys, prefixes, num_pages = listing(Delimiter="/")
    assert (keys, prefixes) == (["a.txt", "z"], ["data/", "logs/", "sp ace/"])
    assert num_pages == -(-5 // page_size)
    assert listing(Prefix="data/", Delimiter="/")[:2] == (["data/1", "data/2"], ["data/sub/", "data/zz/"])
    assert listing(Prefix="data/s")[0] == ["data/sub/3", "data/sub/4"]
    assert listing(Prefix="nothing/")[0] == []
    sizes = {entry["Key"]: entry["Size"] for page in paginator.paginate(Bucket=listed) for entry in page["Contents"]}
    assert sizes == {key: len(key.encode()) for key in LISTED_KEYS}


def test_boto3_lists_with_start_after_and_the_v1_api(server, listed):
    client = server.client()
    assert [e["Key"] for e in client.list_objects_v2(Bucket=listed, StartAfter="data/zz/5")["Contents"]] == ["logs/x", "sp ace/ü+&.bin", "z"]
    pages = list(client.get_paginator("list_objects").paginate(Bucket=listed, PaginationConfig={"PageSize": 2}))
    assert [e["Key"] for page in pages for e in page["Contents"]] == LISTED_KEYS


def test_obstore_lists_with_and_without_a_delimiter(server, listed):
    s3 = store(server.endpoint, listed)
    assert sorted(meta["path"] for chunk in obstore.list(s3, "data/") for meta in chunk) == [k for k in LISTED_KEYS if k.startswith("data/")]
    result = obstore.list_with_delimiter(s3, "data")
    assert sorted(result["common_prefixes"]) == ["data/sub", "data/zz"]
    assert [meta["path"] for meta in result["objects"]] == ["data/1", "data/2"]


@pytest.mark.parametrize("size", [0, 100, (10 << 20) + 100])  # multipart for both clients, the last of 3 parts 100 bytes
@pytest.mark.parametrize(("writer", "reader"), [("boto3", "obstore"), ("obstore", "boto3")])
def test_put_then_get_round_trips_through_either_client(server, bucket, tmp_path, size, writer, reader):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    if writer == "boto3":
        path = tmp_path / "upload.bin"
        path.write_bytes(data)
        server.client().put_object(Bucket=bucket, Key="one/put", Body=data)
        server.client().upload_file(str(path), bucket, "two/upload", Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    else:
        obstore.put(store(server.endpoint, bucket), "one/put", data, use_multipart=False)
        obstore.put(store(server.endpoint, bucket), "two/upload", data, chunk_size=5 << 20)  # multipart past 5 MiB
    assert read(reader, server, bucket, "one/put") == data
    if writer == "boto3":
        reply = server.client().put_object(Bucket=bucket, Key="three/put", Body=data)
        assert reply["ETag"] == server.client().head_object(Bucket=bucket, Key="three/put")["ETag"]  # the ETag of what was stored
    assert read(reader, server, bucket, "two/upload") == data
    assert not list(server.root.rglob(f"{TEMP_PREFIX}*")) and not any((server.root / ".multipart").glob("*"))


def test_an_upload_through_the_fault_proxy_arrives_whole(server, bucket):
    """The path bench/remote.py's clients take; the proxy answers Expect: 100-continue itself."""
    with FaultProxy(server.endpoint) as proxy:
        s3_client(proxy.endpoint).put_object(Bucket=bucket, Key="via/proxy", Body=OBJECT)
        assert s3_client(proxy.endpoint).get_object(Bucket=bucket, Key="via/proxy", Range="bytes=5-99")["Body"].read() == OBJECT[5:100]


def test_delete_removes_the_object_and_frees_its_folder_name(server, stored):
    client = server.client()
    client.delete_object(Bucket=stored, Key=KEY)
    client.delete_object(Bucket=stored, Key=KEY)  # deleting what is not there is not an error, as in S3
    assert "Contents" not in client.list_objects_v2(Bucket=stored)
    client.put_object(Bucket=stored, Key="data", Body=b"a key where a folder was")
    assert read("boto3", server, stored, "data") == b"a key where a folder was"
    obstore.delete(store(server.endpoint, stored), "data")
    client.delete_bucket(Bucket=stored)
    with pytest.raises(botocore.exceptions.ClientError, match="404"):
        client.head_bucket(Bucket=stored)


def test_a_bucket_holding_objects_cannot_be_deleted(server, stored):
    with pytest.raises(botocore.exceptions.ClientError, match="BucketNotEmpty"):
        server.client().delete_bucket(Bucket=stored)


def test_a_key_that_cannot_map_onto_a_file_is_refused_with_a_reason(server, stored):
    with pytest.raises(botocore.exceptions.ClientError, match="a prefix of it is an object"):
        server.client().put_object(Bucket=stored, Key=f"{KEY}/under", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError, match="prefix of other keys"):
        server.client().put_object(Bucket=stored, Key="data", Body=b"x")
    assert read("boto3", server, stored) == OBJECT


def test_an_unknown_operation_is_not_implemented_rather_than_misread(server, stored):
    with pytest.raises(botocore.exceptions.ClientError, match="NotImplemented"):
        server.client().copy_object(Bucket=stored, Key="copy", CopySource={"Bucket": stored, "Key": KEY})
    with pytest.raises(botocore.exceptions.ClientError, match="NotImplemented"):
        server.client().get_object_tagging(Bucket=stored, Key=KEY)


def test_a_put_cut_off_mid_body_leaves_no_object_and_no_temporary_file(server, bucket):
    connection = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("PUT", f"/{bucket}/cut")
    connection.putheader("Content-Length", "100000")
    connection.endheaders(b"only the start")
    deadline = time.monotonic() + 10
    while not list((server.root / bucket).rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's thread has begun the object (its temporary file) and waits for the rest
    assert list((server.root / bucket).rglob("*")), "the server never began writing the object"
    connection.close()  # cut off: closed before the body's end; checking only after this raced the server's start
    deadline = time.monotonic() + 10
    while list((server.root / bucket).rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's thread notices the closed connection
    assert list((server.root / bucket).rglob("*")) == []


def _chunked(data: bytes, size: int, extension: bytes = b"", trailers: bytes = b"") -> bytes:
    pieces = [b"%x%s\r\n%s\r\n" % (len(data[i : i + size]), extension, data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(pieces) + b"0%s\r\n%s\r\n" % (extension, trailers)


def test_an_aws_chunked_put_inside_http_chunking_is_stored_decoded_and_the_connection_goes_on(server, bucket):
    """What boto3 sends over https (trailing checksums); over http it sends Content-Length, which the other tests cover."""
    payload = OBJECT[:300_001]
    inner = _chunked(payload, 65_536, extension=b";chunk-signature=" + b"0" * 64, trailers=b"x-amz-checksum-crc32:AAAAAA==\r\n")
    connection = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("PUT", f"/{bucket}/aws-chunked")
    for name, value in {"Transfer-Encoding": "chunked", "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": str(len(payload))}.items():
        connection.putheader(name, value)
    connection.endheaders(_chunked(inner, 100_000))
    reply = connection.getresponse()
    assert (reply.status, reply.read()) == (200, b"")
    connection.request("GET", f"/{bucket}/aws-chunked")  # the same connection: the body ended where its framing said
    reply = connection.getresponse()
    assert (reply.status, reply.read()) == (200, payload)
    connection.close()


def test_connections_are_kept_alive_across_requests(server, stored):
    connection = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=10)
    for start in (0, 1000, 2 << 20):
        connection.request("GET", f"/{stored}/{KEY}", headers={"Range": f"bytes={start}-{start + 99_999}"})
        reply = connection.getresponse()
        assert (reply.status, reply.read()) == (206, OBJECT[start : start + 100_000])
    port = connection.sock.getsockname()[1]
    connection.request("HEAD", f"/{stored}/{KEY}")
    reply = connection.getresponse()
    reply.read()
    assert connection.sock.getsockname()[1] == port  # the same connection served all four
    connection.close()


LOADER_BATCHES = """
import json, sys
import torch
import fastload
torch.manual_seed(0)  # the sampler's seed is drawn from torch's RNG
source, cache = sys.argv[1:]
dataset = fastload.Dataset(source, cache_dir=cache) if source.startswith("s3://") else fastload.Dataset(source)
print(json.dumps([batch["i"].tolist() for batch in fastload.DataLoader(dataset, batch_size=64, num_workers=2, shuffle=True)]))
"""


def loader_batches(source: str, cache: Path) -> list[list[int]]:
    """LOADER_BATCHES in a fresh interpreter: this one has imported obstore, and fastload's workers then keep to boto3
    (store/object_store.py); the environment (the server's, set by the test) is inherited."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", LOADER_BATCHES, source, str(cache)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_a_fastload_dataset_converted_to_the_server_reads_back_equal_to_the_local_one(server, bucket, tmp_path, monkeypatch):
    import fastload
    from fastload.store import object_store

    for name in OVERRIDING_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(object_store, "_runtime_pid", None)  # as tests/remote/conftest.py's moto_endpoint does
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(f'{{"text": "row {i} {"word " * (i % 50)}", "i": {i}}}\n' for i in range(3000)))
    options = dict(block_bytes=16 << 10, shard_bytes=64 << 10, quiet=True, workers=2)
    local = fastload.convert(rows, tmp_path / "local", **options)
    remote = fastload.convert(rows, f"s3://{bucket}/ds", **options)
    assert len(remote.index.shards) >= 3
    on_server = {p.name: p.read_bytes() for p in (server.root / bucket / "ds").iterdir()}
    assert on_server == {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    opened = fastload.Dataset(f"s3://{bucket}/ds", cache_dir=tmp_path / "cache")
    local_rows = [(int(row["i"]), row["text"]) for row in fastload.Dataset(tmp_path / "local")]
    assert [(int(row["i"]), row["text"]) for row in opened] == local_rows and len(local_rows) == local.num_rows == 3000
    agents = []  # User-Agent of each GET the server answers (it runs in this process, the loader's workers in others)
    get_object = folder_s3._Handler._get_object
    monkeypatch.setattr(folder_s3._Handler, "_get_object", lambda self, *args: agents.append(self.headers.get("User-Agent", "")) or get_object(self, *args))
    from_server = loader_batches(f"s3://{bucket}/ds", tmp_path / "cold")
    assert any(agent.startswith("object_store") for agent in agents), sorted(set(agents))  # the workers read through obstore
    assert from_server == loader_batches(str(tmp_path / "local"), tmp_path / "unused")
    assert set(i for batch in from_server for i in batch) == set(range(3000))
