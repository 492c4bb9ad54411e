"""`fastload.convert`: inputs → chunks → worker threads → one writer → a dataset.

    reader (main thread)      workers (threads)                    writer (main thread)
    chunks in input order ──► parse + select + tokenize + cast ──► reconcile schema, cut blocks,
                              (pyarrow C++ / Numba: no GIL)        checksum, stats, shards, index

Threads, not processes: the expensive steps (pyarrow's parsers, the Numba
tokenizer) release the GIL, and threads hand Arrow tables over without
pickling. Results are consumed strictly in input order with a bounded number
in flight, so memory stays flat and the dataset is byte-identical for every
`workers` value; an error or Ctrl-C stops the threads within a fraction of a
second (`threads.py`).

The output folder is held (`format.output.OutputFolder`: a lock, so a second
conversion into it is refused) before any input is read, and a failed or
interrupted conversion removes exactly what it created. An output URL
(`s3://bucket/prefix`) goes through `format.remote_output.RemoteOutput`:
shards are staged locally and uploaded one by one as they are finished,
`index.json` last. The Numba kernels a conversion runs (the tokenizer's,
the JSON Lines scanner's) are compiled (or loaded from Numba's cache) before the clock starts,
so the MB/s figure measures conversion, and the summary shows that time
apart.

Schema reconciliation: the first chunk fixes the column names; each later
chunk's column kinds are merged with `promote_column` (widening only). A
column that is null everywhere so far is held back (chunks are buffered)
until some chunk gives it a type; one that stays null to the end is dropped
and reported. A type change that cannot be widened is an error that names the
file where the column got its type and the file that disagrees.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa

from fastload.convert.normalize import TOKENS_COLUMN, prepare_table
from fastload.convert.parse import FLAT_JSON_MIN_BYTES, LineError
from fastload.convert.sources import COMPRESSED, Chunk, file_chunks, find_inputs, object_chunks
from fastload.convert.threads import OrderedThreads, SlicedTokenizer
from fastload.environment import flat_json_disabled
from fastload.errors import ConfigError, ConvertError, FormatError
from fastload.format.index import DatasetIndex
from fastload.format.output import OutputFolder
from fastload.format.remote_output import RemoteOutput, open_output
from fastload.format.schema import Column, Schema, TypeMismatch, promote_column
from fastload.format.writer import DatasetWriter, WriteOptions
from fastload.store import RetryPolicy, is_remote, local_path

__all__ = ["convert", "ConvertResult"]

log = logging.getLogger("fastload.convert")

ON_ERROR = ("fail", "skip")
_MAX_HELD_BYTES = 512 << 20  # chunks held back while a column is still all-null
_WARMUP_SHOWN_S = 0.05  # kernel warm-up shorter than this goes unmentioned in the summary


@dataclass
class ConvertResult:
    """What a conversion did; `str()` is the summary the CLI prints."""

    path: Path | str  # a folder, or the URL it was uploaded to
    index: DatasetIndex
    bytes_in: int
    seconds: float  # the conversion itself, which the MB/s figure divides by
    num_skipped_rows: int
    dropped_columns: list[str] = field(default_factory=list)
    warmup_seconds: float = 0.0  # before `seconds`: compiling the kernels (tokenizer, JSON scanner), or loading them from Numba's cache

    @property
    def num_rows(self) -> int:
        return self.index.num_rows

    @property
    def num_tokens(self) -> int:
        stats = self.index.stats.get(TOKENS_COLUMN) or {}
        return int(stats.get("tokens", 0))

    def __str__(self) -> str:
        mb_in, mb_out = self.bytes_in / 1e6, self.index.num_bytes / 1e6
        lines = [
            f"dataset      {self.path}",
            f"rows         {self.num_rows:,}" + (f"   ({self.num_skipped_rows:,} skipped)" if self.num_skipped_rows else ""),
            f"shards       {len(self.index.shards):,}   blocks {self.index.num_blocks:,}",
            f"bytes        {mb_in:,.1f} MB in -> {mb_out:,.1f} MB out ({self.index.compression})",
        ]
        if self.num_tokens:
            lines.append(f"tokens       {self.num_tokens:,}")
        if self.dropped_columns:
            lines.append(f"dropped      {', '.join(self.dropped_columns)} (null in every row)")
        rate = mb_in / self.seconds if self.seconds > 0 else float("inf")
        lines.append(f"time         {self.seconds:,.2f} s   ({rate:,.1f} MB/s in)")
        if self.warmup_seconds >= _WARMUP_SHOWN_S:
            lines.append(
                f"             + {self.warmup_seconds:,.2f} s before that to compile fastload's kernels "
                "(or load them from Numba's cache), not counted in MB/s"
            )
        return "\n".join(lines)


class _Columns:
    """The dataset's columns as known so far, and which input gave each its type."""

    def __init__(self) -> None:
        self.columns: dict[str, Column | None] = {}
        self.origin: dict[str, str] = {}

    def merge(self, kinds: dict[str, Column | None], source: str) -> None:
        if not self.columns:
            self.columns = dict(kinds)
            self.origin = {name: source for name, c in kinds.items() if c is not None}
            return
        extra = [name for name in kinds if name not in self.columns]
        if extra:
            raise ConvertError(
                f"{source} has field(s) {', '.join(map(repr, extra))} that earlier input ({self._first_source()}) "
                f"does not; list the fields to keep with --columns ({', '.join(self.columns)} are known)"
            )
        for name, incoming in kinds.items():
            current = self.columns[name]
            if incoming is None:
                continue
            if current is None:
                self.columns[name], self.origin[name] = incoming, source
                continue
            try:
                self.columns[name] = promote_column(current, incoming)
            except TypeMismatch as exc:
                raise ConvertError(
                    f"field {name!r} changes type: {self.origin[name]} gave it {current.kind} ({current.dtype}), "
                    f"{source} has {incoming.kind} ({incoming.dtype}) [{exc}]. Make the field consistent, or "
                    "leave it out with --columns."
                ) from None

    def unfit(self, name: str, source: str, exc: Exception) -> ConvertError:
        column = self.columns[name]
        return ConvertError(
            f"field {name!r}: values in {source} do not fit {column.kind} ({column.dtype}), the type the field "
            f"has across the inputs ({self.origin.get(name, 'the first input')} set it): {exc}. Make the "
            "field's type consistent (e.g. all integers below 2**53 or all floats), or leave it out with --columns."
        )

    def _first_source(self) -> str:
        return next(iter(self.origin.values()), "the first input")

    @property
    def complete(self) -> bool:
        return all(c is not None for c in self.columns.values())

    def schema(self) -> Schema:
        return Schema(tuple(c for c in self.columns.values() if c is not None))

    def conform(self, table: pa.Table, source: str) -> pa.Table:
        """`table` with exactly the current typed columns, in order (missing fields become nulls)."""
        arrays = []
        for name, column in self.columns.items():
            if column is None:
                continue
            if name in table.column_names:
                array = table.column(name)
                try:
                    arrays.append(array if array.type == column.arrow_type else array.cast(column.arrow_type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise self.unfit(name, source, exc) from None
            else:
                arrays.append(pa.nulls(table.num_rows, column.arrow_type))
        return pa.Table.from_arrays(arrays, schema=self.schema().arrow_schema())


class _Assembler:
    """Feeds prepared chunks to one `DatasetWriter` in input order, reconciling their columns.

    The writer is created only once every column has a type, or when too
    much is held back waiting for one; the folder it writes into is held from
    the start.
    """

    def __init__(self, output: OutputFolder | RemoteOutput, options: WriteOptions):
        self.output, self.options = output, options
        self.known = _Columns()
        self.writer: DatasetWriter | None = None
        self.held: list[tuple[pa.Table, str]] = []
        self.held_bytes = 0

    def add(self, table: pa.Table, kinds: dict, *, source: str) -> None:
        self.known.merge(kinds, source)
        self.held.append((table, source))
        self.held_bytes += table.nbytes
        if self.writer is not None or self.known.complete or self.held_bytes >= _MAX_HELD_BYTES:
            self._flush()

    def _flush(self) -> None:
        schema = self.known.schema()
        if self.writer is None:
            self.writer = DatasetWriter(self.output, schema, options=self.options)
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
        for table, source in self.held:
            self.writer.write(self.known.conform(table, source))
        self.held, self.held_bytes = [], 0

    def finish_held(self) -> bool:
        """Write what is still held; False when there is nothing to make a dataset of."""
        if self.held and len(self.known.schema()):
            self._flush()
        return self.writer is not None and self.writer.num_rows > 0

    @property
    def dropped_columns(self) -> list[str]:
        return [name for name, c in self.known.columns.items() if c is None]

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.output.discard()


def _resolve_tokenizer(tokenizer):
    if tokenizer is None or not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    try:
        from fastload.tokenizer import load_tokenizer
    except ImportError:
        raise ConfigError(
            "tokenization during conversion is not available in this build of fastload yet; convert "
            "without --tokenizer and tokenize in the loader"
        ) from None
    return load_tokenizer(str(tokenizer))


def _chunks_of(source, *, input_format, on_error, text_field, text_lines, out: Path | None) -> tuple[Iterator[Chunk], list[str], int | None, bool]:
    """(chunks, names of the inputs, total input bytes when known up front, whether JSON Lines go to the Numba scanner)."""
    if isinstance(source, (str, os.PathLike)) or (isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source)):
        paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        files = find_inputs(paths, input_format=input_format, exclude=None if out is None else out.resolve())
        total = None if any(f.compression in COMPRESSED for f in files) else sum(f.num_bytes for f in files)
        flat_json = _json_lines_bytes(files) >= FLAT_JSON_MIN_BYTES and not flat_json_disabled()

        def generate() -> Iterator[Chunk]:
            for found in files:
                yield from file_chunks(found, on_error=on_error, text_field=text_field, text_lines=text_lines, flat_json=flat_json)

        return generate(), [str(s) for s in paths], total, flat_json
    return object_chunks(source), [f"<{type(source).__module__}.{type(source).__name__}>"], None, False


def _json_lines_bytes(files) -> int:
    """About how many bytes of JSON Lines `files` hold: compressed ones count 4 times their size (text compresses 3-5x)."""
    return sum(f.num_bytes * (4 if f.compression else 1) for f in files if f.fmt == "jsonl")


def _progress(total: int | None, quiet: bool):
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="convert", disable=disable)


