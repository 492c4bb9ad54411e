"""Read a dataset folder: `fastload.Dataset`.

Opening a dataset reads and validates `index.json` and checks that every
shard exists with the size the index records (a `stat` per shard, no data
read). Shards are memory-mapped on first use; with compression `none` a
block's numpy views point straight into the page cache (zero copy), with
`lz4`/`zstd` Arrow decompresses just that block.

Every block is checked the first time this process reads it: the CRC-32 of
its bytes against the index, then Arrow's full validation of the decoded
record batch. A flipped bit, a truncated file or a hand-edited shard is a
`FormatError` naming the shard and block, never a crash in a kernel later.
The CRC runs at several GB/s, a small price next to everything else done
with a block; `check_blocks=False` skips both checks for trusted data.

`Dataset` is also a plain map-style dataset: `len(ds)` and `ds[i]` (a dict of
numpy arrays, numpy scalars, str and bytes) work with
`torch.utils.data.DataLoader`. It pickles as its path and options, and each
process maps the shards itself.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fastload.errors import FormatError
from fastload.format.checksum import crc32
from fastload.format.files import file_problem
from fastload.format.index import DatasetIndex, ShardInfo, read_index
from fastload.format.ipc_layout import read_offsets
from fastload.format.schema import Schema, column_from_arrow_field, offsets_of
from fastload.store import RetryPolicy, is_remote, local_path

__all__ = ["Dataset", "Block", "Ragged", "column_view", "decode_block", "decode_record_batch", "first_batch_offset"]

# What pyarrow raises on damaged bytes: its own errors, and for a damaged footer also
# OSError ("Invalid Block in IPC file footer") or a failed UTF-8 decode of a field name.
_DAMAGE = (pa.ArrowException, OSError, UnicodeDecodeError, ValueError)

# Decoded blocks a process keeps when nothing sizes its cache: enough for storage order and for a few
# readers interleaving nearby blocks, small (16 MiB with the writer's default 1 MiB blocks) for any
# dataset. A shuffled order keeps far more blocks in use at once; see `Dataset.fit_cache`.
DEFAULT_CACHE_BLOCKS = 16

_VERIFY_HINT = "Run 'fastload verify {folder}' to list every damaged shard, then re-create the dataset with 'fastload convert'."


@dataclass(frozen=True)
class Ragged:
    """A column of variable-length rows: row i is `values[offsets[i]:offsets[i + 1]]`.

    `values` is the flat buffer (token ids, or UTF-8 / raw bytes as uint8) and
    `offsets` has one more entry than there are rows. Both are read-only
    views into the shard.
    """

    values: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class Block:
    """One block (record batch) as numpy: `columns[name]` is an ndarray or a `Ragged`.

    The views are read-only and keep the underlying Arrow memory alive;
    `batch` is the record batch itself for Arrow-native code.
    """

    block_id: int
    batch: pa.RecordBatch
    columns: dict

    @property
    def num_rows(self) -> int:
        return self.batch.num_rows

    def row(self, i: int) -> dict:
        """Row `i` of this block as a dict (copies, so the caller may modify them)."""
        out = {}
        for name, view in self.columns.items():
            array = self.batch.column(name)
            if array.null_count and not array[i].is_valid:
                out[name] = None
            elif isinstance(view, Ragged):
                kind = array.type
                piece = view[i]
                if pa.types.is_string(kind):
                    out[name] = piece.tobytes().decode("utf-8")
                elif pa.types.is_binary(kind):
                    out[name] = piece.tobytes()
                else:
                    out[name] = piece.copy()
            elif view.ndim > 1:
                out[name] = view[i].copy()
            else:
                out[name] = view[i]  # a numpy scalar: its dtype survives collation (float32 stays float32)
        return out


def _ragged(array: pa.Array, value_dtype: np.dtype) -> Ragged:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    buffers = array.buffers()
    n = len(array)
    offsets = offsets_of(array)
    if pa.types.is_list(array.type):
        data = array.values.buffers()[1] if len(array.values) else None
        child_offset = array.values.offset
    else:
        data = buffers[2]
        child_offset = 0
    count = int(offsets[-1]) if n else 0
    if data is None or count == 0:
        values = np.zeros(0, value_dtype)
    else:
        values = np.frombuffer(data, value_dtype, count + child_offset)[child_offset:]
    return Ragged(values, offsets)


def block_views(batch: pa.RecordBatch, schema: Schema) -> dict:
    """numpy views of a record batch's columns, by the column kinds of `schema`."""
    views = {}
    for column, array in zip(schema, batch.columns):
        if column.kind in ("tokens", "text", "bytes"):
            views[column.name] = _ragged(array, column.numpy_dtype)
        elif column.kind == "ndarray":
            flat = array.flatten() if array.null_count == 0 else array.fill_null([0] * int(np.prod(column.shape))).flatten()
            values = flat.to_numpy(zero_copy_only=False)
            views[column.name] = values.reshape((len(array),) + column.shape)
        else:
            values = array.to_numpy(zero_copy_only=array.null_count == 0 and column.dtype != "bool")
            views[column.name] = values
    return views


