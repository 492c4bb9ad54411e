"""`fastload verify`: re-check every byte of a dataset against its index.

Unlike opening a `Dataset` (which stops at the first problem, and checks a
block only when it is read), `verify_dataset` reads everything and returns
*every* problem it finds, one sentence each, so a user can see at once how
much of a dataset is damaged. An empty list means the dataset is intact.

A dataset in object storage (`s3://...`) is checked the same way: each
shard is fetched whole (one GET, retried; every block's byte range plus the
file's head and footer, which the whole-file CRC covers) and goes through the
same checks as a local file's bytes. Nothing enters the node's block cache:
verifying must see the store's bytes, not a copy. Shards are fetched a few at
a time, so memory holds at most that many shards.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from fastload.errors import FormatError
from fastload.format.checksum import crc32
from fastload.format.files import file_problem
from fastload.format.index import INDEX_FILE, DatasetIndex, ShardInfo, parse_index, read_index
from fastload.format.reader import decode_block, first_batch_offset
from fastload.format.schema import Schema, column_from_arrow_field, offsets_of
from fastload.store import NotFound, RetryPolicy, Store, is_remote, local_path, open_store

__all__ = ["verify_dataset"]


_REMOTE_SHARDS_AT_ONCE = 4  # whole shards in memory at a time while verifying a remote dataset


def verify_dataset(location: str | os.PathLike, *, storage_options: dict | None = None, retry: RetryPolicy | None = None) -> list[str]:
    """Every problem found in the dataset at `location`, a folder or a URL (empty when it is intact).

    An unreadable or invalid `index.json` is reported as the single problem,
    since nothing else can be checked without it. A remote store that fails
    past its retries raises `StoreError` (that is no finding about the data).
    """
    if is_remote(location):
        return _verify_remote(open_store(location, storage_options, retry))
    folder = local_path(location)
    try:
        index = read_index(folder)
    except FormatError as exc:
        return [str(exc)]
    problems: list[str] = []
    for info in index.shards:
        problems.extend(_verify_local_shard(folder, info, index))
    return problems


def _verify_remote(store: Store) -> list[str]:
    try:
        index = parse_index(bytes(store.get(INDEX_FILE)), store.url_of(INDEX_FILE))
    except NotFound:
        return [f"{store.url_of(INDEX_FILE)} does not exist, so {store.url} is not a complete fastload dataset"]
    except FormatError as exc:
        return [str(exc)]

    def verify(info: ShardInfo) -> list[str]:
        try:
            data = store.get(info.file)
        except NotFound:
            return [f"shard {info.file!r}: missing ({store.url_of(info.file)} does not exist)"]
        return _verify_shard_bytes(data, info, index)

    with ThreadPoolExecutor(_REMOTE_SHARDS_AT_ONCE, thread_name_prefix="fastload-verify") as pool:
        # map yields in order but runs ahead without bound: submit in windows to bound memory
        problems: list[str] = []
        shards = list(index.shards)
        for start in range(0, len(shards), _REMOTE_SHARDS_AT_ONCE):
            for found in pool.map(verify, shards[start : start + _REMOTE_SHARDS_AT_ONCE]):
                problems.extend(found)
    return problems


def _verify_local_shard(folder: Path, info: ShardInfo, index: DatasetIndex) -> list[str]:
    path = folder / info.file
    problem = file_problem(path, folder)
    if problem is not None:
        return [f"shard {info.file!r}: {problem}"]
    return _verify_shard_bytes(path.read_bytes(), info, index)


def _verify_shard_bytes(data: bytes | memoryview, info: ShardInfo, index: DatasetIndex) -> list[str]:
    """Every problem in one shard's bytes: size, each block's CRC, the file's CRC, schema, block count, decoding."""
    if len(data) != info.num_bytes:
        return [f"shard {info.file!r}: {len(data):,} bytes, index.json records {info.num_bytes:,} (truncated or replaced)"]
    problems = []
    bad_blocks = []
    for block_id in range(info.num_blocks):
        start = int(info.block_offsets[block_id])
        end = start + int(info.block_bytes[block_id])
        if crc32(memoryview(data)[start:end]) != int(info.block_crc32[block_id]):
            bad_blocks.append(block_id)
            problems.append(f"shard {info.file!r} block {block_id}: checksum mismatch (bytes {start:,}-{end:,})")
    if crc32(data) != info.crc32 and not bad_blocks:
        problems.append(f"shard {info.file!r}: checksum mismatch outside the blocks (file header or footer)")
    try:
        shard = pa.py_buffer(data)
        reader = ipc.open_file(shard)
        batch_offset = first_batch_offset(shard)
        found = Schema(tuple(column_from_arrow_field(f) for f in reader.schema))
        if found != index.schema:
            problems.append(f"shard {info.file!r}: columns {found.to_json()} differ from index.json's {index.schema.to_json()}")
        if reader.num_record_batches != info.num_blocks:
            problems.append(f"shard {info.file!r}: {reader.num_record_batches} blocks, index.json records {info.num_blocks}")
            return problems
        for block_id in range(info.num_blocks):
            if block_id in bad_blocks:
                continue
            batch = decode_block(shard, info, block_id, batch_offset=batch_offset, arrow_schema=reader.schema)  # the bytes the reader decodes
            batch.validate(full=True)
            if batch.num_rows != int(info.block_rows[block_id]):
                problems.append(
                    f"shard {info.file!r} block {block_id}: {batch.num_rows:,} rows, index.json records {int(info.block_rows[block_id]):,}"
                )
            for name, counts in info.block_values.items():
                offsets = offsets_of(batch.column(index.schema.names.index(name)))
                if int(offsets[-1]) - int(offsets[0]) != int(counts[block_id]):
                    problems.append(
                        f"shard {info.file!r} block {block_id}: {int(offsets[-1]) - int(offsets[0]):,} token ids in {name!r}, "
                        f"index.json records {int(counts[block_id]):,}"
                    )
    except (pa.ArrowException, FormatError, OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"shard {info.file!r}: not a readable Arrow IPC file ({exc})")
    return problems
