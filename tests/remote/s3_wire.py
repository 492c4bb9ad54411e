"""S3's wire format, as `tests/remote/folder_s3.py` speaks it: byte ranges, request bodies, XML answers.

Pure functions and two small readers, no sockets and no files, so each piece is tested on its own:
- `parse_range`: a `Range` header against an object's size, as S3 reads it (one range; anything it
  cannot use is ignored and the whole object served; a start past the end is `RangeNotSatisfiable`);
- `request_body`: the bytes of a PUT body whatever framing the client chose: Content-Length,
  `Transfer-Encoding: chunked`, and inside either, AWS's `aws-chunked` content encoding (boto3's
  trailing checksums, SigV4 streaming signatures); chunk signatures and checksums are not verified;
- `list_page`: one page of ListObjects (prefix, delimiter, start-after, max-keys) over sorted keys;
- the XML documents S3 answers with (errors, listings, multipart uploads, batch deletes), and the ones
  clients send (CompleteMultipartUpload, DeleteObjects), namespaced as S3's are.

Deliberately not here: HTTP itself and the folder the objects live in (`folder_s3.py`), and any check of
signatures or checksums (a test and benchmark server trusts its clients).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_LIST_KEYS = 1000  # S3's cap on max-keys
MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions (a SigV4 chunk signature is ~90 bytes)


class RangeNotSatisfiable(ValueError):
    """A Range whose first byte lies past the object's end (S3: 416 InvalidRange)."""


class MalformedBody(ValueError):
    """A request body whose framing is broken (S3: 400 IncompleteBody)."""


# -- ranges --------------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, that `header` asks of an object of `size` bytes; None: the whole object.

    Like S3: a header that is not one well-formed byte range is ignored (None, a 200 with everything);
    `bytes=a-b` past the end is cut at the end; a first byte at or past the end, or an empty suffix,
    raises RangeNotSatisfiable.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # bytes=-n: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # RFC 9110: an invalid range is ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(int(last) if last else size - 1, size - 1)


# -- request bodies ------------------------------------------------------------------------


class LengthReader:
    """The next `length` bytes of `source` (a buffered binary file), with read() and readline()."""

    def __init__(self, source, length: int):
        self.source, self.remaining = source, length

    def read(self, size: int) -> bytes:
        data = self.source.read(min(size, self.remaining)) if self.remaining else b""
        self.remaining -= len(data)
        if size and self.remaining and not data:
            raise MalformedBody(f"the connection closed with {self.remaining:,} bytes of the body still to come")
        return data

    def readline(self, limit: int) -> bytes:
        line = self.source.readline(min(limit, self.remaining)) if self.remaining else b""
        self.remaining -= len(line)
        return line


class ChunkedReader:
    """The decoded bytes of a chunked stream read from `source` (anything with read(n) and readline(limit)).

    One decoder for both framings that share this layout: HTTP/1.1's `Transfer-Encoding: chunked` and
    AWS's `aws-chunked` (chunk sizes in hex, `;chunk-signature=...` extensions, trailers such as
    `x-amz-checksum-crc32:...` after the last, empty chunk). Extensions and trailers are skipped.
    `drain_source`: read `source` to its end after the last chunk (aws-chunked inside another framing,
    whose own end follows).
    """

    def __init__(self, source, *, drain_source: bool = False):
        self.source, self.drain_source, self.left_in_chunk, self.done = source, drain_source, 0, False

    def read(self, size: int) -> bytes:
        while not self.done and self.left_in_chunk == 0:
            self._next_chunk()
        if self.done:
            return b""
        data = self.source.read(min(size, self.left_in_chunk))
        if not data:
            raise MalformedBody("the body ended inside a chunk")
        self.left_in_chunk -= len(data)
        if self.left_in_chunk == 0 and self.source.read(2) not in (b"\r\n", b"\n"):
            raise MalformedBody("a chunk is not followed by CRLF")
        return data

    def readline(self, limit: int) -> bytes:
        """A line of the decoded stream (needed when aws-chunked rides inside HTTP chunked); lines here are short."""
        line = bytearray()
        while len(line) < limit and not line.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)

    def _next_chunk(self) -> None:
        line = self.source.readline(MAX_CHUNK_LINE_BYTES)
        if not line.endswith(b"\n"):
            raise MalformedBody(f"a chunk-size line is missing or too long: {line[:80]!r}")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise MalformedBody(f"a chunk size is not hexadecimal: {size_text[:40]!r}") from None
        if size:
            self.left_in_chunk = size
            return
        while True:  # trailers, up to the blank line that ends the body
            trailer = self.source.readline(MAX_CHUNK_LINE_BYTES)
            if not trailer.endswith(b"\n"):
                raise MalformedBody("the body ended inside its trailers")
            if trailer in (b"\r\n", b"\n"):
                break
        self.done = True
        while self.drain_source and self.source.read(MAX_CHUNK_LINE_BYTES):
            pass


