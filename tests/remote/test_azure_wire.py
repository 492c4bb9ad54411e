"""Azure Blob's wire format as the folder server reads and writes it: ranges, block lists, blob batches, listings."""

from __future__ import annotations

import base64

import pytest

from tests.remote import azure_wire, s3_wire
from tests.remote.azure_wire import UnservedRange, parse_blob_range


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Range": "bytes=0-99"}, (0, 99)),
        ({"Range": "bytes=10-"}, (10, 999)),
        ({"Range": "bytes=990-2000"}, (990, 999)),  # cut at the end
        ({"x-ms-range": "bytes=5-6", "Range": "bytes=0-0"}, (5, 6)),  # x-ms-range wins, as in Azure
    ],
)
def test_a_range_is_read_as_azure_reads_it(headers, expected):
    assert parse_blob_range(headers, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=-100", "bytes=0-1,5-6", "bytes=5-1", "items=0-5"])
def test_a_range_this_server_does_not_serve_is_refused_not_guessed(header):
    with pytest.raises(UnservedRange):
        parse_blob_range({"Range": header}, 1000)


def test_a_range_starting_past_the_end_is_not_satisfiable():
    with pytest.raises(s3_wire.RangeNotSatisfiable):
        parse_blob_range({"x-ms-range": "bytes=1000-"}, 1000)


def test_a_block_list_keeps_its_order_and_kinds_and_block_ids_must_be_base64_of_at_most_64_bytes():
    body = b"<?xml version='1.0'?><BlockList><Uncommitted>QQ==</Uncommitted><Latest>Qg==</Latest><Committed>Qw==</Committed></BlockList>"
    assert azure_wire.parse_block_list(body) == [("Uncommitted", "QQ=="), ("Latest", "Qg=="), ("Committed", "Qw==")]
    assert azure_wire.block_file_name("QQ==") == "block-41"
    for bad in ("not base64!", base64.b64encode(b"x" * 65).decode(), ""):
        with pytest.raises(ValueError):
            azure_wire.block_file_name(bad)
    with pytest.raises(ValueError, match="not a <BlockList>"):
        azure_wire.parse_block_list(b"<Other/>")


def test_a_batch_of_deletes_is_parsed_and_answered_part_by_part():
    def part(content_id: int, line: str) -> bytes:
        return (f"--b1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {content_id}\r\n\r\n"
                f"{line}\r\nContent-Length: 0\r\nAuthorization: SharedKey a:b\r\n\r\n\r\n").encode()

    body = part(0, "DELETE /acct/c/one HTTP/1.1") + part(1, "DELETE /acct/c/two%20x HTTP/1.1") + b"--b1--\r\n"
    assert azure_wire.batch_boundary("multipart/mixed; boundary=b1") == "b1"
    assert azure_wire.parse_batch_deletes(body, "b1") == [azure_wire.BatchDelete("0", "/acct/c/one"), azure_wire.BatchDelete("1", "/acct/c/two%20x")]
    with pytest.raises(NotImplementedError, match="only Delete Blob"):
        azure_wire.parse_batch_deletes(part(0, "PUT /acct/c/one?comp=tier HTTP/1.1") + b"--b1--\r\n", "b1")
    answer = azure_wire.batch_answer([("0", 202, "Accepted", {}, b""), ("1", 404, "Not there", {"x-ms-error-code": "BlobNotFound"}, b"<E/>")], "r1")
    assert answer.startswith(b"--r1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n")
    assert b"Content-ID: 1\r\n\r\nHTTP/1.1 404 Not there\r\nx-ms-error-code: BlobNotFound\r\nContent-Length: 4\r\n\r\n<E/>\r\n--r1--\r\n" in answer


def test_a_listing_interleaves_blobs_and_prefixes_in_key_order_and_marks_where_the_next_page_starts():
    entries = [s3_wire.ObjectEntry(key, 3, 0.0, '"e"') for key in ("a", "b/1", "b/2", "c", "d")]
    page = s3_wire.list_page(entries, delimiter="/", max_keys=3)
    xml = azure_wire.list_blobs_xml(page, service="http://h/acct/", container="c", prefix="", delimiter="/", marker="", max_results=3).decode()
    assert xml.index("<Name>a</Name>") < xml.index("<BlobPrefix><Name>b/</Name>") < xml.index("<Name>c</Name>")
    assert "<Name>d</Name>" not in xml and f"<NextMarker>{s3_wire.encode_token('c')}</NextMarker>" in xml
    assert "<Last-Modified>Thu, 01 Jan 1970 00:00:00 GMT</Last-Modified>" in xml and "<Content-Length>3</Content-Length>" in xml
