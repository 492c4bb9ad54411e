"""Azure Blob Storage's REST dialect for the folder server (`tests/remote/folder_s3.py`): az:// on 127.0.0.1.

The folder server answers a request in Azure's words when it carries `x-ms-version` (every request of
Azure's clients does; no S3 client sends it), so one server on one folder stands for S3, GCS and Azure:
Azure container `c` is the folder `<root>/c`, as S3 bucket `c` is. The account is path-style, as in
Azurite, the emulator Azure's SDKs and obstore know: `http://127.0.0.1:PORT/devstoreaccount1/c/k/e/y`.
obstore reaches it with `use_emulator` and AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:PORT, or with
`endpoint="http://127.0.0.1:PORT/devstoreaccount1"` and any account key (`conftest.py`'s `azure_endpoint`).

Served, exactly what obstore's Azure client sends for fastload (requests logged against a bare server,
obstore 0.12.1): Get Blob (one `bytes=first-[last]` range in x-ms-range or Range: 206 and Content-Range,
416 past the end), Get Blob Properties (HEAD), Put Blob (BlockBlob; If-None-Match: *), Put Block and
Put Block List (how obstore uploads a large file), Delete Blob, both alone and as a Blob Batch of deletes
(how `obstore.delete` sends one), List Blobs (prefix, delimiter, marker, maxresults), Create Container.
Anything else, and any header that would change an answer this server cannot honour (conditions other
than If-None-Match: *, leases, copies, customer keys, range MD5s, snapshots, versions, include=), gets
501 NotImplemented naming it, never a wrong answer.

Trusted as the S3 dialect is: SharedKey and SAS signatures are accepted unchecked (SAS parameters are
dropped from the query before routing), Content-MD5/CRC64 unchecked, blob properties and metadata
(Content-Type, x-ms-meta-*, tags) not kept (a blob is application/octet-stream). Block ids must be base64
of 1-64 bytes; Azure's rule that one blob's ids have one length is not checked. Uncommitted blocks live
in `<root>/.multipart/<md5 of container/blob>/` until a Put Block List or Put Blob of that blob (Azure
would drop them after a week). Deliberately not here: HTTP plumbing (`folder_s3.py`'s handler, which
this mixes into) and XML (`azure_wire.py`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
import uuid
from urllib.parse import unquote

from tests.remote import azure_wire, s3_wire
from tests.remote.folder_objects import MULTIPART_FOLDER, TEMP_PREFIX, S3Error, etag_of

ACCOUNT = "devstoreaccount1"  # Azurite's well-known account: what obstore's use_emulator assumes
ACCOUNT_KEY = base64.b64encode(b"fastload local test key").decode()  # any base64 key: clients sign with it, no one checks
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # Azure's rule (stricter than a bucket's)
SAS_QUERY = {"sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "si", "sdd", "ses", "skoid", "sktid", "skt", "ske", "sks",
             "skv", "saoid", "suoid", "scid", "sip", "rscc", "rscd", "rsce", "rscl", "rsct"}  # a SAS token's parameters
IGNORED_QUERY = {"timeout"}  # a server-side time limit: nothing here takes that long
LIST_QUERY = {"restype", "comp", "prefix", "delimiter", "marker", "maxresults"}
UNSERVED_HEADERS = ("if-match", "if-modified-since", "if-unmodified-since", "x-ms-if-tags", "x-ms-lease-id", "x-ms-lease-action",
                    "x-ms-copy-source", "x-ms-encryption-key", "x-ms-encryption-scope", "x-ms-range-get-content-md5",
                    "x-ms-range-get-content-crc64", "x-ms-source-if-match", "x-ms-blob-condition-appendpos")
# Folder raises S3's codes; an Azure client gets Azure's (same status).
AZURE_CODES = {"NoSuchBucket": "ContainerNotFound", "InvalidBucketName": "InvalidResourceName", "InvalidArgument": "InvalidInput",
               "IncompleteBody": "InvalidInput", "MalformedXML": "InvalidXmlDocument"}


class AzureError(S3Error):
    """An answer in Azure's words (status, Azure error code, message, extra headers). An `S3Error`, the class
    `Folder` raises, so the handler has one error path; `azure_error_answer` translates the S3 codes of the others."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(status, code, message)
        self.headers = headers or {}


