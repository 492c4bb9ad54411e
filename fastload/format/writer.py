"""Write a dataset folder: rows in, blocks and shards out, `index.json` last.

`DatasetWriter` takes Arrow record batches of any size whose columns already
have the dataset's Arrow types, cuts them into blocks (record batches of
`block_rows` rows, or of about `block_bytes` bytes), appends the blocks to
shard files of about `shard_bytes`, checksums every block and shard, gathers
per-column statistics and finally writes `index.json`.

Block boundaries depend only on the sequence of rows, never on how the rows
were batched on the way in, which is what makes `fastload convert --workers
N` byte-identical for every N.

Threads: the caller's thread only cuts rows into blocks; each block is
assembled, serialized, checksummed, written and counted into the statistics
on a write-behind thread (`write_behind.WriteBehind`), in order, so the bytes
are those a single thread would write; a finished shard is fsynced on a third
thread while the next one is written. `finish` and `close` wait for both, and
an error on either is raised on the caller's thread as it would have been.

Atomicity: shards are written as `.tmp-shard-*.arrow`, fsynced, and renamed
only when the whole dataset is done; `index.json` is written last through a
temporary file and a rename. A crash at any moment leaves a folder with no
`index.json`, which `fastload.Dataset` refuses to open. The folder itself is
held through `output.OutputFolder`: one writer at a time, and a failed writer
removes exactly the files it created (with `overwrite`, the old dataset
survives a failed run). A URL (`s3://bucket/prefix`) is written through
`remote_output.RemoteOutput` instead: the same calls, with each shard
uploaded as soon as it is finished and `index.json` uploaded last.

A failure to write (a full disk, a quota, an I/O error) removes every file
this writer created and raises a `ConvertError` that says what happened,
where, and how much had been written, instead of an `OSError` from the middle
of pyarrow with a half-written shard left on the full disk.

Schema promotion (an int column that later turns out to hold floats, uint16
tokens that meet a token id >= 65536) is supported by `promote`: shards
already written with the narrower types are rewritten at `close`, which is
rare and costs one extra pass over those shards only.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fastload.errors import ConfigError, ConvertError, FormatError, StoreError
from fastload.format.checksum import ChecksummingFile
from fastload.format.index import COMPRESSIONS, DatasetIndex, ShardInfo, encode_index
from fastload.format.output import TMP_PREFIX, OutputFolder
from fastload.format.remote_output import RemoteOutput, open_output
from fastload.format.schema import Schema, offsets_of
from fastload.format.stats import ColumnStats, new_stats
from fastload.format.write_behind import WriteBehind

__all__ = ["WriteOptions", "DatasetWriter", "WrittenShards", "rewrite_shard", "shard_file_name", "staged_name", "write_failure"]

_MIB = 1 << 20
# Blocks cut but not yet written (`WriteBehind`): with 1 MiB blocks, 16 hold 16 MiB, two 8 MiB
# chunks of `fastload convert`, so a chunk's blocks never wait for the previous chunk's to be written.
_BLOCKS_BEHIND = 16
_SHARDS_SYNCING = 2  # sealed shards waiting for fsync; a third waits, which only happens when the disk lags
# A shard's bytes are sent to the disk (fdatasync, on the syncing thread) every this many bytes, so
# that its final fsync, which the conversion waits for when it is the last shard, has little left.
# The kernel by itself starts writing only after 30 s or gigabytes of dirty pages. bench/convert.py,
# 200 MB of JSON Lines, one worker, on the 2-core VM: 8 MiB converts at 990-1020 MB/s, 32 MiB at
# 780-930 and spends 0.17 ms more of system CPU per MB; 4 and 16 MiB fall in between.
_SYNC_EVERY_BYTES = 8 * _MIB
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_GATHERED_WRITE_BYTES = 64 << 10  # a block's small pieces are gathered up to this before they are written (`_ShardFile`)
_FOOTER_BYTES_PER_BLOCK = 24  # an Arrow IPC file's footer holds a Block (offset, metadata length, body length) per record batch


@dataclass(frozen=True)
class WriteOptions:
    """How a dataset is laid out on disk.

    Defaults were chosen by `bench/block_size.py` (see bench/README.md): 1 MiB
    blocks keep per-block overhead (opening a record batch, checking its CRC,
    decompressing it) under a few percent of the time spent on its bytes while
    a window of 64 live blocks still spans 64 MiB of shuffled data; 128 MiB
    shards keep file counts low for object stores while a shard still streams
    in about a second.
    """

    shard_bytes: int = 128 * _MIB
    block_bytes: int = 1 * _MIB
    block_rows: int | None = None  # when set, every block but the last has exactly this many rows
    compression: str = "none"

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"compression {self.compression!r} is not supported; choose one of {', '.join(COMPRESSIONS)}")
        for name in ("shard_bytes", "block_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name} must be a positive integer number of bytes, found {value!r}")
        if self.block_rows is not None and (type(self.block_rows) is not int or self.block_rows < 1):
            raise ConfigError(f"block_rows must be a positive integer or None, found {self.block_rows!r}")

    def to_json(self) -> dict:
        return {
            "shard_bytes": self.shard_bytes,
            "block_bytes": self.block_bytes,
            "block_rows": self.block_rows,
            "compression": self.compression,
        }


def shard_file_name(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.arrow"


def staged_name(name: str) -> str:
    """The temporary name a shard is written under until the dataset is committed."""
    return f"{TMP_PREFIX}{name}"


@dataclass(frozen=True)
class WrittenShards:
    """What `DatasetWriter.finish` leaves: finished shards under their `staged_name`s, not yet a dataset."""

    schema: Schema
    shards: tuple[ShardInfo, ...]
    stats: dict[str, ColumnStats]  # mergeable accumulators (`ColumnStats.merge`), not yet JSON

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)


def _row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes each row occupies in Arrow memory (values only), as int64, vectorised."""
    sizes = np.zeros(batch.num_rows, np.int64)
    for array in batch.columns:
        t = array.type
        if pa.types.is_list(t) or pa.types.is_string(t) or pa.types.is_binary(t):
            item = t.value_type.bit_width // 8 if pa.types.is_list(t) else 1
            offsets = offsets_of(array)
            sizes += np.diff(offsets).astype(np.int64) * item + 4
        elif pa.types.is_fixed_size_list(t):
            sizes += t.list_size * t.value_type.bit_width // 8
        else:
            sizes += max(t.bit_width // 8, 1)
    return sizes


def _block_array(column: pa.ChunkedArray) -> pa.Array:
    """The column's rows as one array that an IPC writer serialises exactly as it would `pa.concat_arrays(column.chunks)`.

    An IPC writer stores a slice of a string array with the bytes that
    follow it in the parent as padding, where a fresh array has zeros, so
    blocks are made fresh. Copying a block's text for that was a tenth of
    conversion's CPU: a string or binary slice without nulls gets fresh
    offsets instead, and its bytes as a buffer of exactly their length,
    which the writer pads with zeros as it does a fresh array's. Everything
    else is concatenated.
    """
    if column.num_chunks == 1:
        array = column.chunk(0)
        if array.null_count == 0 and (pa.types.is_string(array.type) or pa.types.is_binary(array.type)):
            offsets = offsets_of(array)
            start, end = int(offsets[0]), int(offsets[-1])
            data = array.buffers()[2]
            data = pa.py_buffer(b"") if data is None else data.slice(start, end - start)
            return pa.Array.from_buffers(array.type, len(array), [None, pa.py_buffer(offsets - offsets[0]), data], null_count=0)
    return pa.concat_arrays(column.chunks)


class _ShardFile:
    """One shard being written: an Arrow IPC file plus the byte range and CRC of each block."""

    def __init__(self, path: Path, schema: Schema, compression: str):
        self.path = path
        self.schema = schema
        arrow_schema = schema.arrow_schema()
        # token ids per block of each tokens column, for index.json (a remote packed dataset is planned from them)
        self.value_columns = [(c.name, i) for i, c in enumerate(schema) if c.kind == "tokens"]
        self.block_values: dict[str, list[int]] = {name: [] for name, _ in self.value_columns}
        self.raw = ChecksummingFile(path)
        self.sink = pa.PythonFile(self.raw, mode="w")
        # The IPC writer writes a block as a dozen pieces (metadata, each buffer, padding), and each
        # write to a Python file takes the GIL back; gathered here in native memory, a block reaches
        # `raw` in two or three writes (its large buffers pass straight through), and the writer's
        # thread no longer queues for the GIL behind the parsing and collecting threads a dozen times a block.
        self.buffered = pa.BufferedOutputStream(self.sink, buffer_size=_GATHERED_WRITE_BYTES)
        codec = None if compression == "none" else compression
        self.writer = ipc.new_file(self.buffered, arrow_schema, options=ipc.IpcWriteOptions(compression=codec))
        self.block_rows: list[int] = []
        self.block_ends: list[int] = []
        self.block_crc: list[int] = []
        self.synced_bytes = 0  # where the last `sync_so_far` was asked for

    def write(self, batch: pa.RecordBatch) -> int:
        self.writer.write_batch(batch)
        self.buffered.flush()  # the whole block through `raw`: its end and CRC are known
        for name, position in self.value_columns:
            offsets = offsets_of(batch.column(position))
            self.block_values[name].append(int(offsets[-1]) - int(offsets[0]))
        self.block_rows.append(batch.num_rows)
        self.block_ends.append(self.raw.tell())
        self.block_crc.append(self.raw.end_block())
        return self.block_ends[-1]

    def finish(self, final_name: str) -> ShardInfo:
        """`seal` and `sync`: the shard complete and on disk."""
        info = self.seal(final_name)
        self.sync()
        return info

    def seal(self, final_name: str) -> ShardInfo:
        """Write the footer and flush: the shard is complete, though maybe not yet on disk (`sync`)."""
        self.writer.close()
        self.buffered.flush()
        self.sink.flush()
        self.raw.flush()  # (the sink's flush does not reach it) the file is whole for whoever reads it now: an upload
        ends = np.asarray(self.block_ends, np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        return ShardInfo(
            file=final_name,
            num_rows=int(sum(self.block_rows)),
            num_bytes=self.raw.position,
            crc32=self.raw.file_crc,
            block_rows=np.asarray(self.block_rows, np.int64),
            block_offsets=starts,
            block_bytes=ends - starts,
            block_crc32=np.asarray(self.block_crc, np.uint32),
            block_values={name: np.asarray(v, np.int64) for name, v in self.block_values.items()},
        )

    def sync_so_far(self) -> None:
        """Send what was written so far to the disk (while the writer goes on), so that `sync` has less to do."""
        try:
            _fdatasync(self.raw.file.fileno())
        except OSError as exc:  # raised on the writer's thread later, maybe once another shard is being written
            exc.filename = exc.filename or str(self.path)
            raise

    def sync(self) -> None:
        """fsync and close the sealed shard (the writer runs this on a thread of its own)."""
        self.buffered.close()  # (sealed: nothing is left in it) closes the sink, which closes `raw`, which flushes and fsyncs
        self.raw.close()  # (in case the sink did not: closing twice is a no-op)

    def abort(self) -> None:
        """Let go of the file without writing another byte (the disk may be full); the caller removes it."""
        self.raw.discard()
        for close in (self.writer.close, self.buffered.close):
            try:  # what they still hold (a footer) now fails to reach the discarded file, which is all we want from this
                close()
            except Exception:  # the file is being thrown away; its own error does not matter
                pass
        self.sink.close()


def rewrite_shard(output, info: ShardInfo, schema: Schema, compression: str) -> ShardInfo:
    """Rewrite a finished shard (under its `staged_name`) with `schema`'s columns, block for block.

    Columns are cast to the schema's (wider) types and put in its order; a
    column the shard lacks becomes nulls. Used after a schema promotion, by
    the writer and by `fastload convert` when partitions disagree. Raises
    `FormatError` when values do not fit the new types.
    """
    target = schema.arrow_schema()
    old_path = output.local_shard(staged_name(info.file), info.file)
    new_name = staged_name("promoted-" + info.file)
    shard = _ShardFile(output.create(new_name), schema, compression)
    with pa.memory_map(str(old_path)) as source:
        reader = ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            names = batch.schema.names
            try:
                columns = [batch.column(f.name).cast(f.type) if f.name in names else pa.nulls(batch.num_rows, f.type) for f in target]
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                shard.abort()
                raise FormatError(f"rows written earlier do not fit the widened schema {schema.to_json()}: {exc}") from None
            shard.write(pa.RecordBatch.from_arrays(columns, schema=target))
    rewritten = shard.finish(info.file)
    output.rename(new_name, old_path.name)
    output.shard_finished(old_path.name, info.file)
    return rewritten


def write_failure(output, exc: OSError | StoreError, *, num_shards: int, where, abort: Callable[[], None]) -> ConvertError:
    """The `ConvertError` for a failure to write or upload, raised after `abort()` removed what was written.

    It says what happened and where, how much had been written, that nothing
    partial is left, and what to do.
    """
    if isinstance(exc, StoreError):  # an upload failed past its retries: the store's message says where and what to check
        abort()
        return ConvertError(
            f"{exc} The conversion stopped after {num_shards:,} shard(s); every object it had uploaded was "
            "deleted (best effort) and no index.json was written, so no partial dataset is left."
        )
    num_bytes = output.num_bytes_created
    where = exc.filename or where
    abort()
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}.get(exc.errno, "writing failed")
    kept = "; the dataset that was in the folder before is untouched" if output.previous_intact and output.had_previous else ""
    fix = (
        "Free space on that disk, or choose an output folder on another one"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else "Check the disk and the folder's permissions, or choose another output folder"
    )
    return ConvertError(
        f"{what} ({exc.strerror}) while writing {str(where)!r}, after writing {num_bytes:,} bytes in "
        f"{num_shards:,} shard file(s); every file this conversion wrote there was removed, so no partial "
        f"dataset is left{kept}. {fix}."
    )


class DatasetWriter:
    """Streams record batches into a new dataset folder. See the module docstring.

    Use as a context manager, or call `close()` (success) / `abort()` (failure)
    yourself. Until `close()` returns, the folder has no `index.json`.
    """

    def __init__(
        self,
        folder: str | os.PathLike | OutputFolder | RemoteOutput,
        schema: Schema,
        *,
        options: WriteOptions = WriteOptions(),
        overwrite: bool = False,
        shard_name: Callable[[int], str] = shard_file_name,
        input_bytes: int | None = None,
    ):
        """`folder`: a path or URL, or an output already held (`remote_output.open_output`, or one
        partition's output, `partition_output`; then `overwrite` was decided when it was taken).
        `shard_name(k)` names the k-th shard this writer finishes. `input_bytes`: the size of the
        input all rows will come from, when known (each `write` then says its part): shards are
        then balanced so that the last one is not small (`_ends_shard`)."""
        self.output = folder if hasattr(folder, "shard_finished") else open_output(folder, overwrite=overwrite)
        self._shard_name = shard_name
        self.folder = self.output.path
        self.schema = schema
        self.options = options
        self._shards: list[ShardInfo] = []
        self._shard_schemas: list[Schema] = []
        self._current: _ShardFile | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes: list[np.ndarray] = []
        self._pending_input: list[np.ndarray] = []  # input bytes per pending row (a batch's, spread by row size)
        self._input_bytes = input_bytes
        self._input_cut = 0  # input bytes of the rows in blocks handed to `_behind`
        self._bytes_in_shards = 0  # bytes of the shards finished so far (`_behind`'s thread)
        self._stats = {c.name: new_stats(c) for c in schema}
        # Statistics that grouping cannot change are counted as rows arrive, a call per column per
        # `write` (a chunk of thousands of rows), not per block of tens: a tenth of the writer
        # thread's CPU went to these calls. Float moments see whole blocks in storage order.
        self._stats_on_arrival = [(i, s) for i, s in enumerate(self._stats.values()) if s.order_free]
        self._stats_per_block = [(i, s) for i, s in enumerate(self._stats.values()) if not s.order_free]
        self._num_rows_cut = 0  # rows in blocks handed to `_behind`, written or not
        # Blocks are assembled, written, checksummed and counted into `_stats_per_block` on a thread
        # of their own, in order (see write_behind.py); `_current`, `_shards` and `_stats_per_block`
        # are that thread's until `_behind.drain()` returns.
        self._behind = WriteBehind(depth=_BLOCKS_BEHIND)
        # Sealed shards are fsynced and closed on another, so that writing the next shard does not
        # wait for the disk (tens of ms for 128 MiB); `finish` and `close` wait for both.
        self._syncing = WriteBehind(depth=_SHARDS_SYNCING, name="fastload-sync")
        self._sealed_files: list[ChecksummingFile] = []  # each finished shard's file (closed by its sync, or by `abort`)
        self._closed = False

    # -- writing ---------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return self._num_rows_cut + sum(b.num_rows for b in self._pending)

    def write(self, data: pa.RecordBatch | pa.Table, *, input_bytes: int = 0) -> None:
        """Append rows. Column names and Arrow types must match `self.schema` exactly.

        `input_bytes`: how much of the input these rows came from (with the constructor's `input_bytes`).
        """
        expected = self.schema.arrow_schema()
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        sizes = [_row_bytes(batch) for batch in batches]
        total = sum(int(s.sum()) for s in sizes)
        for batch, size in zip(batches, sizes):
            if batch.num_rows == 0:
                continue
            if not batch.schema.remove_metadata().equals(expected.remove_metadata()):
                batch = self._conform(batch, expected)
            for position, stats in self._stats_on_arrival:
                stats.add(batch.column(position))
            self._pending.append(batch)
            self._pending_bytes.append(size)
            # element-wise float arithmetic, then integers: the same rows give the same numbers on every machine
            self._pending_input.append(np.floor(size * (input_bytes / total)).astype(np.int64) if total else np.zeros(len(size), np.int64))
        with self._writing():
            self._flush_full_blocks()

    def _conform(self, batch: pa.RecordBatch, expected: pa.Schema) -> pa.RecordBatch:
        if batch.schema.names != expected.names:
            raise FormatError(f"batch has columns {batch.schema.names}, the dataset expects {expected.names}")
        try:
            return pa.RecordBatch.from_arrays(
                [col.cast(f.type) for col, f in zip(batch.columns, expected)], schema=expected
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FormatError(f"batch does not match the dataset schema {self.schema.to_json()}: {exc}") from None

    def promote(self, schema: Schema) -> None:
        """Widen the schema (see `schema.promote_column`); earlier shards are rewritten at close."""
        if schema == self.schema:
            return
        if schema.names != self.schema.names:
            raise FormatError(f"promotion cannot change columns: {self.schema.names} -> {schema.names}")
        expected = schema.arrow_schema()
        pending = [self._conform(b, expected) for b in self._pending]  # raises before anything changes
        with self._writing():
            self._behind.drain()
            self._finish_shard()
        self.schema = schema
        self._pending = pending

    def _flush_full_blocks(self, final: bool = False) -> None:
        if not self._pending:
            return
        sizes = np.concatenate(self._pending_bytes)
        inputs = np.cumsum(np.concatenate(self._pending_input))  # input bytes up to and including each row
        total = len(sizes)
        cuts = []  # row index where each full block ends
        start = 0
        if self.options.block_rows is not None:
            step = self.options.block_rows
            cuts = list(range(step, total + 1, step))
        else:
            cumulative = np.cumsum(sizes)
            while start < total:
                before = cumulative[start - 1] if start else 0
                end = int(np.searchsorted(cumulative, before + self.options.block_bytes, side="left")) + 1
                if end > total:
                    break
                cuts.append(end)
                start = end
        if final and (not cuts or cuts[-1] < total):
            cuts.append(total)
        if not cuts:
            return
        table = pa.Table.from_batches(self._pending, schema=self._pending[0].schema)
        previous = 0
        for end in cuts:
            input_done = self._input_cut + int(inputs[end - 1])
            self._behind.submit(self._write_block, table.slice(previous, end - previous), self.schema, input_done)
            self._num_rows_cut += end - previous
            previous = end
        self._input_cut += int(inputs[previous - 1])
        rest = table.slice(previous)
        self._pending = rest.to_batches() if rest.num_rows else []  # zero-copy slices: `_write_block` copies each block once
        self._pending_bytes = [sizes[previous:]] if rest.num_rows else []
        self._pending_input = [np.diff(inputs[previous - 1 :])] if rest.num_rows else []

    def _write_block(self, piece: pa.Table, schema: Schema, input_done: int) -> None:
        """Write the rows of `piece` as one block (on `_behind`'s thread); finish the shard once it is full."""
        if self._current is None:
            name = self._shard_name(len(self._shards))
            self._current = _ShardFile(self.output.create(staged_name(name)), schema, self.options.compression)
        # Fresh, offset-0 arrays (`_block_array`): a zero-copy slice would serialise
        # differently depending on where the rows arrived from, and the output must be
        # byte-identical however the input was batched. The schema carries the dataset's
        # field metadata.
        block = pa.RecordBatch.from_arrays([_block_array(c) for c in piece.columns], schema=schema.arrow_schema())
        for position, stats in self._stats_per_block:
            stats.add(block.column(position))
        written = self._current.write(block)
        if self._ends_shard(written, input_done):
            self._finish_shard()
        elif written >= self._current.synced_bytes + _SYNC_EVERY_BYTES and not self._syncing.busy:
            self._current.synced_bytes = written
            self._syncing.submit(self._current.sync_so_far)

    def _ends_shard(self, written: int, input_done: int) -> bool:
        """Whether the current shard, `written` bytes once a block ending `input_done` bytes into the input is in it, is done.

        Without the input's size: once it reaches `shard_bytes`, and the last
        shard holds what is left, however little. With it, the output still
        to come is estimated from the input left, at the output-per-input
        ratio so far, and what is left (this shard included) is shared
        evenly among the whole number of shards nearest to it in
        `shard_bytes`: shards, the last one too, come out within a few
        percent of `shard_bytes` when there are 5 or more (within 1/(2n)
        for n shards, give or take how the ratio drifts), instead of a small
        last shard in every partition. A pure function of the rows and their
        input sizes, so every engine cuts the same shards.
        """
        target = self.options.shard_bytes
        if self._input_bytes is None or not 0 < input_done <= self._input_bytes:  # unknown, or input sizes that do not add up
            return written >= target
        ratio = (self._bytes_in_shards + written) / input_done
        left = written + (self._input_bytes - input_done) * ratio
        num_left = round(left / target)
        if num_left <= 1:  # the rest of the input fits this shard: the writer's finish ends it
            return written >= 2 * target  # (unless the estimate was far off)
        # the shard as it will be, with its footer (a 24-byte entry per block, the bulk of it), ended
        # here rather than after the next block when that lands nearer the share (blocks are alike)
        blocks = self._current.block_ends
        sealed = written + _FOOTER_BYTES_PER_BLOCK * len(blocks)
        last_block = blocks[-1] - (blocks[-2] if len(blocks) > 1 else 0)
        return sealed + last_block / 2 >= left / num_left

    def _finish_shard(self) -> None:
        if self._current is None:
            return
        name = self._shard_name(len(self._shards))
        self._shards.append(self._current.seal(name))
        self._bytes_in_shards += self._shards[-1].num_bytes
        self._sealed_files.append(self._current.raw)
        self._syncing.submit(self._current.sync)
        self.output.shard_finished(self._current.path.name, name)
        self._shard_schemas.append(self._current.schema)
        self._current = None

    def _wait_for_writes(self) -> None:
        """Until every block cut so far is written and every shard finished so far is on disk."""
        self._behind.drain()
        self._behind.close()
        self._syncing.drain()
        self._syncing.close()

    # -- finishing -------------------------------------------------------------

    def finish(self) -> WrittenShards:
        """Write the last block and rewrite promoted shards; leave the shards under their temporary names.

        For a writer of one part of a dataset (a partition of `fastload
        convert`), whose shards another writer's `index.json` will name; the
        caller commits or discards them.
        """
        if self._closed:
            raise FormatError("this DatasetWriter is already closed")
        with self._writing():
            self._flush_full_blocks(final=True)
            self._behind.drain()
            self._finish_shard()
            self._wait_for_writes()
            self._rewrite_promoted_shards()
        self._closed = True
        return WrittenShards(self.schema, tuple(self._shards), self._stats)

    def close(self, *, source: dict | None = None, tokenizer: dict | None = None, num_skipped_rows: int = 0, options: dict | None = None, created_by: str = "") -> DatasetIndex:
        """Write the last block, rewrite promoted shards, rename shards, write `index.json`."""
        if self._closed:
            raise FormatError("this DatasetWriter is already closed")
        with self._writing():
            self._flush_full_blocks(final=True)
            self._behind.drain()
            self._finish_shard()
            self._wait_for_writes()
        if not self._shards:
            self.abort()
            raise FormatError("no rows were written; an empty dataset is not created")
        with self._writing():
            self._rewrite_promoted_shards()
        index = DatasetIndex(
            schema=self.schema,
            shards=tuple(self._shards),
            compression=self.options.compression,
            stats={name: s.to_json() for name, s in self._stats.items()},
            tokenizer=tokenizer,
            source=source or {},
            options={**self.options.to_json(), **(options or {})},
            num_skipped_rows=num_skipped_rows,
            created_by=created_by,
        )
        with self._writing():
            self.output.commit([(staged_name(s.file), s.file) for s in self._shards], encode_index(index))
        self._closed = True
        return index

    def _rewrite_promoted_shards(self) -> None:
        for shard_id, (info, schema) in enumerate(zip(self._shards, self._shard_schemas)):
            if schema != self.schema:
                self._shards[shard_id] = rewrite_shard(self.output, info, self.schema, self.options.compression)
        self._shard_schemas = [self.schema] * len(self._shards)

    def abort(self) -> None:
        """Remove every file this writer created (and its folder, if it made it); write nothing.

        Files that were in the folder before (with `overwrite`, the old
        dataset) are left as they were, unless `close` had begun replacing them.
        """
        self._behind.close()  # the block being written finishes, those queued are skipped
        self._syncing.close()
        for sealed in self._sealed_files:  # shards whose queued sync was skipped: closed now, not fsynced by the garbage collector
            sealed.discard()
        if self._current is not None:
            self._current.abort()
            self._current = None
        self.output.discard()
        self._closed = True

    @contextmanager
    def _writing(self):
        """Turn a failure to write into a `ConvertError`, after removing what this writer wrote."""
        try:
            yield
        except (StoreError, OSError) as exc:
            self._behind.close()  # nothing is written behind our back while we count and clean up
            self._syncing.close()
            num_shards = len(self._shards) + (self._current is not None and not isinstance(exc, StoreError))
            where = self._current.path if self._current else self.folder
            raise write_failure(self.output, exc, num_shards=num_shards, where=where, abort=self.abort) from exc

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

