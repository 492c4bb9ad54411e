"""Convert one partition: its chunks → worker threads → one writer → shards and an index fragment.

    chunks of the partition's pieces    worker threads                        the partition's writer
    (in input order)               ──►  parse + select + tokenize + cast ──►  reconcile columns, blocks,
                                        (pyarrow C++ / Numba: no GIL)         shards shard-PPPPP-KKKK.arrow

This is the one conversion function every engine runs: the local engine
calls it in its own process, partition after partition; the Ray engine
(`fastload.ray`) calls it in a task per partition. What it returns, a
`Fragment`, is plain picklable data: the finished shards (still under their
temporary names, or uploaded), the columns the partition learned, its
statistics, its skipped and counted lines. The driver (`merge`) reconciles
fragments in partition order and writes `index.json` last.

Within a partition, results are consumed strictly in input order with a
bounded number in flight (`threads.OrderedThreads`), so memory stays flat
(about `2 * workers` chunks of `sources.CHUNK_BYTES` plus one block) and the
shards are byte-identical for every `workers` value.

Columns: the first chunk fixes the names; a column null in every row so far
is held back (chunks are buffered, up to `_MAX_HELD_BYTES`) until some chunk
gives it a type; one that stays null to the end of the partition is left out
of its shards, and the driver adds it back as nulls when another partition
typed it.

A bad line is not an exception here: the partition's task cannot know its
line number when the partition starts inside a file, so the fragment carries
the bad line's place inside its piece and the driver reports `file:line`.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from fastload.convert.columns import KnownColumns, lossy_promotion
from fastload.convert.normalize import prepare_table
from fastload.convert.parse import LineError
from fastload.convert.partitions import Partition, partition_shard_name
from fastload.convert.sources import Chunk, file_chunks
from fastload.convert.threads import OrderedThreads, SlicedTokenizer
from fastload.errors import ConfigError, ConvertError, FormatError
from fastload.format.partition_output import open_partition_output
from fastload.format.writer import DatasetWriter, WriteOptions, WrittenShards
from fastload.store import RetryPolicy, is_remote

__all__ = ["PartitionJob", "Fragment", "BadLine", "convert_partition", "write_partition", "resolve_tokenizer", "warm_up"]

_MAX_HELD_BYTES = 512 << 20  # chunks held back while a column is still all-null


@dataclass(frozen=True)
class PartitionJob:
    """Everything a partition's conversion needs besides the partition itself; picklable, sent to every task."""

    out: str  # the dataset's folder or URL, held by the driver
    write: WriteOptions
    columns: tuple[str, ...] | None
    text_field: str
    tokenizer: object  # None, a tokenizer, or its name / file path (loaded once per process)
    keep_text: bool
    on_error: str
    text_lines: bool
    workers: int  # threads per partition
    storage_options: dict | None = None
    retry: RetryPolicy | None = None
    staging_dir: str | None = None
    take_down_index: bool = False  # overwriting a dataset in object storage: delete its index.json before uploading
    flat_json: bool = False  # JSON Lines try the Numba scanner first (decided once for the whole input: `pipeline`)


@dataclass(frozen=True)
class BadLine:
    """A bad input line, placed inside its piece: the driver adds the lines of the file before the piece."""

    source: str  # the file, for the message
    piece: int  # index into the partition's pieces
    first_line: int  # 1-based line, counted from the piece's start, of the chunk holding the bad line
    offset: int
    detail: str
    last_offset: int | None

    def to_convert_error(self, lines_before: int) -> ConvertError:
        """The error naming `file, line N`, once the driver knows the file's lines before this piece."""
        error = LineError(self.offset, self.detail, last_offset=self.last_offset)
        return error.to_convert_error(self.source, lines_before + self.first_line)


@dataclass
class Fragment:
    """What converting one partition gave: the driver's part of `index.json`, and the files it must commit."""

    partition_id: int
    written: WrittenShards | None  # None: the partition holds no rows (or stopped at a bad line)
    known: KnownColumns
    files: dict[str, int]  # files written (temporary names in a folder, final names in a store) -> bytes
    bytes_in: int = 0
    num_skipped_rows: int = 0
    num_untyped_rows: int = 0  # rows in which every field was null: no shard could hold them
    lines: list[int] = field(default_factory=list)  # input lines read, per piece
    input_fields: dict[str, None] = field(default_factory=dict)
    bad_line: BadLine | None = None
    peak_memory_bytes: int = 0  # the process's peak resident memory when the partition was done