def column_view(batch: pa.RecordBatch, schema: Schema, name: str):
    """numpy view of one column of a record batch (a `Ragged` for tokens, text and bytes)."""
    column = schema[name]
    return block_views(batch.select([name]), Schema((column,)))[name]


def first_batch_offset(shard: pa.Buffer) -> int:
    """Where block 0's record batch starts: its byte range also holds the file's 8-byte magic and the schema message."""
    stream = pa.BufferReader(shard)
    stream.seek(8)
    ipc.read_message(stream)
    return stream.tell()


def decode_record_batch(blob: pa.Buffer, skip: int, arrow_schema: pa.Schema) -> pa.RecordBatch:
    """The record batch whose message fills `blob[skip:]` (a block's byte range; `skip` > 0 only for
    block 0, whose range also holds the file magic and the schema message); ValueError for anything else."""
    if not 0 <= skip < blob.size:
        raise ValueError("its byte range holds no record batch")
    stream = pa.BufferReader(blob.slice(skip))
    message = ipc.read_message(stream)
    if message.type != "record batch" or stream.tell() != blob.size - skip:
        raise ValueError(f"its byte range holds a {message.type} message of {stream.tell():,} bytes, not one record batch filling its {blob.size - skip:,}")
    return ipc.read_record_batch(message, arrow_schema)


def decode_block(shard: pa.Buffer, info: ShardInfo, local: int, *, batch_offset: int, arrow_schema: pa.Schema) -> pa.RecordBatch:
    """Block `local` of a shard's bytes, decoded from exactly the byte range index.json records for it.

    Those are the bytes its CRC covers; the Arrow footer's pointers are never
    followed, so an edited footer cannot swap blocks. The range must hold one
    record batch message that fills it (`batch_offset`: `first_batch_offset`
    of the shard, for block 0); anything else raises ValueError.
    """
    start, end = int(info.block_offsets[local]), int(info.block_offsets[local] + info.block_bytes[local])
    if not end <= shard.size:
        raise ValueError("its byte range lies past the end of the shard")
    return decode_record_batch(shard.slice(start, end - start), batch_offset - start if local == 0 else 0, arrow_schema)