def is_azure_request(headers, query: dict[str, str]) -> bool:
    """Azure's clients name the API version in every request (SharedKey), or sign its query (SAS)."""
    return "x-ms-version" in headers or {"sv", "sig"} <= set(query)


def upload_folder_name(container: str, blob: str) -> str:
    """The folder under `.multipart` holding a blob's uncommitted blocks (32 hex digits, as an S3 upload id)."""
    return hashlib.md5(f"{container}/{blob}".encode()).hexdigest()


def create_container(server_url: str, container: str) -> None:
    """Create Container on the folder server at `server_url`, as an Azure client sends it (tests' fixtures)."""
    request = urllib.request.Request(f"{server_url}/{ACCOUNT}/{container}?restype=container", method="PUT",
                                     headers={"x-ms-version": "2023-11-03", "Content-Length": "0"})
    urllib.request.urlopen(request, timeout=10).close()  # an error answer raises HTTPError


class AzureBlobDialect:
    """The Azure Blob requests of `folder_s3._Handler`, mixed into it: its `_send`, `_send_object`,
    `_copy_body`, `_drain_body` and `server.folder` carry them (see the module docstring for what is served)."""

    def _azure_request(self, path: str, query: dict[str, str]) -> None:
        account, container, blob = self._azure_path(path)
        query = {name: value for name, value in query.items() if name not in SAS_QUERY | IGNORED_QUERY}
        unserved = [name for name in UNSERVED_HEADERS if name in self.headers]
        if unserved or (self.headers.get("If-None-Match") and not (self.command == "PUT" and self.headers["If-None-Match"].strip() == "*")):
            raise AzureError(501, "NotImplemented", f"{self.command} with header(s) {unserved or ['If-None-Match']}: this folder "
                             "server cannot honour them (see tests/remote/folder_azure.py)")
        method, unknown = self.command, f"{self.command} with query {sorted(query)}"
        if not container:
            raise AzureError(501, "NotImplemented", f"{unknown} on the account (List Containers, service properties) is not served by this folder server")
        if not blob:
            if method == "PUT" and query == {"restype": "container"}:
                return self._create_container(container)
            if method == "GET" and query.get("restype") == "container" and query.get("comp") == "list" and not set(query) - LIST_QUERY:
                return self._list_blobs(account, container, query)
            if method == "POST" and query == {"restype": "container", "comp": "batch"}:
                return self._blob_batch(container)
            raise AzureError(501, "NotImplemented", f"{unknown} on a container is not served by this folder server")
        if method in ("GET", "HEAD") and not query:
            return self._get_blob(container, blob)
        if method == "PUT" and not query:
            return self._put_blob(container, blob)
        if method == "PUT" and query.keys() == {"comp", "blockid"} and query["comp"] == "block":
            return self._put_block(container, blob, query["blockid"])
        if method == "PUT" and query == {"comp": "blocklist"}:
            return self._put_block_list(container, blob)
        if method == "DELETE" and not query:
            self._delete_blob(container, blob)
            return self._send(202, {"x-ms-delete-type-permanent": "true"})
        raise AzureError(501, "NotImplemented", f"{unknown} on a blob is not served by this folder server")

    def _azure_path(self, path: str) -> tuple[str, str, str]:
        """(account, container, blob) of a request path `/account/container/blob` (percent-encoded)."""
        account, _, rest = unquote(path).lstrip("/").partition("/")
        container, _, blob = rest.partition("/")
        if account != ACCOUNT:
            raise AzureError(400, "InvalidUri", f"this folder server serves the account {ACCOUNT!r} (path-style: /{ACCOUNT}/container/blob), "
                                                f"not {account!r}; point the client at http://HOST:PORT/{ACCOUNT} or use the emulator settings")
        if container and not CONTAINER_NAME.match(container):
            raise AzureError(400, "InvalidResourceName", f"{container!r} is not a valid container name (3-63 lowercase letters, "
                                                         "digits and single hyphens)")
        return account, container, blob

    # -- containers

    def _create_container(self, container: str) -> None:
        self._drain_body()
        path = self.server.folder.bucket_path(container, must_exist=False)
        try:
            path.mkdir()
        except FileExistsError:
            raise AzureError(409, "ContainerAlreadyExists", "The specified container already exists.") from None
        self._send(201, {"ETag": etag_of(path.stat()), "Last-Modified": azure_wire.http_date(path.stat().st_mtime)})

    def _list_blobs(self, account: str, container: str, query: dict[str, str]) -> None:
        prefix, delimiter, marker = query.get("prefix", ""), query.get("delimiter", ""), query.get("marker", "")
        try:
            max_results = int(query["maxresults"]) if "maxresults" in query else None
            after = s3_wire.decode_token(marker) if marker else ""
        except ValueError as error:
            raise AzureError(400, "OutOfRangeQueryParameterValue" if "maxresults" in str(error) else "InvalidQueryParameterValue", str(error)) from None
        if max_results is not None and not 1 <= max_results:
            raise AzureError(400, "OutOfRangeQueryParameterValue", f"maxresults is {max_results}; expected 1 or more")
        page = s3_wire.list_page(self.server.folder.entries(container, prefix), prefix=prefix, delimiter=delimiter, after=after,
                                 max_keys=min(max_results or azure_wire.MAX_LIST_RESULTS, azure_wire.MAX_LIST_RESULTS))
        service = f"http://{self.headers.get('Host', '127.0.0.1')}/{account}/"
        body = azure_wire.list_blobs_xml(page, service=service, container=container, prefix=prefix, delimiter=delimiter,
                                         marker=marker, max_results=max_results)
        self._send(200, {"Content-Type": "application/xml"}, body)

    # -- blobs

    def _get_blob(self, container: str, blob: str) -> None:
        file = self.server.folder.open(container, blob)
        if file is None:
            raise AzureError(404, "BlobNotFound", "The specified blob does not exist.")
        with file:
            stat = os.fstat(file.fileno())
            try:
                span = azure_wire.parse_blob_range(self.headers, stat.st_size)
            except azure_wire.UnservedRange as error:
                raise AzureError(501, "NotImplemented", str(error)) from None
            except s3_wire.RangeNotSatisfiable:
                raise AzureError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                                 headers={"Content-Range": f"bytes */{stat.st_size}"}) from None
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": etag_of(stat),
                       "Last-Modified": azure_wire.http_date(stat.st_mtime), "x-ms-blob-type": "BlockBlob",
                       "x-ms-creation-time": azure_wire.http_date(stat.st_mtime), "x-ms-server-encrypted": "false"}
            self._send_object(container, blob, file, stat, span, headers)

    def _put_blob(self, container: str, blob: str) -> None:
        blob_type = self.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise AzureError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type")
        if blob_type != "BlockBlob":
            raise AzureError(501, "NotImplemented", f"Put Blob of a {blob_type}: this folder server keeps block blobs only")
        folder = self.server.folder
        if self.headers.get("If-None-Match") and folder.object_path(container, blob).is_file():
            raise AzureError(409, "BlobAlreadyExists", "The specified blob already exists.")
        stat = folder.write(container, blob, self._copy_body)
        shutil.rmtree(self._upload_path(container, blob), ignore_errors=True)  # Azure drops a blob's uncommitted blocks
        self._send_written(stat)

    def _put_block(self, container: str, blob: str, block_id: str) -> None:
        self.server.folder.object_path(container, blob)  # the container exists and the name maps onto a file
        try:
            name = azure_wire.block_file_name(block_id)
        except ValueError as error:
            raise AzureError(400, "InvalidQueryParameterValue", str(error)) from None
        upload = self._upload_path(container, blob)
        upload.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=upload)
        try:
            with open(fd, "wb") as file:
                self._copy_body(file)
            os.replace(temp, upload / name)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        self._send(201, {"x-ms-request-server-encrypted": "false"})

    def _put_block_list(self, container: str, blob: str) -> None:
        folder, upload = self.server.folder, self._upload_path(container, blob)
        folder.object_path(container, blob)
        try:
            blocks = azure_wire.parse_block_list(self._drain_body())
            files = [(kind, upload / azure_wire.block_file_name(block_id)) for kind, block_id in blocks]
        except ValueError as error:
            raise AzureError(400, "InvalidXmlDocument", str(error)) from None
        if any(kind == "Committed" for kind, _ in files):
            raise AzureError(501, "NotImplemented", "a <Committed> block in Put Block List: this folder server keeps no committed blocks")
        missing = [file.name for _, file in files if not file.is_file()]
        if missing:
            raise AzureError(400, "InvalidBlockList", f"The specified block list is invalid: {len(missing)} block(s) were not uploaded "
                                                      f"({', '.join(missing[:3])})")
        if self.headers.get("If-None-Match") and folder.object_path(container, blob).is_file():
            raise AzureError(409, "BlobAlreadyExists", "The specified blob already exists.")

        def join(out) -> None:
            for _, part in files:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)

        stat = folder.write(container, blob, join)
        shutil.rmtree(upload, ignore_errors=True)
        self._send_written(stat)

    def _send_written(self, stat: os.stat_result) -> None:
        self._send(201, {"ETag": etag_of(stat), "Last-Modified": azure_wire.http_date(stat.st_mtime), "x-ms-request-server-encrypted": "false"})

    def _upload_path(self, container: str, blob: str):
        return self.server.folder.root / MULTIPART_FOLDER / upload_folder_name(container, blob)

    def _delete_blob(self, container: str, blob: str) -> None:
        folder = self.server.folder
        if not folder.object_path(container, blob).is_file():
            raise AzureError(404, "BlobNotFound", "The specified blob does not exist.")
        folder.delete(container, blob)

    def _blob_batch(self, container: str) -> None:
        """A Blob Batch of Delete Blob subrequests, each answered in the multipart reply (how obstore deletes)."""
        self.server.folder.bucket_path(container)
        try:
            deletes = azure_wire.parse_batch_deletes(self._drain_body(), azure_wire.batch_boundary(self.headers.get("Content-Type")))
        except ValueError as error:
            raise AzureError(400, "InvalidInput", str(error)) from None
        except NotImplementedError as error:
            raise AzureError(501, "NotImplemented", str(error)) from None
        answers = []
        for delete in deletes:
            try:
                _, sub_container, blob = self._azure_path(delete.path.partition("?")[0])
                if sub_container != container or not blob:
                    raise AzureError(400, "InvalidInput", f"a batch on container {container!r} deletes {delete.path!r}: not a blob of it")
                self._delete_blob(container, blob)
                answers.append((delete.content_id, 202, "Accepted", {"x-ms-delete-type-permanent": "true"}, b""))
            except S3Error as error:
                status, headers, body = self.azure_error_answer(error)
                answers.append((delete.content_id, status, error.message, headers, body))
        boundary = f"batchresponse_{uuid.uuid4()}"
        self._send(202, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, azure_wire.batch_answer(answers, boundary))

    # -- answers

    def azure_answer_headers(self) -> dict[str, str]:
        return {"x-ms-request-id": self.request_id, "x-ms-version": self.headers.get("x-ms-version", "2023-11-03")}

    def azure_error_answer(self, error: S3Error) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of `error` in Azure's words; an S3 code from `Folder` becomes Azure's."""
        ours = isinstance(error, AzureError)
        code = error.code if ours else AZURE_CODES.get(error.code, error.code)
        headers = {"x-ms-error-code": code, "Content-Type": "application/xml", **(error.headers if ours else {})}
        return error.status, headers, azure_wire.error_xml(code, error.message, request_id=self.request_id)