@functools.lru_cache(maxsize=4)
def _load_tokenizer(name: str):
    try:
        from fastload.tokenizer import load_tokenizer
    except ImportError:
        raise ConfigError(
            "tokenization during conversion is not available in this build of fastload yet; convert "
            "without --tokenizer and tokenize in the loader"
        ) from None
    return load_tokenizer(name)


def resolve_tokenizer(tokenizer):
    """A tokenizer from a name or file path (loaded once per process), or the object given."""
    if tokenizer is None or not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    return _load_tokenizer(str(tokenizer))


def warm_up(tokenizer, *, flat_json: bool = False) -> float:
    """Compile the kernels this conversion runs (the tokenizer's; the JSON Lines scanner's), or load them
    from Numba's cache, before the clock starts; seconds it took.

    The first conversion on a machine compiles them (tens of seconds for the
    tokenizer, 5 for the scanner), later ones load them (about a second, 0.3 s):
    either would otherwise land in the MB/s figure, and inside the first
    chunk's work. The scanner is used, and so loaded, only for inputs of
    FLAT_JSON_MIN_BYTES or more, where it saves more than its load costs.
    """
    started = time.perf_counter()
    if flat_json:
        from fastload.convert.flat_json import warm_up as warm_up_scanner  # imports Numba: only when JSON Lines are read

        warm_up_scanner()
    if tokenizer is not None:
        tokenizer.encode_arrow(pa.array(["warm up: ASCII, é, 漢字", None], pa.string()))
    return time.perf_counter() - started


def convert_partition(partition: Partition, job: PartitionJob, *, progress: Callable[[int, int], None] | None = None) -> Fragment:
    """Convert the files of `partition` (what a Ray task runs); see `write_partition`."""

    def chunks() -> Iterator[tuple[int, Chunk]]:
        for i, piece in enumerate(partition.pieces):
            for chunk in file_chunks(piece.file, on_error=job.on_error, text_field=job.text_field, text_lines=job.text_lines, start=piece.start, end=piece.end, flat_json=job.flat_json):
                yield i, chunk

    # chunks count decompressed bytes: the input's size is known in the same unit only without compression
    input_bytes = partition.num_bytes if all(piece.file.compression is None for piece in partition.pieces) else None
    fragment = write_partition(partition.partition_id, chunks(), job, num_pieces=len(partition.pieces), progress=progress, input_bytes=input_bytes)
    if fragment.written is not None and not is_remote(job.out):  # what a rerun after a kill may reuse (`resume`)
        from fastload.convert.resume import record_fragment  # resume builds on this module

        name = record_fragment(Path(job.out), partition, job, fragment)
        if name is not None:
            fragment.files[name] = (Path(job.out) / name).stat().st_size
    return fragment


def write_partition(
    partition_id: int,
    chunks: Iterator[tuple[int, Chunk]],
    job: PartitionJob,
    *,
    num_pieces: int,
    progress: Callable[[int, int], None] | None = None,
    input_bytes: int | None = None,
) -> Fragment:
    """Convert `chunks` ((piece index, chunk), in input order) into partition `partition_id`'s shards.

    `progress(input bytes, rows)` is called after each chunk. `input_bytes`:
    the chunks' `num_bytes` added up, when known in advance; the writer then
    balances the partition's shards so that its last one is not small. Any
    failure removes every file this partition wrote and raises.
    """
    tokenizer = resolve_tokenizer(job.tokenizer)
    warm_up(tokenizer, flat_json=job.flat_json)  # once per process in effect: compiled or loaded kernels stay
    output = open_partition_output(job.out, storage_options=job.storage_options, retry=job.retry, staging_dir=job.staging_dir, take_down_index=job.take_down_index)
    assembler = _Assembler(output, job.write, shard_name=functools.partial(partition_shard_name, partition_id), input_bytes=input_bytes)
    fragment = Fragment(partition_id, None, assembler.known, {}, lines=[0] * num_pieces)
    try:
        with OrderedThreads(job.workers, depth=2 * job.workers) as threads:
            work = _chunk_work(threads, job, tokenizer)
            for piece, chunk, prepared, skipped, num_lines, fields in threads.map(work, chunks):
                fragment.input_fields.update(dict.fromkeys(fields))
                first_line = chunk.first_line or fragment.lines[piece] + 1
                fragment.lines[piece] += num_lines
                if isinstance(prepared, LineError):
                    fragment.bad_line = BadLine(chunk.source, piece, first_line, prepared.offset, prepared.detail, prepared.last_offset)
                    raise _StopAtBadLine  # stops the threads at once, as any error does
                fragment.bytes_in += chunk.num_bytes
                fragment.num_skipped_rows += skipped
                assembler.add_input(chunk.num_bytes)
                if prepared is not None:
                    assembler.add(*prepared, source=chunk.source)
                if progress is not None:
                    progress(chunk.num_bytes, 0 if prepared is None else prepared[0].num_rows)
        fragment.written, fragment.num_untyped_rows = assembler.finish()
        fragment.files = output.finish()
    except _StopAtBadLine:
        assembler.abort()
        return fragment
    except BaseException:
        assembler.abort()
        raise
    fragment.peak_memory_bytes = _peak_memory_bytes()
    return fragment


