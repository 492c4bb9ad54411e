"""`RemoteBlocks`: a dataset in object storage, read block by block through the node's cache.

What is fetched, and when:
- at open, `index.json` (one GET): shards, block byte ranges, CRCs, schema;
- per shard, once, its head (the file magic and the schema message: a few
  KB), to decode its blocks with the schema the writer used;
- per block, exactly its byte range (one Arrow record batch), never a
  whole shard, verified by its CRC before it is used or enters the cache.

Each request is logged at DEBUG on the "fastload.remote" logger, with its
process and cause (head, lengths, ahead, read, refetch): switch it on to see
which bytes an epoch fetches and why (`tests/remote/test_epoch_bytes.py`).

Blocks go through `store.BlockCache` in a folder named by the digest of
`index.json`, so a dataset re-converted under the same URL never meets the
old blocks. With an order given (`expect`, called by the datasets that know
their plan), `store.Prefetcher` fetches ahead of the reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fastload.environment import cache_dir as default_cache_root
from fastload.errors import ConfigError, FormatError, StoreError
from fastload.format.checksum import crc32
from fastload.format.index import INDEX_FILE, DatasetIndex, parse_index
from fastload.format.ipc_layout import read_offsets
from fastload.format.schema import Schema, column_from_arrow_field
from fastload.store import NotFound, RetryPolicy, open_store
from fastload.store.block_cache import BlockCache
from fastload.store.prefetch import Prefetcher

__all__ = ["RemoteBlocks", "default_cache_bytes"]

log = logging.getLogger("fastload.remote")

_HEAD_BYTES = 8 << 10  # a shard's magic and schema message fit in this unless the schema is large (then a second request)
_REFETCH_ON_BAD_CRC = 1  # a corrupt download is fetched once more before the block is called corrupt


def default_cache_bytes(folder: Path) -> int:
    """Half the free space of the disk holding `folder` when the dataset is opened."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free // 2