class _Shard:
    """An open, memory-mapped shard and the blocks of it this process has checked.

    Blocks are decoded from their byte ranges in `index.json` (`decode_block`);
    the footer only gives the schema and the block count, both compared with
    the index.
    """

    def __init__(self, folder: Path, info: ShardInfo, schema: Schema):
        self.info = info
        self.folder = folder
        path = folder / info.file
        try:
            self.mmap = pa.memory_map(str(path))
            self.buffer = self.mmap.read_buffer()  # the whole file, zero copy
            footer = ipc.open_file(self.buffer)
            arrow_schema = footer.schema
            self.first_batch_offset = first_batch_offset(self.buffer)
        except _DAMAGE as exc:
            raise FormatError(
                f"shard {info.file!r} cannot be opened as an Arrow IPC file ({exc}). "
                + _VERIFY_HINT.format(folder=folder)
            ) from None
        if footer.num_record_batches != info.num_blocks:
            raise FormatError(
                f"shard {info.file!r} holds {footer.num_record_batches} blocks but index.json records "
                f"{info.num_blocks}. " + _VERIFY_HINT.format(folder=folder)
            )
        try:
            found = Schema(tuple(column_from_arrow_field(f) for f in arrow_schema))
        except FormatError as exc:
            raise FormatError(f"shard {info.file!r}: {exc}. " + _VERIFY_HINT.format(folder=folder)) from None
        if found != schema:
            raise FormatError(
                f"shard {info.file!r} has columns {found.to_json()} but index.json records {schema.to_json()}. "
                + _VERIFY_HINT.format(folder=folder)
            )
        self.arrow_schema = arrow_schema
        self.checked = np.zeros(info.num_blocks, bool)

    def check_size(self) -> None:
        """Refuse to touch a shard that shrank after it was mapped: reading past its new end would be SIGBUS.

        Checked before each block's first read in this process. It cannot guard
        a shard truncated between this check and the read, nor numpy views of
        blocks already read: replace shards by renaming new files into place
        (as `fastload convert` does), never by rewriting them in place.
        """
        size = os.fstat(self.mmap.fileno()).st_size
        if size != self.info.num_bytes:
            raise FormatError(
                f"shard {self.info.file!r} is now {size:,} bytes but index.json records {self.info.num_bytes:,}: "
                "the file changed while it was open. Do not rewrite shards in place; "
                + _VERIFY_HINT.format(folder=self.folder)
            )

    def block_buffer(self, local: int) -> pa.Buffer:
        """Exactly block `local`'s byte range, as index.json records it (a zero-copy slice of the mapping)."""
        start, length = int(self.info.block_offsets[local]), int(self.info.block_bytes[local])
        if start + length > self.buffer.size:
            raise ValueError("its byte range lies past the end of the shard")
        return self.buffer.slice(start, length)

    def message_skip(self, local: int) -> int:
        """Where the record batch message starts in block `local`'s range (block 0 also holds magic and schema)."""
        return self.first_batch_offset if local == 0 else 0


class _RemoteShard:
    """A shard in object storage: its head fetched once, its blocks by byte range (`remote.RemoteBlocks`)."""

    def __init__(self, remote, shard_id: int, info: ShardInfo, schema: Schema, first_block: int):
        self.info, self.remote, self.first_block = info, remote, first_block
        self.arrow_schema, self.first_batch_offset = remote.shard_head(shard_id, schema)
        self.checked = np.zeros(info.num_blocks, bool)
        self.folder = remote.url

    def check_size(self) -> None:
        """Nothing to do: a block is a copy in memory, whose length the download checked."""

    def block_buffer(self, local: int) -> pa.Buffer:
        return self.remote.block_bytes_of(self.first_block + local)

    message_skip = _Shard.message_skip


