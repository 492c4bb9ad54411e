"""Inputs to `fastload convert`: find them, and cut each into chunks of work.

A *chunk* is a piece of input that a worker thread can parse on its own into
an Arrow table: a run of whole lines of a JSON Lines or text file, a Parquet
row group, an Arrow record batch, a slice of an in-memory table. Chunks come
out in input order, so the dataset's row order is the input's row order
whatever the number of workers.

Line-based files (JSON Lines, text with one document per line) are read
sequentially, decompressed on the fly when they end in `.gz`, `.zst` or
`.lz4`, and cut at newlines into chunks of about `CHUNK_BYTES`; each chunk
remembers its file and first line number so that a parse error can name the
exact line. Parsing itself (pyarrow's C++ readers, tokenization) happens in
the workers and releases the GIL.

Files may be objects in a store too (`s3://bucket/corpus/`, found by
`remote_inputs`): they are read through the same functions, by ranged GETs
(`input_files.open_raw`), so chunks, and so the dataset, are the same bytes.

Rows from text files get a `source_file` column naming their file, relative
to the folder or glob it was found through (other formats carry their own
fields and get none). A file that is deleted, replaced, damaged or written
to while it is converted is a `ConvertError` naming it (`input_files`); Arrow
files are read, not memory-mapped, since a mapped file truncated under us
kills the process with SIGBUS.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastload.convert.csv_input import csv_tables
from fastload.convert.input_files import InputFile, line_pieces, open_decompressed, open_raw, read_errors, require_unchanged, unreadable
from fastload.convert.parse import check_utf8, count_lines, parse_json_lines, parse_text
from fastload.convert.remote_inputs import find_objects
from fastload.convert.rows import ArrayLayouts, field_names, rows_to_table
from fastload.errors import ConvertError
from fastload.store import RetryPolicy, is_remote

__all__ = ["Chunk", "FORMATS", "InputFile", "SOURCE_FILE_COLUMN", "find_inputs", "file_chunks", "object_chunks"]

CHUNK_BYTES = 8 << 20  # big enough that per-chunk overhead vanishes, small enough to keep 2 workers busy on a few-MB corpus
CHUNK_ROWS = 16_384  # rows per chunk for in-memory inputs

# file suffix (after removing a compression suffix) -> input format
FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".md": "text",
    ".text": "text",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
COMPRESSED = (".gz", ".zst", ".lz4")
SOURCE_FILE_COLUMN = "source_file"  # text inputs: the file each row came from, relative to the folder given


@dataclass(frozen=True)
class Chunk:
    """A unit of conversion work. `load()` runs in a worker: (table, rows skipped, input lines in the chunk)."""

    source: str  # the file (or in-memory object) this chunk came from, for messages
    first_line: int | None  # 1-based line (or item) of the chunk's first row; None: right after the previous chunk
    num_bytes: int  # input bytes, for the progress bar's MB/s
    load: Callable[[], tuple[pa.Table, int, int]]


def _format_of(path: PurePath) -> tuple[str | None, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSED:
        compression = suffixes.pop()
    return (FORMATS.get(suffixes[-1]) if suffixes else None), compression


def _glob_folder(pattern: str) -> Path:
    """The part of a glob pattern before its first wildcard: what matches are named relative to."""
    parts = Path(pattern).parts
    first_wild = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    return Path(*parts[:first_wild]) if first_wild else Path(".")


def find_inputs(
    inputs: Iterable[str | os.PathLike],
    *,
    input_format: str | None = None,
    exclude: Path | str | None = None,
    storage_options: dict | None = None,
    retry: RetryPolicy | None = None,
) -> list[InputFile]:
    """Expand files, folders and globs, local or URLs (`remote_inputs`), into `InputFile`s, sorted within each folder/glob.

    Files under `exclude` (the output folder, or its URL) are left out, so an
    output placed inside an input folder is never read back as input; naming
    such a file explicitly is an error, since converting would overwrite it.
    `storage_options` and `retry` are for inputs in object storage.
    """
    found: list[InputFile] = []
    for item in inputs:
        text = str(item)
        if is_remote(text):
            found += _remote_inputs(text, input_format, exclude if isinstance(exclude, str) else None, storage_options, retry)
            continue
        exclude_here = None if isinstance(exclude, str) else exclude  # (a URL: no local file lies under it)
        if any(ch in text for ch in "*?["):
            paths = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not paths:
                raise ConvertError(f"the pattern {text!r} matches no files")
            folder = _glob_folder(text)
        elif Path(text).is_dir():
            paths = sorted(p for p in Path(text).rglob("*") if p.is_file() and not p.name.startswith("."))
            paths = [p for p in paths if input_format or _format_of(p)[0]]
            if not paths:
                raise ConvertError(
                    f"the folder {text!r} holds no files fastload can read (suffixes: {', '.join(sorted(FORMATS))}, "
                    f"optionally with {', '.join(COMPRESSED)})"
                )
            folder = Path(text)
        elif Path(text).is_file():
            paths = [Path(text)]
            folder = Path(text).parent
        else:
            raise ConvertError(f"input {text!r} does not exist")
        if exclude_here is not None:
            inside = [p for p in paths if p.resolve().is_relative_to(exclude_here)]
            if inside and Path(text).is_file():
                raise ConvertError(f"input {text!r} lies inside the output folder {str(exclude)!r}; choose another output folder")
            paths = [p for p in paths if p not in inside]
        for path in paths:
            fmt, compression = _format_of(path)
            fmt = input_format or fmt
            if fmt is None:
                raise _unknown_format(str(path))
            try:
                stat = path.stat()
            except OSError as exc:
                raise unreadable(str(path), exc) from None
            name = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
            found.append(InputFile(path, fmt, compression, name, stat.st_size, stat.st_mtime_ns))
    if not found:
        raise ConvertError("no input files were given")
    return found


def _remote_inputs(url: str, input_format: str | None, exclude: str | None, storage_options: dict | None, retry: RetryPolicy | None) -> list[InputFile]:
    """The objects an input URL names (`remote_inputs`), as InputFiles, with the same rules and messages as local files."""
    match = find_objects(url, storage_options=storage_options, retry=retry, exclude=exclude)
    objects = match.objects
    if match.kind == "folder":
        objects = [info for info in objects if input_format or _format_of(PurePosixPath(info.name))[0]]
    if not objects:
        if match.kind == "pattern":
            raise ConvertError(f"the pattern {url!r} matches no objects")
        if not match.objects:
            raise ConvertError(f"input {url!r} does not exist (no object has that name, and none lies under it)")
        raise ConvertError(
            f"{url!r} holds no files fastload can read (suffixes: {', '.join(sorted(FORMATS))}, "
            f"optionally with {', '.join(COMPRESSED)})"
        )
    found = []
    for info in objects:
        fmt, compression = _format_of(PurePosixPath(info.name))
        fmt = input_format or fmt
        if fmt is None:
            raise _unknown_format(match.store.url_of(info.name))
        found.append(InputFile(match.store.url_of(info.name), fmt, compression, info.name, info.size, info.version, match.store))
    return found


def _unknown_format(name: str) -> ConvertError:
    return ConvertError(f"cannot tell the format of {name!r} from its name; pass --format ({', '.join(sorted(set(FORMATS.values())))})")


def _with_source_file(table: pa.Table, name: str) -> pa.Table:
    return table.append_column(SOURCE_FILE_COLUMN, pa.repeat(pa.scalar(name, pa.string()), table.num_rows))


def file_chunks(found: InputFile, *, on_error: str, text_field: str, text_lines: bool, start: int = 0, end: int | None = None, flat_json: bool = True) -> Iterator[Chunk]:
    """The chunks of one input file (or of its bytes [start, end), for a file `partitions` may cut), in order;
    `flat_json`: JSON Lines try the Numba scanner first (`parse_json_lines`).

    A file that cannot be read (deleted, replaced or damaged while converting)
    is a `ConvertError` naming it, whether reading fails here or in a worker.
    """
    errors = read_errors(found.compression)
    name = str(found.path)

    def guarded(load: Callable[[], tuple[pa.Table, int, int]]) -> Callable[[], tuple[pa.Table, int, int]]:
        def run() -> tuple[pa.Table, int, int]:
            try:
                return load()
            except errors as exc:
                raise unreadable(name, exc) from None

        return run

    try:
        for chunk in _file_chunks(found, on_error=on_error, text_field=text_field, text_lines=text_lines, start=start, end=end, flat_json=flat_json):
            yield Chunk(chunk.source, chunk.first_line, chunk.num_bytes, guarded(chunk.load))
        require_unchanged(found)
    except errors as exc:
        raise unreadable(name, exc) from None


def _file_chunks(found: InputFile, *, on_error: str, text_field: str, text_lines: bool, start: int, end: int | None, flat_json: bool) -> Iterator[Chunk]:
    path, fmt, compression = found.path, found.fmt, found.compression
    name = str(path)
    if fmt == "text" and text_field == SOURCE_FILE_COLUMN:
        raise ConvertError(
            f"--text-field {SOURCE_FILE_COLUMN} is the column fastload adds to text inputs to name each row's file; "
            "choose another text field"
        )
    if (start, end) != (0, None) and not (compression is None and (fmt == "jsonl" or (fmt == "text" and text_lines))):
        raise ConvertError(f"{name!r}: only uncompressed JSON Lines and line-per-row text files can be read from a byte range")
    if fmt == "jsonl":
        for data in line_pieces(found, piece_bytes=CHUNK_BYTES, start=start, end=end):
            yield Chunk(name, None, len(data), lambda data=data: parse_json_lines(data, on_error, flat=flat_json))
    elif fmt == "text" and text_lines:

        def load_lines(data) -> tuple[pa.Table, int, int]:
            table, skipped = parse_text(data, name, text_field, on_error)
            return _with_source_file(table, found.name), skipped, count_lines(data)

        for data in line_pieces(found, piece_bytes=CHUNK_BYTES, start=start, end=end):
            yield Chunk(name, None, len(data), lambda data=data: load_lines(data))
    elif fmt == "text":

        def load_document() -> tuple[pa.Table, int, int]:
            with open_decompressed(found) as f:
                raw = f.read()
            require_unchanged(found)
            table, skipped = parse_text(raw, name, text_field, on_error, whole=True)
            return _with_source_file(table, found.name), skipped, 0

        yield Chunk(name, 1, found.num_bytes, load_document)
    elif fmt == "parquet":
        _require_uncompressed(path, compression)
        try:
            with _random_access(found) as source:
                meta = pq.ParquetFile(source)
        except (OSError, pa.ArrowException) as exc:
            raise ConvertError(f"{name!r} is not a readable Parquet file: {exc}") from None

        def load_row_group(group: int, first_row: int) -> tuple[pa.Table, int, int]:
            with _random_access(found) as source:  # (the footer read once, above: a wide file's is megabytes)
                table = pq.ParquetFile(source, metadata=meta.metadata).read_row_group(group)
            require_unchanged(found)
            return check_utf8(table, name, first_row), 0, 0

        first_row = 1
        for group in range(meta.num_row_groups):
            row_group = meta.metadata.row_group(group)  # bytes on disk, as the progress bar's total counts them
            size = sum(row_group.column(c).total_compressed_size for c in range(row_group.num_columns))
            yield Chunk(name, 0, size, lambda group=group, first_row=first_row: load_row_group(group, first_row))
            first_row += row_group.num_rows
    elif fmt == "arrow":
        _require_uncompressed(path, compression)
        yield from _arrow_file_chunks(found)
    elif fmt == "csv":
        yield from _csv_chunks(found)
    else:
        raise ConvertError(f"unknown input format {fmt!r} for {name!r}; valid: {', '.join(sorted(set(FORMATS.values())))}")


def _require_uncompressed(path: Path, compression: str | None) -> None:
    if compression is not None:
        raise ConvertError(f"{str(path)!r}: compressed Parquet/Arrow files are not supported; they compress internally")


def _random_access(found: InputFile) -> pa.NativeFile:
    """A Parquet or Arrow file opened for Arrow's readers: a local one natively (no Python in its reads), an
    object through `open_raw`. Read, not memory-mapped: a mapped file truncated by someone else while it is
    read kills the process with SIGBUS; a read fails with an error we can name."""
    if found.store is None:
        return pa.OSFile(str(found.path))
    return pa.PythonFile(open_raw(found, sequential=False), mode="r")


def _arrow_file_chunks(found: InputFile) -> Iterator[Chunk]:
    name = str(found.path)
    with _random_access(found) as source:
        try:
            reader = ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            try:  # Arrow IPC *stream* files (and Feather v2 written as a stream) are read sequentially
                source.seek(0)
                reader = ipc.open_stream(source)
                batches = iter(reader)
            except pa.ArrowInvalid as exc:
                raise ConvertError(f"{name!r} is not an Arrow IPC / Feather file: {exc}") from None
        yield from _table_chunks(batches, name)


def _table_chunks(batches: Iterable[pa.RecordBatch], name: str) -> Iterator[Chunk]:
    """One chunk per record batch; each batch's text is checked in a worker."""
    row = 1
    for batch in batches:
        table = pa.Table.from_batches([batch])
        yield Chunk(name, row, batch.nbytes, lambda table=table, row=row: (check_utf8(table, name, row), 0, 0))
        row += batch.num_rows