def request_body(source, headers) -> LengthReader | ChunkedReader:
    """A reader of the body that follows `headers` on `source`, with every transfer and aws-chunked layer undone.

    `headers` is the request's header mapping (case-insensitive `get`, as http.server's is).
    """
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        reader = ChunkedReader(source)
    else:
        reader = LengthReader(source, int(headers.get("Content-Length") or 0))
    encodings = [e.strip().lower() for e in (headers.get("Content-Encoding") or "").split(",")]
    if "aws-chunked" in encodings or (headers.get("x-amz-content-sha256") or "").startswith("STREAMING-"):
        return ChunkedReader(reader, drain_source=True)
    return reader


# -- listings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectEntry:
    key: str
    size: int
    mtime_s: float
    etag: str  # quoted, as in the ETag header


@dataclass(frozen=True)
class ListPage:
    contents: list[ObjectEntry]
    common_prefixes: list[str]
    is_truncated: bool
    last: str | None  # the last key or common prefix returned: where the next page starts after


def list_page(entries: list[ObjectEntry], *, prefix: str = "", delimiter: str = "", after: str = "", max_keys: int = MAX_LIST_KEYS) -> ListPage:
    """One page of a listing of `entries` (sorted by key): keys under `prefix` after `after`, those past the
    next `delimiter` rolled up into common prefixes, `max_keys` keys and prefixes at most (S3's rules)."""
    contents, prefixes, last = [], [], None
    truncated = False
    for entry in entries:
        key = entry.key
        if not key.startswith(prefix) or (after and key <= after):
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common == after or (prefixes and prefixes[-1] == common):
                    continue  # rolled up already, on this page or the one before
                if len(contents) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                prefixes.append(common)
                last = common
                continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        contents.append(entry)
        last = key
    return ListPage(contents, prefixes, truncated, last)


def encode_token(marker: str) -> str:
    """A continuation token: opaque to clients, here the last key returned."""
    return base64.urlsafe_b64encode(marker.encode()).decode()


def decode_token(token: str) -> str:
    try:
        marker = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        marker = None
    if marker is None or encode_token(marker) != token:  # b64decode skips characters it does not know
        raise ValueError(f"the continuation token {token[:40]!r} was not issued by this server")
    return marker


