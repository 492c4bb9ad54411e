"""Buckets and objects as folders and files, for the folder S3 server (`tests/remote/folder_s3.py`).

Bucket `b`'s object `k/e/y` is the file `<root>/b/k/e/y`. Every write goes to a temporary file in the
object's folder and is renamed over the key's path once complete, so a reader never sees half an object
and an interrupted upload leaves no object. The price of using the folder tree as the key space: a key
cannot be both an object and a "folder" of other keys, and empty, `.` and `..` segments (and a trailing
`/`) are refused; deleting an object prunes the folders it leaves empty, so the name is free again.
Multipart uploads keep their parts under `<root>/.multipart/<upload id>/` until completed or aborted.

Deliberately not here: HTTP and S3's XML (`folder_s3.py`, `s3_wire.py`); errors are raised as
`S3Error` (status, S3 code, message) for the server to answer with.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

from tests.remote import s3_wire

TEMP_PREFIX = ".folder-s3-"  # files being written, renamed into place when complete; never listed
MULTIPART_FOLDER = ".multipart"  # under the root: one folder per upload; bucket names cannot start with "."
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class S3Error(Exception):
    """An S3 error answer: HTTP status, S3 code, message, and extra <Error> fields (Key=, BucketName=)."""

    def __init__(self, status: int, code: str, message: str, **fields: str):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def etag_of(stat: os.stat_result) -> str:
    return '"' + hashlib.md5(f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest() + '"'


class Folder:
    """Buckets and objects as folders and files under `root`; every write lands by rename."""

    def __init__(self, root: Path):
        self.root = root
        self._layout_lock = threading.Lock()  # creating parent folders vs pruning empty ones

    def bucket_path(self, bucket: str, *, must_exist: bool = True) -> Path:
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            raise S3Error(400, "InvalidBucketName", f"{bucket!r} is not a valid bucket name", BucketName=bucket)
        path = self.root / bucket
        if must_exist and not path.is_dir():
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        return path

    def object_path(self, bucket: str, key: str) -> Path:
        segments = key.split("/")
        if not key or any(s in ("", ".", "..") or s.startswith(TEMP_PREFIX) for s in segments) or "\0" in key:
            raise S3Error(400, "InvalidArgument", f"key {key!r} does not map onto a file of this folder server (no empty, '.', '..' "
                                                  f"or '{TEMP_PREFIX}*' segment, no trailing '/')", Key=key)
        return self.bucket_path(bucket).joinpath(*segments)

    def open(self, bucket: str, key: str):
        """The object's file, open for reading unbuffered (its range is read or sent by offset); None when there is none."""
        try:
            return open(self.object_path(bucket, key), "rb", buffering=0)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write(self, bucket: str, key: str, fill) -> os.stat_result:
        """Create the object by `fill(file)` into a temporary file renamed over `key`'s path; its stat."""
        path = self.object_path(bucket, key)
        with self._layout_lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
            except (FileExistsError, NotADirectoryError):
                raise S3Error(400, "InvalidArgument", f"key {key!r}: a prefix of it is an object here, and this folder server "
                                                      "cannot hold both", Key=key) from None
        try:
            with open(fd, "wb") as file:
                fill(file)
                file.flush()  # the ETag is of the finished file: its size and mtime after the last write
                stat = os.fstat(file.fileno())
            os.replace(temp, path)
        except IsADirectoryError:
            raise S3Error(400, "InvalidArgument", f"key {key!r} is a prefix of other keys here, and this folder server cannot hold both", Key=key) from None
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return stat

    def delete(self, bucket: str, key: str) -> None:
        path = self.object_path(bucket, key)
        bucket_root = self.bucket_path(bucket)
        with self._layout_lock:
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return  # S3 answers 204 for a key that is not there
            for parent in path.parents:  # prune folders left empty, so a later key may use the name
                if parent == bucket_root:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break

    def entries(self, bucket: str, prefix: str) -> list[s3_wire.ObjectEntry]:
        """Every object under `prefix`, sorted by key (walking only the folder the prefix names)."""
        bucket_root = self.bucket_path(bucket)
        folder = prefix.rpartition("/")[0]
        if any(segment in ("", ".", "..") for segment in folder.split("/")) and folder:
            return []  # no key has such a segment (and the walk must not leave the bucket)
        start = bucket_root.joinpath(*folder.split("/")) if folder else bucket_root
        found = []
        for directory, _, names in os.walk(start):
            relative = os.path.relpath(directory, bucket_root).replace(os.sep, "/")
            for name in names:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    try:
                        stat = os.stat(os.path.join(directory, name))
                    except FileNotFoundError:
                        continue  # deleted while listing
                    found.append(s3_wire.ObjectEntry(key, stat.st_size, stat.st_mtime, etag_of(stat)))
        return sorted(found, key=lambda entry: entry.key)

    def upload_path(self, upload_id: str) -> Path:
        path = self.root / MULTIPART_FOLDER / upload_id
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id) or not path.is_dir():
            raise S3Error(404, "NoSuchUpload", "The specified multipart upload does not exist", UploadId=upload_id)
        return path
