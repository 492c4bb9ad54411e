"""The folder server answers Azure Blob requests as Azure does: ranges, properties, listings, block uploads,
batch deletes, errors in Azure's words; and what it does not serve is a 501 naming it."""

from __future__ import annotations

import base64
import http.client
import uuid
from datetime import timedelta
from urllib.parse import quote

import numpy as np
import pytest

obstore = pytest.importorskip("obstore", reason="the Azure tests need obstore: pip install obstore")

from obstore.store import AzureStore  # noqa: E402

from tests.remote.folder_azure import ACCOUNT, ACCOUNT_KEY, create_container  # noqa: E402
from tests.remote.folder_s3 import FolderS3Server  # noqa: E402

BLOB = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()  # random: a misplaced range cannot match
VERSION = {"x-ms-version": "2023-11-03"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with FolderS3Server(tmp_path_factory.mktemp("folder-azure")) as server:
        yield server


@pytest.fixture
def container(server) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    create_container(server.endpoint, name)
    return name


def store(server, container: str) -> AzureStore:
    return AzureStore(container, endpoint=f"{server.endpoint}/{ACCOUNT}", account_name=ACCOUNT, access_key=ACCOUNT_KEY,
                      client_options={"allow_http": True, "timeout": timedelta(seconds=10)}, retry_config={"max_retries": 0})


def request(server, method: str, path: str, body: bytes = b"", *, account: str = ACCOUNT, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request in Azure's dialect (x-ms-version) to `/<account><path>`: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=10)
    connection.request(method, f"/{account}{path}", body=body, headers={**VERSION, **{k.replace("_", "-"): v for k, v in headers.items()}})
    reply = connection.getresponse()
    answer = (reply.status, {name.lower(): value for name, value in reply.getheaders()}, reply.read())
    connection.close()
    return answer


@pytest.fixture
def stored(server, container) -> str:
    obstore.put(store(server, container), "data/blob.bin", BLOB)
    return container


def test_ranged_get_blob_reads_exactly_the_range_from_x_ms_range_before_range(server, stored):
    status, headers, body = request(server, "GET", f"/{stored}/data/blob.bin", Range="bytes=100-199")
    assert (status, headers["content-range"], body) == (206, f"bytes 100-199/{len(BLOB)}", BLOB[100:200])
    status, _, body = request(server, "GET", f"/{stored}/data/blob.bin", x_ms_range="bytes=7-9", Range="bytes=0-0")
    assert (status, body) == (206, BLOB[7:10])
    assert bytes(obstore.get_range(store(server, stored), "data/blob.bin", start=(1 << 20) - 5, length=5)) == BLOB[-5:]


def test_a_range_past_the_end_is_416_and_a_suffix_range_is_not_served(server, stored):
    status, headers, _ = request(server, "GET", f"/{stored}/data/blob.bin", x_ms_range=f"bytes={len(BLOB)}-")
    assert (status, headers["x-ms-error-code"], headers["content-range"]) == (416, "InvalidRange", f"bytes */{len(BLOB)}")
    status, headers, body = request(server, "GET", f"/{stored}/data/blob.bin", Range="bytes=-100")
    assert (status, headers["x-ms-error-code"]) == (501, "NotImplemented") and b"suffix" in body


def test_get_blob_properties_and_errors_name_azure_codes(server, stored):
    status, headers, body = request(server, "HEAD", f"/{stored}/data/blob.bin")
    assert (status, int(headers["content-length"]), headers["x-ms-blob-type"], body) == (200, len(BLOB), "BlockBlob", b"")
    assert headers["etag"] and headers["last-modified"].endswith("GMT") and headers["x-ms-request-id"]
    assert request(server, "HEAD", f"/{stored}/nothing")[1]["x-ms-error-code"] == "BlobNotFound"
    status, headers, body = request(server, "GET", "/no-such-container/blob")
    assert (status, headers["x-ms-error-code"]) == (404, "ContainerNotFound") and b"<Code>ContainerNotFound</Code>" in body
    assert request(server, "PUT", f"/{stored}?restype=container")[1]["x-ms-error-code"] == "ContainerAlreadyExists"
    assert request(server, "PUT", "/Bad_Name?restype=container")[1]["x-ms-error-code"] == "InvalidResourceName"
    assert request(server, "GET", f"/{stored}/data/blob.bin", account="otheraccount")[1]["x-ms-error-code"] == "InvalidUri"


def test_the_same_server_answers_s3_requests_in_s3_words(server, stored):
    connection = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", f"/{stored}/data/blob.bin", headers={"Range": "bytes=0-9"})  # no x-ms-version: S3
    reply = connection.getresponse()
    assert (reply.status, reply.read(), reply.getheader("x-amz-request-id") is not None) == (206, BLOB[:10], True)
    connection.close()


def test_list_blobs_pages_with_marker_and_rolls_up_prefixes_between_blobs(server, container):
    client = store(server, container)
    for name in ("a.bin", "b/one", "b/two", "c.bin", "d/three"):
        obstore.put(client, name, name.encode())
    names, marker = [], ""
    while True:  # two results a page, through NextMarker
        status, _, body = request(server, "GET", f"/{container}?restype=container&comp=list&maxresults=2" + (f"&marker={quote(marker)}" if marker else ""))
        assert status == 200 and b"<MaxResults>2</MaxResults>" in body
        names += [chunk.split(b"</Name>")[0].decode() for chunk in body.split(b"<Name>")[1:]]
        marker = body.split(b"<NextMarker>")[1].split(b"</NextMarker>")[0].decode()
        if not marker:
            break
    assert names == ["a.bin", "b/one", "b/two", "c.bin", "d/three"]
    listed = obstore.list_with_delimiter(client)  # Blob, BlobPrefix, Blob, BlobPrefix: interleaved in key order
    assert [meta["path"] for meta in listed["objects"]] == ["a.bin", "c.bin"] and listed["common_prefixes"] == ["b", "d"]
    assert sorted(meta["path"] for chunk in obstore.list(client, "b/") for meta in chunk) == ["b/one", "b/two"]


def block_id(n: int) -> str:
    return base64.b64encode(f"{n:08d}".encode()).decode()


def test_put_block_list_joins_the_blocks_in_list_order_and_refuses_an_unknown_block(server, container):
    for n, piece in enumerate([b"first ", b"second ", b"third"]):
        assert request(server, "PUT", f"/{container}/joined?comp=block&blockid={block_id(n)}", piece)[0] == 201
    xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>{}</BlockList>"
    status, headers, body = request(server, "PUT", f"/{container}/joined?comp=blocklist", xml.format(f"<Latest>{block_id(9)}</Latest>").encode())
    assert (status, headers["x-ms-error-code"]) == (400, "InvalidBlockList")
    status, headers, _ = request(server, "PUT", f"/{container}/joined?comp=blocklist", xml.format(f"<Committed>{block_id(0)}</Committed>").encode())
    assert (status, headers["x-ms-error-code"]) == (501, "NotImplemented")
    entries = f"<Uncommitted>{block_id(2)}</Uncommitted><Latest>{block_id(0)}</Latest><Uncommitted>{block_id(1)}</Uncommitted>"
    status, headers, _ = request(server, "PUT", f"/{container}/joined?comp=blocklist", xml.format(entries).encode())
    assert status == 201 and headers["etag"]
    assert bytes(obstore.get(store(server, container), "joined").bytes()) == b"thirdfirst second "
    assert not any((server.root / ".multipart").glob("*"))  # committing drops the blob's uncommitted blocks


def test_a_batch_delete_answers_each_blob_and_a_missing_one_is_not_found(server, stored):
    client = store(server, stored)
    obstore.put(client, "other.bin", b"x")
    obstore.delete(client, ["data/blob.bin", "other.bin"])  # one Blob Batch of two Delete Blob subrequests
    assert not list((server.root / stored).rglob("*"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        obstore.delete(client, "other.bin")
    obstore.put(client, "alone.bin", b"y")
    assert request(server, "DELETE", f"/{stored}/alone.bin")[0] == 202  # Delete Blob outside a batch
    assert request(server, "DELETE", f"/{stored}/alone.bin")[1]["x-ms-error-code"] == "BlobNotFound"


@pytest.mark.parametrize(
    ("method", "path", "headers", "named"),
    [
        ("GET", "/{c}/data/blob.bin?comp=tags", {}, "comp"),
        ("GET", "/{c}/data/blob.bin?snapshot=2026-01-01T00:00:00Z", {}, "snapshot"),
        ("PUT", "/{c}/appended", {"x_ms_blob_type": "AppendBlob"}, "AppendBlob"),
        ("PUT", "/{c}/copy", {"x_ms_blob_type": "BlockBlob", "x_ms_copy_source": "http://elsewhere/blob"}, "x-ms-copy-source"),
        ("GET", "/{c}/data/blob.bin", {"If_Match": '"abc"'}, "if-match"),
        ("GET", "/{c}?restype=container&comp=list&include=metadata", {}, "include"),
        ("GET", "?comp=list", {}, "account"),
    ],
)
def test_what_is_not_served_is_501_naming_it_never_a_wrong_answer(server, stored, method, path, headers, named):
    status, reply_headers, body = request(server, method, path.format(c=stored), **headers)
    assert (status, reply_headers["x-ms-error-code"]) == (501, "NotImplemented") and named.encode() in body