class _StopAtBadLine(Exception):
    """Raised inside `write_partition` at a bad line; the fragment says where it is."""


def _peak_memory_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def _chunk_work(threads: OrderedThreads, job: PartitionJob, tokenizer):
    """The function a worker thread runs on one chunk; it stops at the next check once `threads` is stopping."""
    sliced = SlicedTokenizer(tokenizer, threads.check) if tokenizer is not None else None

    def work(item: tuple[int, Chunk]):
        piece, chunk = item
        threads.check()
        try:
            table, skipped, num_lines = chunk.load()
        except LineError as error:  # located once the lines before this chunk are counted
            return piece, chunk, error, 0, 0, ()
        threads.check()
        prepared = prepare_table(table, source=chunk.source, columns=job.columns, text_field=job.text_field, tokenizer=sliced, keep_text=job.keep_text)
        return piece, chunk, prepared, skipped, num_lines, tuple(table.column_names)

    return work


class _Assembler:
    """Feeds prepared chunks to one `DatasetWriter` in input order, reconciling their columns.

    The writer is created only once every column has a type, or when too
    much is held back waiting for one.
    """

    def __init__(self, output, options: WriteOptions, *, shard_name: Callable[[int], str], input_bytes: int | None = None):
        self.output, self.options, self.shard_name, self.input_bytes = output, options, shard_name, input_bytes
        self.known = KnownColumns()
        self.writer: DatasetWriter | None = None
        self.held: list[tuple[pa.Table, str, int]] = []
        self.held_bytes = 0
        self.unassigned_input = 0  # input bytes read whose rows have not been added yet

    def add_input(self, num_bytes: int) -> None:
        """`num_bytes` more of the input were read: the next table added holds their rows (a chunk of none passes them on)."""
        self.unassigned_input += num_bytes

    def add(self, table: pa.Table, kinds: dict, *, source: str) -> None:
        self.known.merge(kinds, source)
        self.held.append((table, source, self.unassigned_input))
        self.unassigned_input = 0
        self.held_bytes += table.nbytes
        if self.writer is not None or self.known.complete or self.held_bytes >= _MAX_HELD_BYTES:
            self._flush()

    def _flush(self) -> None:
        schema = self.known.schema()
        if self.writer is None:
            self.writer = DatasetWriter(self.output, schema, options=self.options, shard_name=self.shard_name, input_bytes=self.input_bytes)
        late = [name for name in schema.names if name not in self.writer.schema]
        if late:
            raise ConvertError(
                f"field(s) {', '.join(map(repr, late))} held only nulls in the first "
                f"{_MAX_HELD_BYTES >> 20} MiB of input and got a type only later; put a file where they "
                "are set first, or leave them out with --columns"
            )
        try:
            self.writer.promote(schema)
        except FormatError as exc:  # rows already written do not fit the widened type
            name = next((c.name for c in schema if c != self.writer.schema[c.name]), "?")
            raise self.known.unfit(name, "earlier input", exc) from None
        for table, source, input_bytes in self.held:
            self.writer.write(self.known.conform(table, source), input_bytes=input_bytes)
        self.held, self.held_bytes = [], 0

    def finish(self) -> tuple[WrittenShards | None, int]:
        """(the shards written, or None when no rows were; rows that no shard could hold: every field null)."""
        if self.held and len(self.known.schema()):
            self._flush()
        untyped = sum(table.num_rows for table, _, _ in self.held)
        if self.writer is None or self.writer.num_rows == 0:
            return None, untyped
        try:
            return self.writer.finish(), untyped
        except FormatError as exc:  # shards rewritten for a promotion hold values the wider type cannot
            raise lossy_promotion(exc) from None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.output.discard()