def iso_time(seconds: float) -> str:
    """S3's listing timestamp: 2026-12-03T06:40:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


def list_objects_xml(page: ListPage, *, bucket: str, prefix: str, delimiter: str, max_keys: int, url_encode: bool,
                     v2: bool, continuation_token: str = "", start_after: str = "", marker: str = "") -> bytes:
    """The ListBucketResult of ListObjectsV2 (`v2`) or ListObjects; keys URL-encoded when the client asked."""

    def text(value: str) -> str:
        return escape(quote(value, safe="/") if url_encode else value)

    parts = [f'<ListBucketResult xmlns="{S3_XMLNS}"><Name>{escape(bucket)}</Name><Prefix>{text(prefix)}</Prefix>']
    if delimiter:
        parts.append(f"<Delimiter>{text(delimiter)}</Delimiter>")
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if url_encode:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if page.is_truncated else 'false'}</IsTruncated>")
    if v2:
        parts.append(f"<KeyCount>{len(page.contents) + len(page.common_prefixes)}</KeyCount>")
        if continuation_token:
            parts.append(f"<ContinuationToken>{escape(continuation_token)}</ContinuationToken>")
        if start_after:
            parts.append(f"<StartAfter>{text(start_after)}</StartAfter>")
        if page.is_truncated and page.last is not None:
            parts.append(f"<NextContinuationToken>{encode_token(page.last)}</NextContinuationToken>")
    else:
        parts.append(f"<Marker>{text(marker)}</Marker>")
        if page.is_truncated and page.last is not None and delimiter:
            parts.append(f"<NextMarker>{text(page.last)}</NextMarker>")  # S3 sends it only with a delimiter
    for entry in page.contents:
        parts.append(f"<Contents><Key>{text(entry.key)}</Key><LastModified>{iso_time(entry.mtime_s)}</LastModified>"
                     f"<ETag>{escape(entry.etag)}</ETag><Size>{entry.size}</Size><StorageClass>STANDARD</StorageClass></Contents>")
    for common in page.common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{text(common)}</Prefix></CommonPrefixes>")
    parts.append("</ListBucketResult>")
    return (XML_DECLARATION + "".join(parts)).encode()


def list_buckets_xml(buckets: list[tuple[str, float]]) -> bytes:
    entries = "".join(f"<Bucket><Name>{escape(name)}</Name><CreationDate>{iso_time(created)}</CreationDate></Bucket>" for name, created in buckets)
    return (f'{XML_DECLARATION}<ListAllMyBucketsResult xmlns="{S3_XMLNS}"><Owner><ID>folder-s3</ID><DisplayName>folder-s3</DisplayName></Owner>'
            f"<Buckets>{entries}</Buckets></ListAllMyBucketsResult>").encode()


# -- errors and multipart uploads ------------------------------------------------------------


def error_xml(code: str, message: str, *, request_id: str, **fields: str) -> bytes:
    """S3's <Error> document; `fields` such as Key=, BucketName= are added as elements."""
    extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    return (f"{XML_DECLARATION}<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
            f"<RequestId>{request_id}</RequestId></Error>").encode()


def initiate_multipart_xml(bucket: str, key: str, upload_id: str) -> bytes:
    return (f'{XML_DECLARATION}<InitiateMultipartUploadResult xmlns="{S3_XMLNS}"><Bucket>{escape(bucket)}</Bucket>'
            f"<Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>").encode()


def complete_multipart_xml(*, location: str, bucket: str, key: str, etag: str) -> bytes:
    return (f'{XML_DECLARATION}<CompleteMultipartUploadResult xmlns="{S3_XMLNS}"><Location>{escape(location)}</Location>'
            f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><ETag>{escape(etag)}</ETag></CompleteMultipartUploadResult>").encode()


def parse_complete_multipart(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) of each <Part> of a CompleteMultipartUpload body, in the order given.

    Raises ValueError on a body that is not that document (S3: 400 MalformedXML).
    """
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the CompleteMultipartUpload body is not XML: {exc}") from None
    parts = []
    for element in root.iter():
        if element.tag.rpartition("}")[2] != "Part":
            continue
        fields = {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in element}
        if not fields.get("PartNumber", "").isdigit():
            raise ValueError(f"a <Part> without a valid <PartNumber>: {fields}")
        parts.append((int(fields["PartNumber"]), fields.get("ETag", "")))
    if not parts:
        raise ValueError("the CompleteMultipartUpload body lists no <Part>")
    return parts


def parse_delete_objects(body: bytes) -> tuple[list[str], bool]:
    """The keys of a DeleteObjects body, and whether it asked for a quiet answer (errors only).

    Raises ValueError on a body that is not that document (S3: 400 MalformedXML).
    """
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the DeleteObjects body is not XML: {exc}") from None
    keys, quiet = [], False
    for element in root:
        name = element.tag.rpartition("}")[2]
        if name == "Quiet":
            quiet = (element.text or "").strip().lower() == "true"
        elif name == "Object":
            key = next((child.text or "" for child in element if child.tag.rpartition("}")[2] == "Key"), None)
            if key is None:
                raise ValueError("an <Object> without a <Key> in the DeleteObjects body")
            keys.append(key)
    return keys, quiet


def delete_result_xml(deleted: list[str], errors: list[tuple[str, str, str]]) -> bytes:
    """DeleteObjects' answer: the keys deleted, and (key, code, message) of each that was not."""
    parts = [f"<Deleted><Key>{escape(key)}</Key></Deleted>" for key in deleted]
    parts += [f"<Error><Key>{escape(key)}</Key><Code>{code}</Code><Message>{escape(message)}</Message></Error>" for key, code, message in errors]
    return f'{XML_DECLARATION}<DeleteResult xmlns="{S3_XMLNS}">{"".join(parts)}</DeleteResult>'.encode()
