"""One interface to a dataset's bytes: local folders and object storage (S3, GCS, Azure, HTTP).

    open_store(location, storage_options=None, retry=None) -> Store
    is_remote(location) -> bool

`base.Store` is the interface (get_range, size, list, put, delete; describe
and walk for a conversion's input files); `object_store.ObjectStore` serves
URLs through obstore (the optional `fastload[remote]` extra);
`block_cache.BlockCache` keeps verified blocks on the node's disk, one
download per block per node; `prefetch.Prefetcher` fetches ahead in the
order the sampler will read; `object_file.ObjectFile` reads an object as a
seekable file (a conversion's inputs).
"""

from __future__ import annotations

import os

from fastload.store.base import LocalStore, NotFound, Store
from fastload.store.location import is_remote, local_path
from fastload.store.retry import RetryPolicy

__all__ = ["Store", "LocalStore", "NotFound", "RetryPolicy", "open_store", "is_remote", "local_path", "mark_leaf_process"]


def open_store(location: str | os.PathLike, storage_options: dict | None = None, retry: RetryPolicy | None = None) -> Store:
    """The store of a local folder, `file://` URL or object-store URL."""
    if is_remote(location):
        from fastload.store.object_store import ObjectStore

        return ObjectStore(str(location), storage_options, retry)
    return LocalStore(local_path(location))


def mark_leaf_process() -> None:
    """Called in each DataLoader worker: it never forks, so it may read through obstore (the fastest client)."""
    from fastload.store.object_store import mark_leaf_process as mark

    mark()
