"""A small S3-compatible server over a local folder, for the object-storage tests and `bench/remote.py`.

Why not only moto (`tests/remote/s3.py`): moto answers a ranged GET by copying the whole object, so it
serves ~15 ranged GETs a second from a 63 MB object (measured; `bench/remote.py`'s docstring), while a
real object store serves a range in time proportional to the range. Here a GET reads just its range from
the file (`os.pread` for small ranges, `sendfile` for the rest), so a benchmark of a loader that reads
blocks by range measures the loader, not this server. It stands in for GCS too (`gcs_endpoint` in
`conftest.py`): GCS's XML API, which obstore's gs:// client speaks, has S3's wire format. And for Azure
Blob Storage: a request carrying `x-ms-version` is answered in Azure's dialect (`folder_azure.py`,
`azure_endpoint` in `conftest.py`), on the same folder.

A test and benchmark server only: bound to 127.0.0.1, every request trusted. Authentication headers
(SigV4) are accepted and not checked, nor are Content-MD5, checksums or chunk signatures. Bucket
`b`'s object `k/e/y` is the file `<root>/b/k/e/y` (`folder_objects.py`), so keys are limited to what
maps onto a folder: no empty, `.` or `..` segment, no trailing `/`, no key that is also a "folder" of
other keys (400). ETags identify a file's version (inode, size, mtime), they are not content MD5s. Metadata (Content-Type,
x-amz-meta-*) is not kept. Operations: Get/Head/Put/DeleteObject(s) (GET with one `Range`: 206 and
Content-Range, 416 past the end), multipart uploads (create, upload part, complete, abort),
ListObjects V1 and V2 (prefix, delimiter, continuation token / start-after / marker, max-keys,
encoding-type=url), Create/Head/Delete bucket, GetBucketLocation, ListBuckets. Anything else gets a 501
NotImplemented naming it, never a wrong answer. PUT bodies may come with Content-Length or chunked, with
`Expect: 100-continue`, and aws-chunked (boto3's trailing checksums) — `s3_wire.request_body`.

Every GET of an object is recorded (`reads()`: object and byte range), so a test counts the bytes a
loader fetched, exactly and without the HTTP headers a proxy would count.

HTTP/1.1 with keep-alive on the standard library's `ThreadingHTTPServer`: one thread per connection,
and the GIL shared with whatever else runs in the process (`bench/remote.py` gives it a process of
its own). The wire format (ranges, XML, chunked bodies) lives in `tests/remote/s3_wire.py`, the
objects' files in `tests/remote/folder_objects.py`; this module routes requests between them.
"""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import json
import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.remote import s3_wire
from tests.remote.folder_azure import AzureBlobDialect, is_azure_request
from tests.remote.folder_objects import MULTIPART_FOLDER, TEMP_PREFIX, Folder, S3Error, etag_of
from tests.remote.s3 import LocalS3

INLINE_BYTES = 64 * 1024  # ranges up to this size go out in one send with the head (pread); larger ones by sendfile
COPY_BYTES = 1 << 20  # buffer for PUT bodies and for joining multipart parts
IDLE_TIMEOUT_S = 300.0  # an idle keep-alive connection (its thread) is closed after this
LIST_QUERY = {"list-type", "prefix", "delimiter", "continuation-token", "start-after", "max-keys", "encoding-type", "fetch-owner", "marker", "x-id"}
OBJECT_QUERY = {"x-id", "response-content-type", "response-content-disposition", "response-cache-control", "response-content-encoding",
                "response-content-language", "response-expires"}  # response-* overrides are accepted and not applied


