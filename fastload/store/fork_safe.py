"""Clients for processes that will fork (the main process of a training job): boto3 for s3://, urllib for http(s)://.

They carry no runtime threads, so the DataLoader's workers, forked later,
start clean (see `object_store.py` for why obstore cannot be used here).
Each makes one attempt per call; `ObjectStore` retries. Permanent failures
(missing, denied) are raised as `StoreError`, everything else is left to
the retry loop.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from fastload.errors import StoreError
from fastload.store.base import NotFound, ObjectInfo, object_version
from fastload.store.retry import RetryPolicy

__all__ = ["boto3_client", "S3Client", "HTTPClient"]

_S3_HINT = "Check the bucket and prefix, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_REGION, and AWS_ENDPOINT_URL for S3-compatible servers."
# storage_options keys (obstore's names) that boto3 can take; any other key sends the request through obstore.
_BOTO3_OPTIONS = {"endpoint": "endpoint_url", "region": "region_name", "access_key_id": "aws_access_key_id", "secret_access_key": "aws_secret_access_key", "token": "aws_session_token"}


def boto3_client(url: str, storage_options: dict, retry: RetryPolicy) -> "S3Client | None":
    """An S3Client, or None when boto3 is not installed or an option needs obstore."""
    if set(storage_options) - set(_BOTO3_OPTIONS):
        return None
    try:
        import boto3  # noqa: F401
    except ImportError:
        return None
    return S3Client(url, storage_options, retry)


class S3Client:
    """s3://bucket/prefix through boto3, with the environment's standard credentials and endpoint."""

    def __init__(self, url: str, storage_options: dict, retry: RetryPolicy):
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        self.url, self.bucket, self.prefix = url, parts.netloc, parts.path.strip("/")
        options = {_BOTO3_OPTIONS[k]: v for k, v in storage_options.items()}
        options.setdefault("endpoint_url", os.environ.get("AWS_ENDPOINT_URL") or None)
        config = Config(
            connect_timeout=min(5.0, retry.attempt_timeout_s),
            read_timeout=retry.attempt_timeout_s,
            retries={"total_max_attempts": 1},  # one attempt: ObjectStore retries, with one deadline for every client
            max_pool_connections=64,  # the planning pass reads two small ranges per block, 64 at a time
        )
        self.s3 = boto3.session.Session().client("s3", config=config, **options)
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, name: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except self._client_error as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            where = f"{self.url}/{name}"
            if status == 404 or code in ("NoSuchKey", "NotFound", "404"):
                raise NotFound(f"{where} does not exist. {_S3_HINT}") from None
            if code == "NoSuchBucket":
                raise StoreError(f"the bucket of {where} does not exist. {_S3_HINT}") from None
            if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"access to {where} was refused ({code or status}). {_S3_HINT}") from None
            raise  # 5xx, SlowDown, throttling: the retry loop decides

    def get_range(self, name: str, start: int, length: int) -> bytes:
        reply = self._call(name, self.s3.get_object, Key=self._key(name), Range=f"bytes={start}-{start + length - 1}")
        return reply["Body"].read()

    def get(self, name: str) -> bytes:
        return self._call(name, self.s3.get_object, Key=self._key(name))["Body"].read()

    def size(self, name: str) -> int:
        return int(self._call(name, self.s3.head_object, Key=self._key(name))["ContentLength"])

    def list(self) -> list[str]:
        return [info.name for info in self._listing(Delimiter="/")]

    def describe(self, name: str) -> ObjectInfo:
        reply = self._call(name, self.s3.head_object, Key=self._key(name))
        return ObjectInfo(name, int(reply["ContentLength"]), object_version(reply.get("ETag"), reply.get("LastModified")))

    def walk(self) -> list[ObjectInfo]:
        return list(self._listing())

    def _listing(self, **delimiter) -> Iterator[ObjectInfo]:
        """The objects under the prefix, page after page; with Delimiter="/", only those at its top level."""
        token = None
        prefix = f"{self.prefix}/" if self.prefix else ""
        while True:
            extra = {"ContinuationToken": token} if token else {}
            reply = self._call("", self.s3.list_objects_v2, Prefix=prefix, **delimiter, **extra)
            for item in reply.get("Contents", []):
                yield ObjectInfo(item["Key"][len(prefix) :], int(item["Size"]), object_version(item.get("ETag"), item.get("LastModified")))
            token = reply.get("NextContinuationToken")
            if not token:
                return

    def put(self, name: str, data: bytes | Path) -> None:
        if isinstance(data, Path):
            with open(data, "rb") as f:
                self._call(name, self.s3.put_object, Key=self._key(name), Body=f)
        else:
            self._call(name, self.s3.put_object, Key=self._key(name), Body=bytes(data))

    def delete(self, name: str) -> None:
        self._call(name, self.s3.delete_object, Key=self._key(name))


class HTTPClient:
    """http(s)://host/path: GET with a Range header, HEAD; read-only (no listing or upload over plain HTTP)."""

    def __init__(self, url: str, retry: RetryPolicy):
        self.url, self.timeout = url, retry.attempt_timeout_s

    def _open(self, name: str, method: str = "GET", headers: dict | None = None):
        request = urllib.request.Request(f"{self.url}/{name}", method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{self.url}/{name} does not exist (HTTP 404). Check the URL.") from None
            if exc.code in (401, 403):
                raise StoreError(f"access to {self.url}/{name} was refused (HTTP {exc.code}).") from None
            raise

    def get_range(self, name: str, start: int, length: int) -> bytes:
        with self._open(name, headers={"Range": f"bytes={start}-{start + length - 1}"}) as reply:
            if reply.status != 206 and start != 0:
                raise StoreError(f"{self.url}/{name}: the server ignored the Range request (HTTP {reply.status}); fastload needs a server that answers Range requests")
            return reply.read(length)

    def get(self, name: str) -> bytes:
        with self._open(name) as reply:
            return reply.read()

    def size(self, name: str) -> int:
        with self._open(name, method="HEAD") as reply:
            return int(reply.headers["Content-Length"])

    def describe(self, name: str) -> ObjectInfo:
        with self._open(name, method="HEAD") as reply:
            return ObjectInfo(name, int(reply.headers["Content-Length"]), object_version(reply.headers.get("ETag"), reply.headers.get("Last-Modified")))

    def list(self) -> list[str]:
        raise StoreError(f"{self.url}: plain HTTP cannot list objects; open the dataset by its folder URL (index.json names every shard)")

    def walk(self) -> list[ObjectInfo]:
        raise StoreError(f"{self.url}: plain HTTP cannot list objects; name each input file by its URL")

    def put(self, name: str, data) -> None:
        raise StoreError(f"{self.url}: fastload does not upload over plain HTTP; write to s3://, gs:// or az://")

    delete = put
