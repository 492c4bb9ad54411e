"""Azure Blob Storage's wire format, as `tests/remote/folder_azure.py` speaks it: ranges, XML, blob batches.

Pure functions, no sockets and no files, so each piece is tested on its own:
- `parse_blob_range`: the byte range a Get Blob asks for (`x-ms-range` first, else `Range`), one
  `bytes=first-[last]` range only; a suffix range (`bytes=-n`, which Azure does not serve) or any other
  form is `UnservedRange`, a first byte past the end `s3_wire.RangeNotSatisfiable`;
- `list_blobs_xml`: List Blobs' EnumerationResults for one page (`s3_wire.list_page` makes the page:
  Azure rolls up prefixes at a delimiter and pages in key order as S3 does; its marker is opaque);
- `parse_block_list`: the blocks a Put Block List commits; `block_file_name`: a block id as a file name;
- `parse_batch_deletes` / `batch_answer`: a Blob Batch of Delete Blob subrequests (multipart/mixed), the
  way obstore deletes, and its multipart answer;
- `error_xml`: Azure's <Error> document.

Deliberately not here: HTTP itself and the folder the blobs live in (`folder_azure.py`, `folder_s3.py`),
and any check of signatures (SharedKey, SAS): a test server trusts its clients.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from tests.remote import s3_wire

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
MAX_LIST_RESULTS = 5000  # Azure's cap on maxresults
MAX_BLOCK_ID_BYTES = 64  # Azure: a block id is at most 64 bytes before base64
MAX_BATCH_REQUESTS = 256  # Azure: subrequests in one Blob Batch
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class UnservedRange(ValueError):
    """A range this server does not serve (a suffix, several ranges, another unit): 501, never a wrong answer."""


# -- ranges --------------------------------------------------------------------------------


def parse_blob_range(headers, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, that a Get Blob with `headers` asks of a blob of `size` bytes; None: all of it.

    `x-ms-range` wins over `Range` when both are sent, as in Azure. `bytes=a-b` past the end is cut at
    the end; a first byte at or past the end raises `s3_wire.RangeNotSatisfiable` (416).
    """
    header = headers.get("x-ms-range") or headers.get("Range")
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (match[2] and int(match[2]) < int(match[1])):
        raise UnservedRange(f"the range {header!r}: this server serves one 'bytes=first-' or 'bytes=first-last' range (Azure serves no suffix range)")
    first = int(match[1])
    if first >= size:
        raise s3_wire.RangeNotSatisfiable(header)
    return first, min(int(match[2]) if match[2] else size - 1, size - 1)


# -- listings -----------------------------------------------------------------------------


def http_date(seconds: float) -> str:
    """Azure's timestamps, in headers and listings alike: Thu, 03 Dec 2026 06:40:00 GMT."""
    return email.utils.formatdate(seconds, usegmt=True)


def list_blobs_xml(page: s3_wire.ListPage, *, service: str, container: str, prefix: str, delimiter: str,
                   marker: str, max_results: int | None) -> bytes:
    """List Blobs' EnumerationResults: blobs and blob prefixes in key order, and a NextMarker when truncated.

    `service`: the account's URL as the client reached it. Prefix, Marker, MaxResults and Delimiter are
    echoed only when the request named them, as Azure does.
    """
    parts = [f"<EnumerationResults ServiceEndpoint={quoteattr(service)} ContainerName={quoteattr(container)}>"]
    if prefix:
        parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
    if marker:
        parts.append(f"<Marker>{escape(marker)}</Marker>")
    if max_results is not None:
        parts.append(f"<MaxResults>{max_results}</MaxResults>")
    if delimiter:
        parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
    entries = [(entry.key, _blob_xml(entry)) for entry in page.contents]
    entries += [(common, f"<BlobPrefix><Name>{escape(common)}</Name></BlobPrefix>") for common in page.common_prefixes]
    parts.append("<Blobs>" + "".join(xml for _, xml in sorted(entries)) + "</Blobs>")
    next_marker = s3_wire.encode_token(page.last) if page.is_truncated and page.last is not None else ""
    parts.append(f"<NextMarker>{next_marker}</NextMarker></EnumerationResults>")
    return (XML_DECLARATION + "".join(parts)).encode()


def _blob_xml(entry: s3_wire.ObjectEntry) -> str:
    return (f"<Blob><Name>{escape(entry.key)}</Name><Properties><Last-Modified>{http_date(entry.mtime_s)}</Last-Modified>"
            f"<Etag>{escape(entry.etag)}</Etag><Content-Length>{entry.size}</Content-Length>"
            "<Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState></Properties></Blob>")