def _csv_chunks(found: InputFile) -> Iterator[Chunk]:
    name = str(found.path)
    for table in csv_tables(name, lambda: open_decompressed(found), block_bytes=CHUNK_BYTES):
        yield Chunk(name, 0, table.nbytes, lambda table=table: (table, 0, 0))


def object_chunks(obj: object) -> Iterator[Chunk]:
    """Chunks of an in-memory source: a pyarrow Table/RecordBatch/Dataset/reader, a pandas
    DataFrame, a Hugging Face `datasets.Dataset`, or any iterable of dicts."""
    name = f"<{type(obj).__module__}.{type(obj).__name__}>"
    module = type(obj).__module__.split(".")[0]
    if module == "datasets" and hasattr(obj, "data") and hasattr(obj.data, "table"):
        # A Hugging Face dataset is an Arrow table underneath, seen through an index mapping
        # after filter/select/shuffle/train_test_split: materialise that view, not the table.
        if getattr(obj, "_indices", None) is not None:
            obj = obj.flatten_indices()
        obj = obj.data.table
    if module == "pandas":
        obj = _arrow_from_pandas(obj, name)
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    if isinstance(obj, pa.Table):
        for start in range(0, obj.num_rows, CHUNK_ROWS):
            piece = obj.slice(start, CHUNK_ROWS)
            load = lambda piece=piece, row=start + 1: (check_utf8(piece, name, row), 0, 0)  # noqa: E731
            yield Chunk(name, start + 1, piece.nbytes, load)
        return
    if hasattr(obj, "to_batches") and hasattr(obj, "schema"):  # pyarrow.dataset.Dataset, Scanner
        yield from _table_chunks(obj.to_batches(), name)
    elif isinstance(obj, pa.RecordBatchReader):
        yield from _table_chunks(obj, name)
    else:
        yield from _dict_chunks(obj, name)