def convert(
    source,
    out: str | os.PathLike,
    *,
    columns: Iterable[str] | None = None,
    text_field: str = "text",
    tokenizer=None,
    keep_text: bool = False,
    input_format: str | None = None,
    text_lines: bool = False,
    shard_bytes: int = WriteOptions.shard_bytes,
    block_bytes: int = WriteOptions.block_bytes,
    block_rows: int | None = None,
    compression: str = "none",
    workers: int | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    quiet: bool = False,
    storage_options: dict | None = None,
    retry: RetryPolicy | None = None,
    staging_dir: str | os.PathLike | None = None,
) -> ConvertResult:
    """Convert files (paths, folders, globs) or an in-memory source into a fastload dataset at `out`.

    `out` may be a URL (`s3://bucket/prefix`, `gs://`, `az://`): shards are
    staged in a temporary folder under `staging_dir` (default: the system's)
    and uploaded as each is finished, `index.json` last; `storage_options`
    and `retry` (a `fastload.RetryPolicy`) are as for `fastload.Dataset`.

    See `fastload convert --help` for the options; the Python names are the
    same in snake_case. Returns a `ConvertResult`; raises `ConvertError`
    naming the file and line on bad input, and leaves no complete-looking
    dataset behind when it fails.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, found {on_error!r}")
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if type(workers) is not int or workers < 1:
        raise ConfigError(f"workers must be a positive integer, found {workers!r}")
    options = WriteOptions(shard_bytes=shard_bytes, block_bytes=block_bytes, block_rows=block_rows, compression=compression)
    columns = tuple(columns) if columns is not None else None
    tokenizer = _resolve_tokenizer(tokenizer)
    remote = is_remote(out)
    out = str(out).rstrip("/") if remote else local_path(out)  # a URL stays text: Path would fold "s3://" into "s3:/"
    chunks, input_names, total, flat_json = _chunks_of(source, input_format=input_format, on_error=on_error, text_field=text_field, text_lines=text_lines, out=None if remote else out)
    # Held before any input is read: a second conversion into `out` is refused at once.
    output = open_output(out, overwrite=overwrite, storage_options=storage_options, retry=retry, staging_dir=staging_dir)
    assembler = _Assembler(output, options)
    progress = None
    try:
        warmup_seconds = _warm_up(tokenizer, flat_json=flat_json)
        started = time.perf_counter()
        progress = _progress(total, quiet)
        with OrderedThreads(workers, depth=2 * workers) as threads:
            work = _chunk_work(threads, columns=columns, text_field=text_field, tokenizer=tokenizer, keep_text=keep_text)
            bytes_in, skipped_rows, input_fields = _assemble(threads.map(work, chunks), assembler, progress)
        unknown = [name for name in columns or () if name not in input_fields]
        if unknown and input_fields:
            raise ConfigError(
                f"--columns names {', '.join(map(repr, unknown))}, which no input row has; "
                f"the inputs' fields are: {', '.join(input_fields)}"
            )
        if not assembler.finish_held():
            raise ConvertError(
                f"the input ({', '.join(input_names)}) holds no rows"
                + (f" ({skipped_rows:,} skipped as bad)" if skipped_rows else "")
                + "; an empty dataset is not created"
            )
        dropped = assembler.dropped_columns
        for name in dropped:
            log.warning("field %r is null in every row and was left out of the dataset", name)
        try:
            index = assembler.writer.close(
                source={"inputs": input_names, "dropped_columns": dropped},
                tokenizer=_tokenizer_record(tokenizer, text_field),
                num_skipped_rows=skipped_rows,
                options={"columns": list(columns) if columns else None, "text_field": text_field, "keep_text": keep_text, "on_error": on_error},
                created_by=f"fastload {_version()}",
            )
        except FormatError as exc:  # shards rewritten for a promotion hold values the wider type cannot
            raise ConvertError(f"{exc}. A field changed type between inputs in a way that loses values; make it consistent, or leave it out with --columns.") from None
    except BaseException:
        assembler.abort()  # removes exactly what this conversion created
        raise
    finally:
        if progress is not None:
            progress.close()
    return ConvertResult(out, index, bytes_in, time.perf_counter() - started, skipped_rows, dropped, warmup_seconds=warmup_seconds)


def _warm_up(tokenizer, *, flat_json: bool) -> float:
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
        from fastload.convert.flat_json import warm_up  # imports Numba: only when JSON Lines are read

        warm_up()
    if tokenizer is not None:
        tokenizer.encode_arrow(pa.array(["warm up: ASCII, é, 漢字", None], pa.string()))
    return time.perf_counter() - started


def _chunk_work(threads: OrderedThreads, *, columns, text_field: str, tokenizer, keep_text: bool):
    """The function a worker thread runs on one chunk; it stops at the next check once `threads` is stopping."""
    sliced = SlicedTokenizer(tokenizer, threads.check) if tokenizer is not None else None

    def work(chunk: Chunk):
        threads.check()
        try:
            table, skipped, num_lines = chunk.load()
        except LineError as error:  # located once the lines before this chunk are counted
            return chunk, error, 0, 0, ()
        threads.check()
        prepared = prepare_table(table, source=chunk.source, columns=columns, text_field=text_field, tokenizer=sliced, keep_text=keep_text)
        return chunk, prepared, skipped, num_lines, tuple(table.column_names)

    return work


def _assemble(results: Iterator, assembler: _Assembler, progress) -> tuple[int, int, dict[str, None]]:
    """Feed the workers' results, in input order, to the writer: (input bytes, rows skipped, every input field)."""
    bytes_in = skipped_rows = rows_in = 0
    input_fields: dict[str, None] = {}  # every field any input row has, in order of appearance
    lines_before: dict[str, int] = {}  # input lines of each source in the chunks done so far
    for chunk, prepared, skipped, num_lines, fields in results:
        input_fields.update(dict.fromkeys(fields))
        first_line = chunk.first_line or lines_before.get(chunk.source, 0) + 1
        lines_before[chunk.source] = lines_before.get(chunk.source, 0) + num_lines
        if isinstance(prepared, LineError):
            raise prepared.to_convert_error(chunk.source, first_line)
        bytes_in += chunk.num_bytes
        skipped_rows += skipped
        if prepared is not None:
            assembler.add(*prepared, source=chunk.source)
            rows_in += prepared[0].num_rows
            progress.set_postfix_str(f"{rows_in:,} rows", refresh=False)
        progress.update(chunk.num_bytes)
    return bytes_in, skipped_rows, input_fields


def _tokenizer_record(tokenizer, text_field: str) -> dict | None:
    if tokenizer is None:
        return None
    return {
        "column": TOKENS_COLUMN,
        "text_field": text_field,
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": int(tokenizer.vocab_size),
        "eos_id": tokenizer.eos_id,
        "bos_id": tokenizer.bos_id,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastload")
    except PackageNotFoundError:
        return "unknown"

