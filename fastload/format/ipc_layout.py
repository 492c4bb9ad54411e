"""Where one column's buffer lies inside a record batch message, read from the message's metadata alone.

Laying out a packed window needs its documents' lengths, which the offsets
buffer of the tokens column holds. Decoding the block for them would
decompress all of it (and, in object storage, download it) a second time.
So fastload reads a block's metadata (the first few KB of its range), finds
the offsets buffer here, and reads just that buffer (`read_offsets`): in
object storage, two small requests per block instead of the block.

The metadata is a FlatBuffer (Arrow's Message.fbs: Message { version,
header_type, header, bodyLength, … }, RecordBatch { length, nodes, buffers,
compression }); this module reads the few fields it needs and nothing else,
with every offset bounds-checked, since the bytes come from the network.
With compression (LZ4 frame or ZSTD) each buffer is an int64 of its
decompressed length followed by the compressed bytes (-1: stored as is).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["BatchLayout", "message_prefix", "parse_layout", "offsets_buffer_index", "decode_offsets", "read_offsets"]

_RECORD_BATCH = 3  # MessageHeader.RecordBatch
_CODECS = {0: "lz4", 1: "zstd"}  # CompressionType.LZ4_FRAME, ZSTD


@dataclass(frozen=True)
class BatchLayout:
    num_rows: int
    body_start: int  # where the body starts, counted from the message's first byte
    buffers: tuple[tuple[int, int], ...]  # (offset in the body, length) of every buffer, in schema order
    codec: str | None


def message_prefix(head: bytes) -> tuple[int, int]:
    """(bytes of the message's length prefix, bytes of its metadata) from its first 8 bytes."""
    if len(head) < 8:
        raise ValueError("the block is shorter than a message's length prefix")
    first = struct.unpack_from("<I", head, 0)[0]
    if first == 0xFFFFFFFF:
        return 8, struct.unpack_from("<i", head, 4)[0]
    return 4, struct.unpack_from("<i", head, 0)[0]  # the pre-1.0 prefix: the length alone


class _Reader:
    """Bounds-checked reads of FlatBuffer tables."""

    def __init__(self, data: bytes):
        self.data = data

    def _unpack(self, fmt: str, at: int):
        if not 0 <= at <= len(self.data) - struct.calcsize(fmt):
            raise ValueError("the record batch metadata points outside itself")
        return struct.unpack_from(fmt, self.data, at)[0]

    def table(self, at: int) -> tuple[int, int, int]:
        """(table position, vtable position, vtable size) of the table at `at`."""
        vtable = at - self._unpack("<i", at)
        return at, vtable, self._unpack("<H", vtable)

    def field(self, table: tuple[int, int, int], index: int) -> int | None:
        """Position of field `index` of a table, or None when absent (its default)."""
        at, vtable, size = table
        slot = 4 + 2 * index
        if slot + 2 > size:
            return None
        offset = self._unpack("<H", vtable + slot)
        return at + offset if offset else None

    def scalar(self, table, index: int, fmt: str, default):
        at = self.field(table, index)
        return default if at is None else self._unpack(fmt, at)

    def reference(self, table, index: int) -> int | None:
        """Where the table or vector that field `index` refers to starts."""
        at = self.field(table, index)
        return None if at is None else at + self._unpack("<I", at)

    def vector_of_pairs(self, at: int | None) -> list[tuple[int, int]]:
        """A vector of 16-byte structs of two int64 (FieldNode, Buffer)."""
        if at is None:
            return []
        count = self._unpack("<I", at)
        if count > (len(self.data) - at) // 16:
            raise ValueError("the record batch metadata points outside itself")
        return [(self._unpack("<q", at + 4 + 16 * i), self._unpack("<q", at + 12 + 16 * i)) for i in range(count)]


def parse_layout(metadata: bytes, prefix_bytes: int) -> BatchLayout:
    """The layout of a record batch message from its metadata (the FlatBuffer after the length prefix)."""
    read = _Reader(bytes(metadata))
    message = read.table(read._unpack("<I", 0))
    if read.scalar(message, 1, "<B", 0) != _RECORD_BATCH:
        raise ValueError("the message is not a record batch")
    batch_at = read.reference(message, 2)
    if batch_at is None:
        raise ValueError("the record batch message has no header")
    batch = read.table(batch_at)
    num_rows = read.scalar(batch, 0, "<q", 0)
    buffers = tuple(read.vector_of_pairs(read.reference(batch, 2)))
    compression_at = read.reference(batch, 3)
    codec = None
    if compression_at is not None:
        code = read.scalar(read.table(compression_at), 0, "<b", 0)
        if code not in _CODECS:
            raise ValueError(f"unknown compression codec {code}")
        codec = _CODECS[code]
    return BatchLayout(int(num_rows), prefix_bytes + len(metadata), buffers, codec)


def _buffer_count(kind: pa.DataType) -> int:
    """Buffers an array of this type has in a record batch message, children included."""
    if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        return 3
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return 2 + _buffer_count(kind.value_type)
    if pa.types.is_fixed_size_list(kind):
        return 1 + _buffer_count(kind.value_type)
    if pa.types.is_struct(kind):
        return 1 + sum(_buffer_count(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_null(kind):
        return 0
    return 2  # validity and values (bool included)


def offsets_buffer_index(schema: pa.Schema, column: str) -> tuple[int, np.dtype]:
    """(index among the message's buffers, dtype) of the offsets buffer of a list or string column."""
    index = 0
    for field in schema:
        if field.name == column:
            kind = field.type
            large = pa.types.is_large_list(kind) or pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
            if not (large or pa.types.is_list(kind) or pa.types.is_string(kind) or pa.types.is_binary(kind)):
                raise ValueError(f"column {column!r} of type {kind} has no offsets buffer")
            return index + 1, np.dtype(np.int64 if large else np.int32)
        index += _buffer_count(field.type)
    raise KeyError(column)


def decode_offsets(raw: bytes | memoryview, codec: str | None, num_rows: int, dtype: np.dtype) -> np.ndarray:
    """The `num_rows + 1` offsets stored in an offsets buffer's bytes (decompressed when the batch is)."""
    raw = memoryview(raw)
    if codec is not None and len(raw) >= 8:
        size = struct.unpack_from("<q", raw, 0)[0]
        body = raw[8:]
        raw = memoryview(body if size == -1 else pa.decompress(body, decompressed_size=size, codec=codec, asbytes=True))
    need = (num_rows + 1) * dtype.itemsize
    if num_rows == 0:
        return np.zeros(1, np.int64)
    if len(raw) < need:
        raise ValueError(f"the offsets buffer holds {len(raw)} bytes, fewer than the {need} of {num_rows} rows")
    return np.frombuffer(raw[:need], dtype).astype(np.int64)


METADATA_GUESS = 4 << 10  # a block's metadata is a few hundred bytes per column: one read holds it for up to ~10 columns, a second fetches the rest; 16 KB was 1.5% of the bytes of an epoch of 1 MB blocks


def read_offsets(read, start: int, end: int, arrow_schema: pa.Schema, column: str) -> tuple[np.ndarray, int]:
    """(offsets of `column`, rows) of the record batch message in bytes [start, end) of a shard, reading
    only its metadata and that buffer through `read(offset, size) -> bytes`. Raises ValueError when
    the bytes do not describe such a batch inside the range."""
    head = bytes(read(start, min(end - start, METADATA_GUESS)))
    prefix, length = message_prefix(head)
    if not 0 < length <= end - start - prefix:
        raise ValueError(f"its metadata length {length} does not fit its byte range")
    if prefix + length > len(head):
        head = bytes(read(start, prefix + length))
    layout = parse_layout(head[prefix : prefix + length], prefix)
    index, dtype = offsets_buffer_index(arrow_schema, column)
    if index >= len(layout.buffers):
        raise ValueError("it lists fewer buffers than its schema needs")
    offset, size = layout.buffers[index]
    if not (0 <= offset and 0 <= size and start + layout.body_start + offset + size <= end):
        raise ValueError("its offsets buffer lies outside its byte range")
    raw = read(start + layout.body_start + offset, size)
    return decode_offsets(raw, layout.codec, layout.num_rows, dtype), layout.num_rows