class Dataset:
    """A fastload dataset folder, opened for reading.

    `path` is a local folder (or `file://` URL), or a URL of a dataset in
    object storage (`s3://`, `gs://`, `az://`, `https://`; the
    `fastload[remote]` extra), read block by block through the node's cache
    (`format/remote.py`). Options that only matter for a URL:
    storage_options: client settings beyond the environment's (obstore's
        config keys, e.g. {"endpoint": ..., "region": ...});
    cache_dir / cache_bytes: the node's block cache (default
        `~/.cache/fastload/blocks`, half the disk's free space);
    retry: a `fastload.RetryPolicy` (per-request timeout, deadline, attempts);
    read_ahead_bytes: how much the read-ahead may fetch before it is read.

    cache_blocks: how many decoded blocks this process keeps (least recently
    used goes first). Left unset, it is 16 — unless `fastload.DataLoader`
    sizes it for its shuffled order (`fit_cache`): the locality-aware order
    has two windows of `window_blocks` blocks live per partition, so it
    keeps `2 × window_blocks × partitions` blocks (2 × 8 × 64 = 1,024 with
    the defaults, at most every block of the dataset), each process its own
    cache: memory ≈ that many × the decoded block size (the writer's default
    1 MiB blocks: up to about 1 GiB per process). To use less, pass a
    `fastload.Sampler` with a smaller `window_blocks` or `num_partitions`
    as `batch_sampler=` (the cache follows it; the samples of a batch then
    come from fewer blocks, so batches mix less), or set `cache_blocks`
    yourself: a value you set is never changed, but a cache smaller than the
    order's live blocks decodes (and, with lz4/zstd, decompresses) evicted
    blocks again — several times slower on compressed shards.

    >>> ds = fastload.Dataset("data/demo")
    >>> len(ds), ds.schema.names
    >>> ds[0]                     # {'text': '...', 'tokens': array([...], dtype=uint16)}
    >>> block = ds.block(0)       # numpy views of one record batch
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        check_blocks: bool = True,
        cache_blocks: int | None = None,
        tokenizer=None,
        allow_tokenizer_mismatch: bool = False,
        storage_options: dict | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        read_ahead_bytes: int = 256 << 20,
    ):
        self.check_blocks = check_blocks
        self._cache_blocks_chosen = cache_blocks is not None  # the user's size, which fit_cache leaves alone
        self.cache_blocks = DEFAULT_CACHE_BLOCKS if cache_blocks is None else max(1, int(cache_blocks))
        self.storage_options, self.cache_dir, self.cache_bytes, self.retry = storage_options, cache_dir, cache_bytes, retry
        self.read_ahead_bytes = read_ahead_bytes
        if is_remote(path):
            from fastload.format.remote import RemoteBlocks

            self.path = str(path).rstrip("/")  # a URL stays text: Path would fold "s3://" into "s3:/"
            self.remote = RemoteBlocks(self.path, storage_options=storage_options, cache_dir=cache_dir, cache_bytes=cache_bytes, retry=retry, read_ahead_bytes=read_ahead_bytes)
            self.index: DatasetIndex = self.remote.index
        else:
            self.path = local_path(path)
            self.remote = None
            self.index = read_index(self.path)
            self._check_shard_files()
        self.tokenizer = tokenizer
        self.allow_tokenizer_mismatch = allow_tokenizer_mismatch
        if tokenizer is not None and not allow_tokenizer_mismatch:
            self._check_tokenizer(tokenizer)
        rows = [info.block_rows for info in self.index.shards]
        self.block_rows = np.concatenate(rows)  # (num_blocks,) rows per block, global block order
        self.block_starts = np.concatenate([[0], np.cumsum(self.block_rows)])  # (num_blocks + 1,)
        shard_of_block = [np.full(info.num_blocks, s, np.int64) for s, info in enumerate(self.index.shards)]
        self.block_shard = np.concatenate(shard_of_block)  # shard id of each global block
        self.block_local = np.concatenate([np.arange(info.num_blocks) for info in self.index.shards])
        self._shard_first_block = np.concatenate([[0], np.cumsum([info.num_blocks for info in self.index.shards])])
        self._reset_handles()

    def expect(self, blocks, *, fetch_ahead: int | None = None) -> None:
        """Tell the dataset that this process will read `blocks` (ids, in order of first use) next.

        Remote datasets fetch ahead along its first `fetch_ahead` (all by
        default; the rest, known further ahead, only decide what their cache
        keeps); a local one needs nothing. The datasets that know their plan
        (packed, padded, arrays) call this.
        """
        if self.remote is not None:
            self.remote.expect(blocks, fetch_ahead=fetch_ahead)

    def fit_cache(self, live_blocks: int) -> int:
        """Keep up to `live_blocks` blocks decoded (at most every block of the dataset), for a reading
        order that has that many in use at once; `fastload.DataLoader` calls this for its shuffled order.

        A `cache_blocks` given to the constructor is the user's choice and
        stays; the cache never shrinks here. Returns the size now in force.
        """
        if not self._cache_blocks_chosen:
            self.cache_blocks = max(self.cache_blocks, min(int(live_blocks), self.num_blocks))
        return self.cache_blocks

    @property
    def cache_stats(self) -> dict | None:
        """A remote dataset's cache in this process: folder, capacity, hits, downloads, bytes, evictions."""
        return None if self.remote is None else self.remote.describe_cache()

    def _reset_handles(self) -> None:
        self._shards: dict[int, _Shard] = {}
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._lock = threading.Lock()

    def _check_tokenizer(self, tokenizer) -> None:
        """Token ids mean nothing under another vocabulary: refuse a tokenizer that differs from the one used."""
        recorded = (self.index.tokenizer or {}).get("fingerprint")
        if recorded is not None and recorded != tokenizer.fingerprint:
            raise FormatError(
                f"dataset {str(self.path)!r} was tokenized with tokenizer {recorded[:16]}..., but the tokenizer "
                f"given is {tokenizer.fingerprint[:16]}...; its ids would mean different tokens. Pass the tokenizer "
                "the dataset was converted with, re-convert with this one, or pass allow_tokenizer_mismatch=True "
                "if you know the vocabularies agree."
            )

    def _check_shard_files(self) -> None:
        for info in self.index.shards:
            path = self.path / info.file
            problem = file_problem(path, self.path)
            if problem is not None:
                raise FormatError(
                    f"shard {info.file!r} listed in {self.path / 'index.json'} is {problem}. "
                    "Restore the file or re-create the dataset with 'fastload convert'."
                )
            size = path.stat().st_size
            if size != info.num_bytes:
                state = "truncated" if size < info.num_bytes else "longer than recorded"
                raise FormatError(
                    f"shard {info.file!r} is {size:,} bytes but index.json records {info.num_bytes:,}; "
                    f"the file is {state}. " + _VERIFY_HINT.format(folder=self.path)
                )

    # -- pickling: only the path and options cross processes ------------------

    def __getstate__(self) -> dict:
        return {"path": self.path, **self.options()}

    def options(self) -> dict:
        """The keyword arguments this dataset was opened with (to open it again with some changed)."""
        return {
            "check_blocks": self.check_blocks,
            # None while nothing sized the cache, so a dataset opened again with these options can
            # still be fitted; a fitted size is passed on (a worker's copy keeps the loader's size).
            "cache_blocks": self.cache_blocks if self._cache_blocks_chosen or self.cache_blocks != DEFAULT_CACHE_BLOCKS else None,
            "tokenizer": self.tokenizer,
            "allow_tokenizer_mismatch": self.allow_tokenizer_mismatch,
            "storage_options": self.storage_options,
            "cache_dir": self.cache_dir,
            "cache_bytes": self.cache_bytes,
            "retry": self.retry,
            "read_ahead_bytes": self.read_ahead_bytes,
        }

    def __setstate__(self, state: dict) -> None:
        path = state.pop("path")
        self.__init__(path, **state)

    # -- metadata ----------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        return self.index.schema

    @property
    def stats(self) -> dict:
        return self.index.stats

    @property
    def num_rows(self) -> int:
        return int(self.block_starts[-1])

    @property
    def num_blocks(self) -> int:
        return len(self.block_rows)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        columns = ", ".join(f"{c.name}: {c.kind}" for c in self.schema)
        return f"Dataset({str(self.path)!r}, rows={self.num_rows:,}, blocks={self.num_blocks:,}, columns=[{columns}])"

    # -- blocks --------------------------------------------------------------

    def _shard(self, shard_id: int) -> _Shard | _RemoteShard:
        shard = self._shards.get(shard_id)
        if shard is None:
            info = self.index.shards[shard_id]
            if self.remote is not None:
                shard = _RemoteShard(self.remote, shard_id, info, self.schema, int(self._shard_first_block[shard_id]))
            else:
                shard = _Shard(self.path, info, self.schema)
            self._shards[shard_id] = shard
        return shard

    def read_block(self, block_id: int) -> pa.RecordBatch:
        """Block `block_id` (global numbering, storage order) as an Arrow record batch, checked."""
        if not 0 <= block_id < self.num_blocks:
            raise IndexError(f"block {block_id} out of range: the dataset has {self.num_blocks} blocks")
        shard_id = int(self.block_shard[block_id])
        local = int(self.block_local[block_id])
        shard = self._shard(shard_id)
        info = shard.info
        if not shard.checked[local]:
            shard.check_size()
        try:
            blob = shard.block_buffer(local)
        except ValueError as exc:
            raise FormatError(f"block {local} of shard {info.file!r} cannot be decoded ({exc}). " + _VERIFY_HINT.format(folder=self.path)) from None
        if self.check_blocks and not shard.checked[local]:
            start, length = int(info.block_offsets[local]), int(info.block_bytes[local])
            crc = crc32(blob) if length else 0
            if crc != int(info.block_crc32[local]):
                raise FormatError(
                    f"block {local} of shard {info.file!r} (bytes {start:,}-{start + length:,}) fails its "
                    f"checksum: CRC-32 {crc:#010x}, index.json records {int(info.block_crc32[local]):#010x}. "
                    "The file is corrupt. " + _VERIFY_HINT.format(folder=self.path)
                )
        try:
            batch = decode_record_batch(blob, shard.message_skip(local), shard.arrow_schema)
            if self.check_blocks and not shard.checked[local]:
                batch.validate(full=True)
        except _DAMAGE as exc:
            raise FormatError(
                f"block {local} of shard {info.file!r} cannot be decoded ({exc}). " + _VERIFY_HINT.format(folder=self.path)
            ) from None
        if batch.num_rows != int(info.block_rows[local]):
            raise FormatError(
                f"block {local} of shard {info.file!r} has {batch.num_rows:,} rows but index.json records "
                f"{int(info.block_rows[local]):,}. " + _VERIFY_HINT.format(folder=self.path)
            )
        shard.checked[local] = True
        return batch

    def block(self, block_id: int) -> Block:
        """Block `block_id` as numpy views (cached: the last `cache_blocks` blocks stay decoded)."""
        with self._lock:
            cached = self._cache.get(block_id)
            if cached is not None:
                self._cache.move_to_end(block_id)
                return cached
        batch = self.read_block(block_id)
        block = Block(block_id, batch, block_views(batch, self.schema))
        with self._lock:
            self._cache[block_id] = block
            while len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
        return block

    def row_lengths(self, column: str) -> np.ndarray:
        """(num_rows,) int64 length of every row of a tokens, text or bytes column, from the offsets only.

        Reads the offsets buffer of each block (with compression, Arrow
        decompresses the block; a remote dataset fetches just that buffer of
        each block, see `remote.RemoteBlocks.row_lengths`) without checking
        CRCs: this is for planning,
        and the data itself is checked when a block is read. Offsets that go
        backwards raise `FormatError`.
        """
        self._check_lengths_column(column)
        if self.remote is not None:
            return self.remote.row_lengths(column, self.schema)
        if not self.num_blocks:
            return np.zeros(0, np.int64)
        return np.concatenate([self.block_row_lengths(column, block_id) for block_id in range(self.num_blocks)])

    def block_row_lengths(self, column: str, block_id: int) -> np.ndarray:
        """The lengths of one block's rows in a tokens, text or bytes column (as `row_lengths`, for one block)."""
        self._check_lengths_column(column)
        start, stop = int(self.block_starts[block_id]), int(self.block_starts[block_id + 1])
        if self.remote is not None:  # from the node's cache when the block is there, else two small requests; rows checked there
            return self.remote.block_lengths(block_id, column, self.schema)
        # The metadata and the offsets buffer only (`ipc_layout`): with compression, decoding the
        # block would decompress all of it, and it is decompressed again when its rows are read.
        shard = self._shard(int(self.block_shard[block_id]))
        local = int(self.block_local[block_id])
        block = shard.block_buffer(local)
        skip = shard.message_skip(local)
        try:
            offsets, num_rows = read_offsets(lambda o, n: memoryview(block)[o : o + n], skip, block.size, shard.arrow_schema, column)
        except _DAMAGE as exc:
            raise FormatError(
                f"block {local} of shard {shard.info.file!r} cannot be decoded ({exc}). " + _VERIFY_HINT.format(folder=self.path)
            ) from None
        if num_rows != stop - start:
            raise FormatError(
                f"block {local} of shard {shard.info.file!r} has {num_rows:,} rows but index.json records "
                f"{stop - start:,}. " + _VERIFY_HINT.format(folder=self.path)
            )
        lengths = np.diff(offsets)
        if len(lengths) and lengths.min() < 0:
            raise FormatError(f"column {column!r} of {str(self.path)!r} has offsets that go backwards. " + _VERIFY_HINT.format(folder=self.path))
        return lengths

    def _check_lengths_column(self, column: str) -> None:
        kind = self.schema[column].kind
        if kind not in ("tokens", "text", "bytes"):
            raise FormatError(f"column {column!r} is of kind {kind!r}; row lengths exist for tokens, text and bytes columns")

    def iter_blocks(self) -> Iterator[Block]:
        for block_id in range(self.num_blocks):
            yield self.block(block_id)

    # -- rows ----------------------------------------------------------------

    def locate(self, sample_id: int) -> tuple[int, int]:
        """(block_id, row within the block) of a global row number."""
        n = self.num_rows
        if sample_id < 0:
            sample_id += n
        if not 0 <= sample_id < n:
            raise IndexError(f"row {sample_id} out of range for a dataset of {n:,} rows")
        block_id = int(np.searchsorted(self.block_starts, sample_id, side="right")) - 1
        return block_id, sample_id - int(self.block_starts[block_id])

    def __getitem__(self, sample_id: int) -> dict:
        if not isinstance(sample_id, (int, np.integer)):
            raise TypeError(f"Dataset indices are integers, not {type(sample_id).__name__}")
        block_id, row = self.locate(int(sample_id))
        return self.block(block_id).row(row)

    def __iter__(self) -> Iterator[dict]:
        for block in self.iter_blocks():
            for i in range(block.num_rows):
                yield block.row(i)