# -- block blobs ------------------------------------------------------------------------------


def decode_block_id(block_id: str) -> bytes:
    """The bytes a block id stands for; ValueError when it is not base64 of 1 to 64 bytes (Azure: 400)."""
    try:
        raw = base64.b64decode(block_id.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"the block id {block_id[:80]!r} is not base64") from None
    if not 0 < len(raw) <= MAX_BLOCK_ID_BYTES:
        raise ValueError(f"the block id {block_id[:80]!r} decodes to {len(raw)} bytes; Azure allows 1 to {MAX_BLOCK_ID_BYTES}")
    return raw


def block_file_name(block_id: str) -> str:
    """The file an uncommitted block is kept in: its id's bytes in hex (a safe file name, one per id)."""
    return "block-" + decode_block_id(block_id).hex()


def parse_block_list(body: bytes) -> list[tuple[str, str]]:
    """(kind, block id) of each entry of a Put Block List body, in order; kind is Committed, Uncommitted or Latest.

    Raises ValueError on a body that is not that document (Azure: 400 InvalidXmlDocument).
    """
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the Put Block List body is not XML: {exc}") from None
    if root.tag != "BlockList":
        raise ValueError(f"the Put Block List body is a <{root.tag}>, not a <BlockList>")
    blocks = []
    for element in root:
        if element.tag not in ("Committed", "Uncommitted", "Latest"):
            raise ValueError(f"<{element.tag}> in a <BlockList>: expected Committed, Uncommitted or Latest")
        blocks.append((element.tag, (element.text or "").strip()))
    return blocks


# -- blob batches -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchDelete:
    """One Delete Blob subrequest of a Blob Batch: its Content-ID and the path of its request line."""

    content_id: str
    path: str


def batch_boundary(content_type: str | None) -> str:
    """The boundary of a `multipart/mixed; boundary=...` Content-Type; ValueError for anything else."""
    kind, _, params = (content_type or "").partition(";")
    boundary = next((value.strip().strip('"') for name, _, value in (p.partition("=") for p in params.split(";"))
                     if name.strip().lower() == "boundary"), "")
    if kind.strip().lower() != "multipart/mixed" or not boundary:
        raise ValueError(f"a Blob Batch needs Content-Type: multipart/mixed; boundary=..., not {content_type!r}")
    return boundary


def parse_batch_deletes(body: bytes, boundary: str) -> list[BatchDelete]:
    """The Delete Blob subrequests of a Blob Batch body, in order.

    Raises ValueError for a body that is not a multipart/mixed batch of `application/http` parts, and
    `NotImplementedError` for a subrequest other than DELETE (Set Blob Tier, the other batchable call).
    """
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise ValueError(f"the batch body does not consist of parts between '--{boundary}' lines ending with '--{boundary}--'")
    deletes = []
    for piece in pieces[1:-1]:
        part_head, _, request = piece.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = _header_lines(part_head)
        if headers.get("content-type", "").lower() != "application/http" or "content-id" not in headers:
            raise ValueError(f"a batch part with headers {headers}: expected Content-Type: application/http and a Content-ID")
        request_line = request.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        path = rest.rpartition(" ")[0]
        if method != "DELETE":
            raise NotImplementedError(f"a batch subrequest {request_line!r}: this server serves only Delete Blob in a batch")
        if not path.startswith("/"):
            raise ValueError(f"the batch subrequest line {request_line!r} has no path")
        deletes.append(BatchDelete(headers["content-id"], path))
    if not 0 < len(deletes) <= MAX_BATCH_REQUESTS:
        raise ValueError(f"a batch of {len(deletes)} subrequests; Azure takes 1 to {MAX_BATCH_REQUESTS}")
    return deletes


def _header_lines(block: bytes) -> dict[str, str]:
    lines = block.decode("latin-1").split("\r\n")
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}


def batch_answer(answers: list[tuple[str, int, str, dict[str, str], bytes]], boundary: str) -> bytes:
    """The multipart body answering a Blob Batch: for each subrequest (Content-ID, status, reason, headers, body)."""
    out = []
    for content_id, status, reason, headers, body in answers:
        head = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers.items()), f"Content-Length: {len(body)}"]
        out.append(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {content_id}\r\n\r\n".encode()
                   + ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


# -- errors -----------------------------------------------------------------------------------


def error_xml(code: str, message: str, *, request_id: str) -> bytes:
    """Azure's <Error> document (the code also goes in the x-ms-error-code header)."""
    return f"{XML_DECLARATION}<Error><Code>{code}</Code><Message>{escape(message)}\nRequestId:{request_id}</Message></Error>".encode()