class _Handler(AzureBlobDialect, BaseHTTPRequestHandler):
    """One connection: S3 requests in, answers out (see the module docstring for what is served); Azure Blob
    requests go to the `AzureBlobDialect` methods."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    disable_nagle_algorithm = True  # a head sent alone must not wait for the ACK of the one before
    timeout = IDLE_TIMEOUT_S
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # one line per request would drown a benchmark's output

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # -- routing

    def _serve(self) -> None:
        self.request_id = f"{next(self.server.request_ids):016X}"
        self.body_pending = self.command in ("PUT", "POST") and (
            int(self.headers.get("Content-Length") or 0) > 0 or "chunked" in (self.headers.get("Transfer-Encoding") or "").lower())
        split = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(split.query, keep_blank_values=True).items()}
        self.azure = is_azure_request(self.headers, query)  # Azure's dialect: folder_azure.py
        self.answer_headers = self.azure_answer_headers() if self.azure else {"x-amz-request-id": self.request_id}
        self.head_sent = False
        try:
            if self.azure:
                self._azure_request(split.path, query)
            else:
                bucket, _, key = unquote(split.path).lstrip("/").partition("/")
                self._route(bucket, key, query)
        except S3Error as error:
            self._send_error(error)
        except s3_wire.MalformedBody as error:
            self.body_pending = True  # where the body ends is unknown: the connection cannot carry another request
            self._send_error(S3Error(400, "IncompleteBody", str(error)))
        except (ConnectionError, TimeoutError):
            raise  # the client left; the server drops the connection quietly
        except Exception as error:
            if self.head_sent:
                raise  # mid-body: only closing the connection tells the client
            self.body_pending = True
            self._send_error(S3Error(500, "InternalError", f"{type(error).__name__}: {error}"))
            raise  # and the traceback goes to stderr (socketserver's handle_error)

    def _route(self, bucket: str, key: str, query: dict[str, str]) -> None:
        method, folder = self.command, self.server.folder
        if not bucket:
            if method != "GET":
                raise S3Error(501, "NotImplemented", f"{method} / is not served by this folder server")
            buckets = sorted(p for p in folder.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            return self._send(200, {"Content-Type": "application/xml"}, s3_wire.list_buckets_xml([(p.name, p.stat().st_mtime) for p in buckets]))
        if not key:
            return self._bucket_request(bucket, query)
        if method in ("GET", "HEAD") and not set(query) - OBJECT_QUERY:
            return self._get_object(bucket, key)
        if method == "PUT" and "x-amz-copy-source" not in self.headers and not set(query) - {"x-id"}:
            return self._put_object(bucket, key)
        if method == "PUT" and {"partNumber", "uploadId"} <= set(query) and not set(query) - {"partNumber", "uploadId", "x-id"}:
            return self._upload_part(bucket, key, query["uploadId"], query["partNumber"])
        if method == "POST" and "uploads" in query:
            return self._create_multipart(bucket, key)
        if method == "POST" and "uploadId" in query:
            return self._complete_multipart(bucket, key, query["uploadId"])
        if method == "DELETE" and "uploadId" in query:
            shutil.rmtree(folder.upload_path(query["uploadId"]))
            return self._send(204, {})
        if method == "DELETE" and not set(query) - {"x-id"}:
            folder.delete(bucket, key)
            return self._send(204, {})
        raise S3Error(501, "NotImplemented", f"{method} on an object with query {sorted(query)}"
                      f"{' and x-amz-copy-source' if 'x-amz-copy-source' in self.headers else ''} is not served by this folder server")

    def _bucket_request(self, bucket: str, query: dict[str, str]) -> None:
        method, folder = self.command, self.server.folder
        if method == "PUT" and not query:
            self._drain_body()
            folder.bucket_path(bucket, must_exist=False).mkdir(exist_ok=True)  # us-east-1: creating one's own bucket again is a 200
            return self._send(200, {"Location": f"/{bucket}"})
        if method == "HEAD" and not set(query) - {"x-id"}:
            folder.bucket_path(bucket)
            return self._send(200, {"x-amz-bucket-region": "us-east-1"})
        if method == "DELETE" and not query:
            path = folder.bucket_path(bucket)
            if any(files for _, _, files in os.walk(path)):
                raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=bucket)
            shutil.rmtree(path)
            return self._send(204, {})
        if method == "GET" and set(query) == {"location"}:
            folder.bucket_path(bucket)
            body = f'{s3_wire.XML_DECLARATION}<LocationConstraint xmlns="{s3_wire.S3_XMLNS}"/>'.encode()
            return self._send(200, {"Content-Type": "application/xml"}, body)
        if method == "GET" and not set(query) - LIST_QUERY:
            return self._list_objects(bucket, query)
        if method == "POST" and set(query) == {"delete"}:
            return self._delete_objects(bucket)
        raise S3Error(501, "NotImplemented", f"{method} on a bucket with query {sorted(query)} is not served by this folder server")

    # -- objects

    def _get_object(self, bucket: str, key: str) -> None:
        file = self.server.folder.open(bucket, key)
        if file is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        with file:
            stat = os.fstat(file.fileno())
            try:
                span = s3_wire.parse_range(self.headers.get("Range"), stat.st_size)
            except s3_wire.RangeNotSatisfiable:
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable", RangeRequested=self.headers["Range"],
                              ActualObjectSize=str(stat.st_size)) from None
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": etag_of(stat),
                       "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True)}
            self._send_object(bucket, key, file, stat, span, headers)

    def _send_object(self, bucket: str, key: str, file, stat: os.stat_result, span: tuple[int, int] | None, headers: dict[str, str]) -> None:
        """Bytes `span` (first, last; None: all) of the open `file` as a 206 (200) answer with `headers`, a
        HEAD's without the body; a GET is recorded (`reads()`). Both dialects' reads come through here."""
        start, end = span or (0, stat.st_size - 1)
        if span:
            headers["Content-Range"] = f"bytes {start}-{end}/{stat.st_size}"
        length = end - start + 1
        if self.command == "GET":
            self.server.record_read(ObjectRead(bucket, key, start, length))
        if self.command == "HEAD" or length <= INLINE_BYTES:
            body = b"" if self.command == "HEAD" else os.pread(file.fileno(), length, start)
            return self._send(206 if span else 200, headers, body, content_length=length)
        self._send(206 if span else 200, headers, b"", content_length=length)
        self.connection.sendfile(file, start, length)

    def _put_object(self, bucket: str, key: str) -> None:
        folder = self.server.folder
        if self.headers.get("If-None-Match", "").strip() == "*" and folder.object_path(bucket, key).is_file():
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", Condition="If-None-Match")
        stat = folder.write(bucket, key, self._copy_body)
        self._send(200, {"ETag": etag_of(stat)})

    def _copy_body(self, file) -> None:
        reader, written = s3_wire.request_body(self.rfile, self.headers), 0
        while chunk := reader.read(COPY_BYTES):
            file.write(chunk)
            written += len(chunk)
        self.body_pending = False
        expected = self.headers.get("x-amz-decoded-content-length")
        if expected is not None and int(expected) != written:
            raise S3Error(400, "IncompleteBody", f"the body decoded to {written:,} bytes; x-amz-decoded-content-length says {int(expected):,}")

    def _drain_body(self) -> bytes:
        reader, data = s3_wire.request_body(self.rfile, self.headers), bytearray()
        while chunk := reader.read(COPY_BYTES):
            data += chunk
        self.body_pending = False
        return bytes(data)

    def _delete_objects(self, bucket: str) -> None:
        folder = self.server.folder
        folder.bucket_path(bucket)
        try:
            keys, quiet = s3_wire.parse_delete_objects(self._drain_body())
        except ValueError as error:
            raise S3Error(400, "MalformedXML", str(error)) from None
        deleted, errors = [], []
        for key in keys:
            try:
                folder.delete(bucket, key)
                deleted.append(key)
            except S3Error as error:
                errors.append((key, error.code, error.message))
        self._send(200, {"Content-Type": "application/xml"}, s3_wire.delete_result_xml([] if quiet else deleted, errors))

    # -- multipart uploads

    def _create_multipart(self, bucket: str, key: str) -> None:
        folder = self.server.folder
        folder.object_path(bucket, key)  # the bucket exists and the key maps onto a file
        self._drain_body()
        upload_id = uuid.uuid4().hex
        path = folder.root / MULTIPART_FOLDER / upload_id
        path.mkdir(parents=True)
        (path / "target.json").write_text(json.dumps({"bucket": bucket, "key": key}))
        self._send(200, {"Content-Type": "application/xml"}, s3_wire.initiate_multipart_xml(bucket, key, upload_id))

    def _upload_part(self, bucket: str, key: str, upload_id: str, part_number: str) -> None:
        path = self.server.folder.upload_path(upload_id)
        if not part_number.isdigit() or not 1 <= int(part_number) <= 10_000:
            raise S3Error(400, "InvalidArgument", f"partNumber {part_number!r} is not an integer from 1 to 10000")
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path)
        try:
            with open(fd, "wb") as file:
                self._copy_body(file)
                file.flush()  # the ETag is of the finished part: its size and mtime after the last write
                stat = os.fstat(file.fileno())
            os.replace(temp, path / f"part-{int(part_number):05d}")
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        self._send(200, {"ETag": etag_of(stat)})

    def _complete_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        folder = self.server.folder
        path = folder.upload_path(upload_id)
        target = json.loads((path / "target.json").read_text())
        if (target["bucket"], target["key"]) != (bucket, key):
            raise S3Error(404, "NoSuchUpload", f"upload {upload_id} is for {target['bucket']}/{target['key']}", UploadId=upload_id)
        try:
            parts = s3_wire.parse_complete_multipart(self._drain_body())
        except ValueError as error:
            raise S3Error(400, "MalformedXML", str(error)) from None
        if [number for number, _ in parts] != sorted({number for number, _ in parts}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order, or named a part twice")
        files = []
        for number, etag in parts:
            part = path / f"part-{number:05d}"
            if not part.is_file() or etag.strip('"') != etag_of(part.stat()).strip('"'):
                raise S3Error(400, "InvalidPart", f"part {number} was not uploaded, or its ETag is not {etag}", UploadId=upload_id)
            files.append(part)

        def join(out) -> None:
            for part in files:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, COPY_BYTES)

        folder.write(bucket, key, join)
        shutil.rmtree(path)
        digest = hashlib.md5("".join(etag for _, etag in parts).encode()).hexdigest()
        body = s3_wire.complete_multipart_xml(location=f"/{bucket}/{key}", bucket=bucket, key=key, etag=f'"{digest}-{len(parts)}"')
        self._send(200, {"Content-Type": "application/xml"}, body)

    # -- listings

    def _list_objects(self, bucket: str, query: dict[str, str]) -> None:
        v2 = query.get("list-type") == "2"
        prefix, delimiter, token = query.get("prefix", ""), query.get("delimiter", ""), query.get("continuation-token", "")
        try:
            max_keys = min(int(query.get("max-keys", s3_wire.MAX_LIST_KEYS)), s3_wire.MAX_LIST_KEYS)
            after = s3_wire.decode_token(token) if token else query.get("start-after" if v2 else "marker", "")
        except ValueError as error:
            raise S3Error(400, "InvalidArgument", str(error)) from None
        if max_keys < 0:
            raise S3Error(400, "InvalidArgument", f"max-keys is {max_keys}; expected 0 to 1000")
        page = s3_wire.list_page(self.server.folder.entries(bucket, prefix), prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
        body = s3_wire.list_objects_xml(page, bucket=bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
                                        url_encode=query.get("encoding-type") == "url", v2=v2, continuation_token=token,
                                        start_after=query.get("start-after", ""), marker=query.get("marker", ""))
        self._send(200, {"Content-Type": "application/xml"}, body)

    # -- answers

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"", *, content_length: int | None = None) -> None:
        """The status line, `headers` and `body` in one send (a HEAD's `content_length` describes the body it omits)."""
        if self.body_pending:  # an error before the body was read: the rest of the stream is not a request
            self.close_connection = True
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", "Server: folder-s3",
                 f"Content-Length: {len(body) if content_length is None else content_length}"]
        lines += [f"{name}: {value}" for name, value in {**self.answer_headers, **headers}.items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.head_sent = True
        self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _send_error(self, error: S3Error) -> None:
        if self.azure:
            status, headers, body = self.azure_error_answer(error)
        else:
            status, headers = error.status, {"Content-Type": "application/xml"}
            body = s3_wire.error_xml(error.code, error.message, request_id=self.request_id, **error.fields)
        if self.command == "HEAD":  # no body; Azure's code still comes in x-ms-error-code
            return self._send(status, {name: value for name, value in headers.items() if name != "Content-Type"}, b"", content_length=0)
        self._send(status, headers, body)


@dataclass(frozen=True)
class ObjectRead:
    """One GET served: the object and the byte range sent (the whole object: from 0, its size)."""

    bucket: str
    key: str
    start: int
    length: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a connection's thread never keeps the process alive
    request_queue_size = 128  # many clients connecting at once (the default backlog is 5)

    def __init__(self, folder: Folder):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folder, self.request_ids = folder, itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.reads: list[ObjectRead] = []

    def record_read(self, read: ObjectRead) -> None:
        with self._lock:
            self.reads.append(read)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's, which looks the address up in DNS
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for sock in connections:  # wakes each connection's thread from its wait for the next request
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client (or the fault proxy) left mid-answer
        super().handle_error(request, client_address)


class FolderS3Server(LocalS3):
    """`Folder` served over HTTP on 127.0.0.1; `with FolderS3Server() as server:` starts and stops it.

    `root`: the folder holding the buckets; None, a temporary one, removed by `stop()`.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else None
        self._own_root = root is None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint: str | None = None

    def start(self) -> FolderS3Server:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="folder-s3-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = _Server(Folder(self.root))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="folder-s3")
        self._thread.start()
        return self

    def reads(self) -> list[ObjectRead]:
        """Every GET of an object served so far, in the order served (tests count bytes fetched with it)."""
        with self._server._lock:
            return list(self._server.reads)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is None:
            return
        self._server.shutdown()  # returns once serve_forever has (within poll_interval)
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout_s)
        self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> FolderS3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