def _arrow_from_pandas(frame, name: str) -> pa.Table:
    failures = (pa.ArrowException, OverflowError, UnicodeEncodeError)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except failures as exc:
        bad = []
        for column in frame.columns:
            try:
                pa.Array.from_pandas(frame[column])
            except failures:
                bad.append(column)
        where = f" column {bad[0]!r}:" if bad else ""
        raise ConvertError(
            f"{name}:{where} the DataFrame cannot be converted to Arrow ({exc}), e.g. an integer beyond int64 in an "
            "object column; fix the values, or leave the column out with --columns"
        ) from None


def _dict_chunks(obj: object, name: str) -> Iterator[Chunk]:
    try:
        iterator = iter(obj)
    except TypeError:
        raise ConvertError(
            f"cannot convert an object of type {type(obj).__name__}; give files, a pyarrow Table, a pandas "
            "DataFrame, a Hugging Face dataset or an iterable of dicts"
        ) from None
    layouts = ArrayLayouts()  # how array fields are stored, decided in input order for every chunk

    def chunk(rows: list, row: int) -> Chunk:
        names = field_names(rows)
        layouts.decide(rows, names)
        return Chunk(name, row, 0, lambda: (rows_to_table(rows, name, row, names=names, layouts=layouts), 0, 0))

    row = 1
    rows: list = []
    for item in iterator:
        rows.append(item)
        if len(rows) == CHUNK_ROWS:
            yield chunk(rows, row)
            row += len(rows)
            rows = []
    if rows:
        yield chunk(rows, row)