class RemoteBlocks:
    """The blocks of the dataset at `url`, by global block id (storage order)."""

    def __init__(self, url: str, *, storage_options: dict | None, cache_dir, cache_bytes: int | None, retry: RetryPolicy | None, read_ahead_bytes: int = 256 << 20):
        self.url = url
        self.read_ahead_bytes = int(read_ahead_bytes)
        self.store = open_store(url, storage_options, retry)
        try:
            data = bytes(self.store.get(INDEX_FILE))
        except NotFound:
            raise FormatError(
                f"{self.store.url_of(INDEX_FILE)} does not exist, so {url} is not a complete fastload dataset. "
                "Check the URL, or create one with 'fastload convert INPUT -o URL'."
            ) from None
        self.index: DatasetIndex = parse_index(data, self.store.url_of(INDEX_FILE))
        self.digest = hashlib.sha256(data).hexdigest()
        if cache_dir is None:
            root = default_cache_root()
            if root is None:
                raise ConfigError("FASTLOAD_CACHE_DIR=off, but a remote dataset needs a cache folder: pass cache_dir=")
            cache_dir = root / "blocks"
        folder = Path(cache_dir) / self.digest[:32]
        if cache_bytes is None:
            cache_bytes = default_cache_bytes(folder)
        if int(cache_bytes) <= 0:
            raise ConfigError(f"cache_bytes must be positive, found {cache_bytes!r}")
        self.cache = BlockCache(folder, int(cache_bytes))
        shards = self.index.shards
        self.block_shard = np.concatenate([np.full(s.num_blocks, i, np.int64) for i, s in enumerate(shards)])
        self.block_local = np.concatenate([np.arange(s.num_blocks, dtype=np.int64) for s in shards])
        self.block_bytes = np.concatenate([np.asarray(s.block_bytes, np.int64) for s in shards])
        self._heads: dict[int, tuple[pa.Schema, int]] = {}
        self._head_locks: dict[int, threading.Lock] = {}  # process id -> the lock of its head fetches
        self._prefetcher: Prefetcher | None = None
        self._held: dict[int, memoryview] = {}  # fetched ahead but kept out of a full cache: in memory until read

    def __getstate__(self):
        raise TypeError("RemoteBlocks are opened again in each process: pickle the Dataset, which carries its options")

    def describe_cache(self) -> dict:
        return {"folder": str(self.cache.folder), "capacity_bytes": self.cache.capacity_bytes, **self.cache.stats}

    # -- shards ---------------------------------------------------------------------------

    def shard_head(self, shard_id: int, schema: Schema) -> tuple[pa.Schema, int]:
        """(Arrow schema, where block 0's record batch starts) of a shard, fetched once per process."""
        head = self._heads.get(shard_id)
        if head is not None:
            return head
        # Lengths are read by many threads at once: without this lock each of them fetched the same head
        # (measured: 32 fetches of a shard's head per epoch, 2 MB, a third of the bytes beyond the blocks').
        with self._head_locks.setdefault(os.getpid(), threading.Lock()):  # a forked child's copy may be held: one per process
            return self._fetch_head(shard_id, schema)

    def _fetch_head(self, shard_id: int, schema: Schema) -> tuple[pa.Schema, int]:
        head = self._heads.get(shard_id)  # fetched by another thread while this one waited
        if head is None:
            info = self.index.shards[shard_id]
            url = self.store.url_of(info.file)
            length = min(_HEAD_BYTES, info.num_bytes)
            try:
                try:
                    arrow_schema, offset = _parse_head(self._get_range(info.file, 0, length, "head"))
                except _NeedMore as more:  # (the second parse is checked as the first: it may claim more again)
                    arrow_schema, offset = _parse_head(self._get_range(info.file, 0, min(more.bytes, info.num_bytes), "head"))
            except StoreError:
                raise  # the store said what failed and where
            except (_NeedMore, pa.ArrowException, ValueError, OSError) as exc:
                raise FormatError(f"shard {url} does not start like an Arrow IPC file ({exc}). Run 'fastload verify {self.url}'.") from None
            found = Schema(tuple(column_from_arrow_field(f) for f in arrow_schema))
            if found != schema:
                raise FormatError(f"shard {url} has columns {found.to_json()} but index.json records {schema.to_json()}. Run 'fastload verify {self.url}'.")
            head = self._heads[shard_id] = (arrow_schema, offset)
        return head

    # -- blocks ---------------------------------------------------------------------------

    def block_bytes_of(self, block_id: int) -> pa.Buffer:
        """Exactly block `block_id`'s byte range, CRC-checked: from the node's cache, or fetched now."""
        prefetcher = self._prefetcher
        if prefetcher is not None and prefetcher._pid != os.getpid():
            # A forked child's copy of its parent's: its fetches run in the parent only (waiting for one
            # would hang) and its schedule is the parent's. The child reads on demand until its own `expect`.
            prefetcher = None
        if prefetcher is not None:
            failed = prefetcher.wait(block_id)
            if failed is not None:
                raise failed
        # Pinned from the lookup until its bytes are in memory: otherwise another process may evict the
        # file in between (this one's pin from reading ahead ends with `consumed`, so that comes last).
        self.cache.pin(block_id)
        try:
            got = self._held.pop(block_id, None)
            if got is None:
                got = self.cache.get(block_id, int(self.block_bytes[block_id]), lambda: self._download(block_id, "read"))
            if isinstance(got, Path):
                try:
                    got = got.read_bytes()  # a copy: no descriptor or mapping stays open per block
                except FileNotFoundError:  # removed by hand meanwhile (a pinned block is never evicted): fetch it again
                    got = self._download(block_id, "refetch")
        finally:
            self.cache.unpin(block_id)
        if prefetcher is not None:
            prefetcher.consumed(block_id)
        return pa.py_buffer(got)

    def _get_range(self, file: str, start: int, length: int, cause: str, block_id: int | None = None) -> memoryview:
        """`store.get_range`, logged (see the module docstring)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("process %d fetches %s bytes %d-%d (%d bytes): %s of block %s", os.getpid(), file, start, start + length, length, cause, block_id)
        return self.store.get_range(file, start, length)

    def _download(self, block_id: int, cause: str) -> memoryview:
        shard_id, local = int(self.block_shard[block_id]), int(self.block_local[block_id])
        info = self.index.shards[shard_id]
        start, length = int(info.block_offsets[local]), int(info.block_bytes[local])
        expected = int(info.block_crc32[local])
        for attempt in range(_REFETCH_ON_BAD_CRC + 1):
            data = self._get_range(info.file, start, length, cause, block_id)
            crc = crc32(data) if length else 0
            if crc == expected:
                return data
        raise FormatError(
            f"block {local} of {self.store.url_of(info.file)} (bytes {start:,}-{start + length:,}) fails its checksum: "
            f"CRC-32 {crc:#010x}, index.json records {expected:#010x}, in {_REFETCH_ON_BAD_CRC + 1} downloads. The object is "
            f"corrupt: run 'fastload verify {self.url}' and re-create the dataset."
        )

    # -- planning -------------------------------------------------------------------------

    def row_lengths(self, column: str, schema: Schema, *, threads: int = 64) -> np.ndarray:
        """Every row's length in a tokens/text/bytes column, from each block's metadata and offsets
        buffer only (`ipc_layout`: two small requests per block, 64 blocks at a time), kept in the cache
        folder so that the next start reads one file."""
        saved = self.cache.folder / f"lengths-{column}.npy"
        num_rows = sum(s.num_rows for s in self.index.shards)
        try:
            lengths = np.load(saved)
            if lengths.shape == (num_rows,) and lengths.dtype == np.int64:
                return lengths
        except (OSError, ValueError):
            pass
        with ThreadPoolExecutor(threads, thread_name_prefix="fastload-lengths") as pool:
            parts = list(pool.map(lambda b: self.block_lengths(b, column, schema), range(len(self.block_shard))))
        lengths = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if len(lengths) and lengths.min() < 0:
            raise FormatError(f"column {column!r} of {self.url} has offsets that go backwards. Run 'fastload verify {self.url}'.")
        self.cache.folder.mkdir(parents=True, exist_ok=True)
        partial = saved.with_name(f".{saved.name}.{os.getpid()}.partial")
        with open(partial, "wb") as f:  # a handle: np.save would append ".npy" to the name
            np.save(f, lengths)
        os.replace(partial, saved)
        return lengths

    def block_lengths(self, block_id: int, column: str, schema: Schema) -> np.ndarray:
        """One block's row lengths in a column, from its metadata and offsets buffer: read from the
        node's cache when the block is there, else fetched (two small requests)."""
        shard_id, local = int(self.block_shard[block_id]), int(self.block_local[block_id])
        info = self.index.shards[shard_id]
        arrow_schema, first_offset = self.shard_head(shard_id, schema)
        start = first_offset if local == 0 else int(info.block_offsets[local])
        end = int(info.block_offsets[local] + info.block_bytes[local])
        where = f"block {local} of {self.store.url_of(info.file)}"
        read = lambda o, n: self._get_range(info.file, o, n, "lengths", block_id)  # noqa: E731
        cached = self.cache.lookup(block_id)
        if cached is not None:  # the cache holds exactly the block's range, CRC-checked when it entered
            try:
                with open(cached, "rb") as f:
                    data = f.read()
                if len(data) == int(info.block_bytes[local]):
                    base = int(info.block_offsets[local])
                    read = lambda o, n: memoryview(data)[o - base : o - base + n]  # noqa: E731
            except FileNotFoundError:  # evicted meanwhile: fetch the two pieces
                pass
        try:
            offsets, num_rows = read_offsets(read, start, end, arrow_schema, column)
        except (ValueError, pa.ArrowException) as exc:
            raise FormatError(f"{where} cannot be planned from ({exc}). Run 'fastload verify {self.url}'.") from None
        if num_rows != int(info.block_rows[local]):
            raise FormatError(f"{where} has {num_rows:,} rows but index.json records {int(info.block_rows[local]):,}. Run 'fastload verify {self.url}'.")
        return np.diff(offsets)

    # -- reading ahead ----------------------------------------------------------------------

    def expect(self, order, *, fetch_ahead: int | None = None) -> None:
        """This process will read these blocks in this order: fetch ahead along its first `fetch_ahead`
        (all by default), and rank what the cache keeps by all of it (`Prefetcher.expect`)."""
        if self._prefetcher is None or self._prefetcher._pid not in (None, os.getpid()):
            # Blocks fetched ahead stay pinned until read, and each worker of a rank reads ahead: a quarter
            # of the cache at most per process, so pins never crowd out the blocks being read (measured: with
            # 256 MiB ahead in a 25 MB cache, two workers bypassed the cache and fetched blocks twice, 1.57x).
            ahead = min(self.read_ahead_bytes, max(int(self.block_bytes.max(initial=1)), self.cache.capacity_bytes // 4))
            published = self.cache.publish_schedule(len(self.block_bytes))  # so that the node's other processes keep what this one needs
            self._prefetcher = Prefetcher(self._prefetch, self._release, self.block_bytes, ahead_bytes=ahead, published=published)
            self._held = {}
            self.cache.next_use = self._prefetcher.next_use
        self._prefetcher.expect(order, fetch_ahead=fetch_ahead)

    def _prefetch(self, block_id: int) -> None:
        self.cache.pin(block_id)
        try:
            got = self.cache.get(block_id, int(self.block_bytes[block_id]), lambda: self._download(block_id, "ahead"))
        except BaseException:
            self.cache.unpin(block_id)
            raise
        if not isinstance(got, Path):
            self._held[block_id] = got  # the cache had no room: the prefetcher's byte budget bounds these

    def _release(self, block_id: int) -> None:
        self._held.pop(block_id, None)
        self.cache.unpin(block_id)


class _NeedMore(Exception):
    def __init__(self, num_bytes: int):
        super().__init__(f"its schema message needs the first {num_bytes:,} bytes")
        self.bytes = num_bytes


def _parse_head(data) -> tuple[pa.Schema, int]:
    """The schema message after the 8-byte magic, and where the next message starts."""
    data = bytes(data)
    if data[:6] != b"ARROW1":
        raise ValueError("no ARROW1 magic")
    if len(data) >= 16:
        length = int.from_bytes(data[12:16], "little") if data[8:12] == b"\xff\xff\xff\xff" else int.from_bytes(data[8:12], "little")
        needed = 16 + length if data[8:12] == b"\xff\xff\xff\xff" else 12 + length
        if needed > len(data):
            raise _NeedMore(needed + 8)
    stream = pa.BufferReader(pa.py_buffer(data))
    stream.seek(8)
    message = ipc.read_message(stream)
    return ipc.read_schema(message), stream.tell()
