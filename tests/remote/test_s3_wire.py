"""S3's wire format as the folder server reads and writes it: ranges, chunked bodies, listing pages, XML."""

from __future__ import annotations

import io
from xml.etree import ElementTree

import pytest

from tests.remote import s3_wire
from tests.remote.s3_wire import ObjectEntry, RangeNotSatisfiable, list_page, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the object: all of it
        ("bytes=990-2000", (990, 999)),  # cut at the end
        ("bytes=999-999", (999, 999)),
        ("bytes=5-1", None),  # last before first: ignored, as RFC 9110 says
        ("bytes=0-1,5-6", None),  # several ranges: S3 serves the whole object
        ("items=0-5", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
    ],
)
def test_a_range_header_is_read_as_s3_reads_it(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000), ("bytes=0-0", 0), ("bytes=-5", 0)])
def test_a_range_starting_past_the_end_is_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def _read_all(reader) -> bytes:
    out = bytearray()
    while chunk := reader.read(7):  # an odd size, so reads straddle chunk boundaries
        out += chunk
    return bytes(out)


def _chunked(data: bytes, size: int, *, extension: bytes = b"", trailers: bytes = b"") -> bytes:
    pieces = [b"%x%s\r\n%s\r\n" % (len(data[i : i + size]), extension, data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(pieces) + b"0%s\r\n%s\r\n" % (extension, trailers)


PAYLOAD = bytes(range(256)) * 40


def test_a_content_length_body_is_read_to_its_length_and_no_further():
    source = io.BufferedReader(io.BytesIO(PAYLOAD + b"GET /next HTTP/1.1\r\n"))
    assert _read_all(s3_wire.request_body(source, {"Content-Length": str(len(PAYLOAD))})) == PAYLOAD
    assert source.read() == b"GET /next HTTP/1.1\r\n"  # the next request on the connection is left alone


def test_a_body_cut_short_raises_malformed_body():
    with pytest.raises(s3_wire.MalformedBody, match="closed"):
        _read_all(s3_wire.request_body(io.BufferedReader(io.BytesIO(PAYLOAD[:100])), {"Content-Length": str(len(PAYLOAD))}))


def test_aws_chunked_inside_http_chunked_decodes_to_the_payload():
    """boto3's trailing-checksum uploads: aws-chunked content (signatures, a checksum trailer) sent with Transfer-Encoding: chunked."""
    inner = _chunked(PAYLOAD, 1000, extension=b";chunk-signature=" + b"ab" * 32, trailers=b"x-amz-checksum-crc32:AAAAAA==\r\n")
    source = io.BufferedReader(io.BytesIO(_chunked(inner, 333) + b"NEXT"))
    headers = {"Transfer-Encoding": "chunked", "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(PAYLOAD))}
    assert _read_all(s3_wire.request_body(source, headers)) == PAYLOAD
    assert source.read() == b"NEXT"


def test_a_streaming_signature_with_a_content_length_is_decoded_too():
    body = _chunked(PAYLOAD, 4096, extension=b";chunk-signature=" + b"0" * 64)
    headers = {"Content-Length": str(len(body)), "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    assert _read_all(s3_wire.request_body(io.BufferedReader(io.BytesIO(body)), headers)) == PAYLOAD


def test_a_chunk_size_that_is_not_hexadecimal_raises_malformed_body():
    with pytest.raises(s3_wire.MalformedBody, match="hexadecimal"):
        _read_all(s3_wire.request_body(io.BufferedReader(io.BytesIO(b"zz\r\nabc\r\n0\r\n\r\n")), {"Transfer-Encoding": "chunked"}))


KEYS = ["a.txt", "data/1", "data/2", "data/sub/3", "data/sub/4", "data/zz/5", "logs/x", "z"]
ENTRIES = [ObjectEntry(key, 1, 0.0, '"e"') for key in KEYS]


def _all_pages(prefix: str, delimiter: str, max_keys: int) -> tuple[list[str], list[str], int]:
    keys, prefixes, after, num_pages = [], [], "", 0
    while True:
        page = list_page(ENTRIES, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
        keys += [e.key for e in page.contents]
        prefixes += page.common_prefixes
        num_pages += 1
        assert len(page.contents) + len(page.common_prefixes) <= max_keys
        if not page.is_truncated:
            return keys, prefixes, num_pages
        after = page.last


@pytest.mark.parametrize("max_keys", [1, 2, 3, 1000])
def test_pages_of_a_listing_add_up_to_the_whole_listing(max_keys):
    assert _all_pages("", "", max_keys)[0] == KEYS
    assert _all_pages("data/", "/", max_keys)[:2] == (["data/1", "data/2"], ["data/sub/", "data/zz/"])
    assert _all_pages("", "/", max_keys)[:2] == (["a.txt", "z"], ["data/", "logs/"])
    assert _all_pages("data/s", "", max_keys)[0] == ["data/sub/3", "data/sub/4"]


def test_a_listing_page_stops_at_max_keys_and_says_it_is_truncated():
    page = list_page(ENTRIES, delimiter="/", max_keys=2)
    assert ([e.key for e in page.contents], page.common_prefixes, page.is_truncated, page.last) == (["a.txt"], ["data/"], True, "data/")


def test_a_continuation_token_round_trips_any_key():
    for key in ["", "data/sub/", "ünï cödé/+&=?"]:
        assert s3_wire.decode_token(s3_wire.encode_token(key)) == key
    with pytest.raises(ValueError, match="not issued by this server"):
        s3_wire.decode_token("%%%")


def test_a_url_encoded_listing_escapes_keys_and_is_well_formed_xml():
    page = list_page([ObjectEntry("a b&c/ü", 3, 0.0, '"e"')], max_keys=10)
    xml = s3_wire.list_objects_xml(page, bucket="b", prefix="", delimiter="", max_keys=10, url_encode=True, v2=True)
    root = ElementTree.fromstring(xml)
    namespace = {"s3": s3_wire.S3_XMLNS}
    assert root.find("s3:Contents/s3:Key", namespace).text == "a%20b%26c/%C3%BC"
    assert root.find("s3:KeyCount", namespace).text == "1"


def test_a_complete_multipart_body_gives_its_parts_in_order():
    body = (f'<CompleteMultipartUpload xmlns="{s3_wire.S3_XMLNS}"><Part><ETag>"x"</ETag><PartNumber>1</PartNumber></Part>'
            "<Part><PartNumber>2</PartNumber><ETag>y</ETag></Part></CompleteMultipartUpload>").encode()
    assert s3_wire.parse_complete_multipart(body) == [(1, '"x"'), (2, "y")]
    with pytest.raises(ValueError, match="no <Part>"):
        s3_wire.parse_complete_multipart(b"<CompleteMultipartUpload/>")
