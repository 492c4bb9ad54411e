"""`fastload verify`: re-check every byte of a dataset against its index.

Unlike opening a `Dataset` (which stops at the first problem, and checks a
block only when it is read), `verify_dataset` reads everything and returns
*every* problem it finds, one sentence each, so a user can see at once how
much of a dataset is damaged. An empty list means the dataset is intact.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from fastload.errors import FormatError
from fastload.format.files import file_problem
from fastload.format.index import DatasetIndex, ShardInfo, read_index
from fastload.format.reader import decode_block, first_batch_offset
from fastload.format.schema import Schema, column_from_arrow_field

__all__ = ["verify_dataset"]


def verify_dataset(folder: str | os.PathLike) -> list[str]:
    """Every problem found in the dataset at `folder` (empty when it is intact).

    An unreadable or invalid `index.json` is reported as the single problem,
    since nothing else can be checked without it.
    """
    folder = Path(folder)
    try:
        index = read_index(folder)
    except FormatError as exc:
        return [str(exc)]
    problems: list[str] = []
    for info in index.shards:
        problems.extend(_verify_shard(folder, info, index))
    return problems


def _verify_shard(folder: Path, info: ShardInfo, index: DatasetIndex) -> list[str]:
    path = folder / info.file
    problem = file_problem(path, folder)
    if problem is not None:
        return [f"shard {info.file!r}: {problem}"]
    data = path.read_bytes()
    if len(data) != info.num_bytes:
        return [f"shard {info.file!r}: {len(data):,} bytes, index.json records {info.num_bytes:,} (truncated or replaced)"]
    problems = []
    bad_blocks = []
    for block_id in range(info.num_blocks):
        start = int(info.block_offsets[block_id])
        end = start + int(info.block_bytes[block_id])
        if zlib.crc32(memoryview(data)[start:end]) != int(info.block_crc32[block_id]):
            bad_blocks.append(block_id)
            problems.append(f"shard {info.file!r} block {block_id}: checksum mismatch (bytes {start:,}-{end:,})")
    if zlib.crc32(data) != info.crc32 and not bad_blocks:
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
    except (pa.ArrowException, FormatError, OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"shard {info.file!r}: not a readable Arrow IPC file ({exc})")
    return problems
