"""`Store`: the five things fastload asks of any storage, and the local-folder one.

    get_range(name, start, length) -> bytes      one block's byte range
    size(name) -> int                            a HEAD: does it exist, how big
    list() -> [name]                             the objects under the dataset's prefix
    put(name, data)                              whole-object upload (bytes or a local file)
    delete(name)

and, for reading input files of a conversion (`fastload convert s3://…`):

    describe(name) -> ObjectInfo                 a HEAD: size, and a version that changes when it is rewritten
    walk() -> [ObjectInfo]                       every object under the root, nested names included

Names are relative to the store's root (a folder or a URL prefix), plain
file names as index.json records them. Everything above this interface
(reader, cache, conversion output) is one code path whatever lies below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from fastload.errors import StoreError

__all__ = ["Store", "LocalStore", "ObjectInfo", "object_version"]


class ObjectInfo(NamedTuple):
    """One object (or file) under a store's root."""

    name: str  # relative to the root, "/" between levels
    size: int
    version: str  # changes when the object is rewritten: its ETag, a file's modification time


def object_version(etag, modified) -> str:
    """An object's version as `ObjectInfo` keeps it: its ETag, or its modification time where a store gives none."""
    return str(etag or modified or "")


class Store:
    """Bytes by name under one root. Subclasses implement the five methods; `url` names the root in messages."""

    url: str

    def get_range(self, name: str, start: int, length: int) -> bytes | memoryview:
        raise NotImplementedError

    def get(self, name: str) -> bytes | memoryview:
        """The whole object."""
        return self.get_range(name, 0, self.size(name))

    def size(self, name: str) -> int:
        raise NotImplementedError

    def list(self) -> list[str]:
        raise NotImplementedError

    def put(self, name: str, data: bytes | Path) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def describe(self, name: str) -> ObjectInfo:
        raise NotImplementedError

    def walk(self) -> list[ObjectInfo]:
        raise NotImplementedError

    def url_of(self, name: str) -> str:
        return self.url.rstrip("/") + "/" + name

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
        except FileNotFoundError:
            return False
        return True


class NotFound(StoreError, FileNotFoundError):
    """The object does not exist (a `StoreError` and a `FileNotFoundError`)."""


class LocalStore(Store):
    """A local folder (tests and `file://` use it; `fastload.Dataset` memory-maps local shards directly)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.url = str(self.folder)

    def _path(self, name: str) -> Path:
        return self.folder / name

    def get_range(self, name: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(name), "rb") as f:
                f.seek(start)
                data = f.read(length)
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(name)} does not exist") from None
        if len(data) != length:
            raise StoreError(f"{self.url_of(name)} holds {start + len(data):,} bytes, fewer than the {start + length:,} asked for")
        return data

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(name)} does not exist") from None

    def list(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file())

    def describe(self, name: str) -> ObjectInfo:
        try:
            stat = self._path(name).stat()
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(name)} does not exist") from None
        return ObjectInfo(name, stat.st_size, str(stat.st_mtime_ns))

    def walk(self) -> list[ObjectInfo]:
        return sorted(self.describe(p.relative_to(self.folder).as_posix()) for p in self.folder.rglob("*") if p.is_file())

    def put(self, name: str, data: bytes | Path) -> None:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        if isinstance(data, Path):
            with open(data, "rb") as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        else:
            partial.write_bytes(data)
        os.replace(partial, target)  # whole or nothing, as object stores promise

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            pass
