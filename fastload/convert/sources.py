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
"""

from __future__ import annotations

import glob
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastload.convert.parse import count_lines, parse_json_lines, parse_text
from fastload.errors import ConvertError

__all__ = ["Chunk", "FORMATS", "find_inputs", "file_chunks", "object_chunks"]

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


@dataclass(frozen=True)
class Chunk:
    """A unit of conversion work. `load()` runs in a worker: (table, rows skipped, input lines in the chunk)."""

    source: str  # the file (or in-memory object) this chunk came from, for messages
    first_line: int | None  # 1-based line (or item) of the chunk's first row; None: right after the previous chunk
    num_bytes: int  # input bytes, for the progress bar's MB/s
    load: Callable[[], tuple[pa.Table, int, int]]


def _format_of(path: Path) -> tuple[str | None, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSED:
        compression = suffixes.pop()
    return (FORMATS.get(suffixes[-1]) if suffixes else None), compression


def find_inputs(inputs: Iterable[str | os.PathLike], *, input_format: str | None = None, exclude: Path | None = None) -> list[tuple[Path, str, str | None]]:
    """Expand files, folders and globs into (path, format, compression), sorted within each folder/glob.

    Files under `exclude` (the output folder) are left out, so an output placed
    inside an input folder is never read back as input; naming such a file
    explicitly is an error, since converting would overwrite it.
    """
    found: list[tuple[Path, str, str | None]] = []
    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?["):
            paths = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not paths:
                raise ConvertError(f"the pattern {text!r} matches no files")
        elif Path(text).is_dir():
            paths = sorted(p for p in Path(text).rglob("*") if p.is_file() and not p.name.startswith("."))
            paths = [p for p in paths if input_format or _format_of(p)[0]]
            if not paths:
                raise ConvertError(
                    f"the folder {text!r} holds no files fastload can read (suffixes: {', '.join(sorted(FORMATS))}, "
                    f"optionally with {', '.join(COMPRESSED)})"
                )
        elif Path(text).is_file():
            paths = [Path(text)]
        else:
            raise ConvertError(f"input {text!r} does not exist")
        if exclude is not None:
            inside = [p for p in paths if p.resolve().is_relative_to(exclude)]
            if inside and Path(text).is_file():
                raise ConvertError(f"input {text!r} lies inside the output folder {str(exclude)!r}; choose another output folder")
            paths = [p for p in paths if p not in inside]
        for path in paths:
            fmt, compression = _format_of(path)
            fmt = input_format or fmt
            if fmt is None:
                raise ConvertError(
                    f"cannot tell the format of {str(path)!r} from its name; pass --format "
                    f"({', '.join(sorted(set(FORMATS.values())))})"
                )
            found.append((path, fmt, compression))
    if not found:
        raise ConvertError("no input files were given")
    return found


def _open_decompressed(path: Path, compression: str | None) -> io.BufferedIOBase:
    if compression is None:
        return open(path, "rb")
    if compression == ".gz":
        return gzip.open(path, "rb")
    if compression == ".lz4":
        import lz4.frame

        return lz4.frame.open(path, "rb")
    try:
        import zstandard
    except ImportError:
        raise ConvertError(f"{str(path)!r} is zstd-compressed; install zstandard (pip install 'fastload[zstd]')") from None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)


def _line_chunks(path: Path, compression: str | None) -> Iterator[memoryview]:
    """Whole-line pieces of a file, about CHUNK_BYTES each, without copying them.

    Each piece is read straight into a buffer of its own (workers parse
    pieces in parallel, so none is reused) after the partial line left over
    from the previous read.
    """
    carry = b""
    with _open_decompressed(path, compression) as f:
        while True:
            buffer = bytearray(len(carry) + CHUNK_BYTES)
            buffer[: len(carry)] = carry
            n = f.readinto(memoryview(buffer)[len(carry) :])
            end = len(carry) + (n or 0)
            if not n:
                break
            cut = buffer.rfind(b"\n", 0, end) + 1
            if cut == 0:  # a line longer than a chunk: keep reading until it ends
                carry = bytes(buffer[:end])
                continue
            carry = bytes(buffer[cut:end])
            yield memoryview(buffer)[:cut]
    if carry:
        yield memoryview(carry + b"\n")


def _lines_loaded(parse, data) -> tuple[pa.Table, int, int]:
    table, skipped = parse(data)
    return table, skipped, count_lines(data)


def file_chunks(path: Path, fmt: str, compression: str | None, *, on_error: str, text_field: str, text_lines: bool) -> Iterator[Chunk]:
    """The chunks of one input file, in order."""
    name = str(path)
    if fmt == "jsonl":
        parse = lambda data: parse_json_lines(data, on_error)  # noqa: E731
        for data in _line_chunks(path, compression):
            yield Chunk(name, None, len(data), lambda data=data: _lines_loaded(parse, data))
    elif fmt == "text" and text_lines:
        parse = lambda data: parse_text(data, name, text_field, on_error)  # noqa: E731
        for data in _line_chunks(path, compression):
            yield Chunk(name, None, len(data), lambda data=data: _lines_loaded(parse, data))
    elif fmt == "text":
        def load_document() -> tuple[pa.Table, int, int]:
            with _open_decompressed(path, compression) as f:
                raw = f.read()
            return (*parse_text(raw, name, text_field, on_error, whole=True), 0)

        yield Chunk(name, 1, path.stat().st_size, load_document)
    elif fmt == "parquet":
        _require_uncompressed(path, compression)
        try:
            meta = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise ConvertError(f"{name!r} is not a readable Parquet file: {exc}") from None
        for group in range(meta.num_row_groups):
            row_group = meta.metadata.row_group(group)  # bytes on disk, as the progress bar's total counts them
            size = sum(row_group.column(c).total_compressed_size for c in range(row_group.num_columns))
            yield Chunk(name, 0, size, lambda group=group: (pq.ParquetFile(path).read_row_group(group), 0, 0))
    elif fmt == "arrow":
        _require_uncompressed(path, compression)
        yield from _arrow_file_chunks(path)
    elif fmt == "csv":
        yield from _csv_chunks(path, compression)
    else:
        raise ConvertError(f"unknown input format {fmt!r} for {name!r}; valid: {', '.join(sorted(set(FORMATS.values())))}")


def _require_uncompressed(path: Path, compression: str | None) -> None:
    if compression is not None:
        raise ConvertError(f"{str(path)!r}: compressed Parquet/Arrow files are not supported; they compress internally")


def _arrow_file_chunks(path: Path) -> Iterator[Chunk]:
    name = str(path)
    source = pa.memory_map(str(path))
    try:
        reader = ipc.open_file(source)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        try:  # Arrow IPC *stream* files (and Feather v2 written as a stream) are read sequentially
            reader = ipc.open_stream(source)
            batches = iter(reader)
        except pa.ArrowInvalid as exc:
            raise ConvertError(f"{name!r} is not an Arrow IPC / Feather file: {exc}") from None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        yield Chunk(name, 0, batch.nbytes, lambda table=table: (table, 0, 0))


def _csv_chunks(path: Path, compression: str | None) -> Iterator[Chunk]:
    # CSV cannot be cut at arbitrary newlines (quoted fields may hold them), so it
    # is parsed by pyarrow's streaming reader here and handed to workers parsed.
    name = str(path)
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    try:
        reader = pacsv.open_csv(
            _open_decompressed(path, compression),
            read_options=pacsv.ReadOptions(block_size=CHUNK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        )
        for batch in reader:
            table = pa.Table.from_batches([batch])
            yield Chunk(name, 0, batch.nbytes, lambda table=table: (table, 0, 0))
    except pa.ArrowInvalid as exc:
        raise ConvertError(f"{name!r}: CSV parse error: {exc}") from None


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
        obj = pa.Table.from_pandas(obj, preserve_index=False)
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    if isinstance(obj, pa.Table):
        for start in range(0, obj.num_rows, CHUNK_ROWS):
            piece = obj.slice(start, CHUNK_ROWS)
            yield Chunk(name, start + 1, piece.nbytes, lambda piece=piece: (piece, 0, 0))
        return
    if hasattr(obj, "to_batches") and hasattr(obj, "schema"):  # pyarrow.dataset.Dataset, Scanner
        batches: Iterable = obj.to_batches()
    elif isinstance(obj, pa.RecordBatchReader):
        batches = obj
    else:
        yield from _dict_chunks(obj, name)
        return
    row = 1
    for batch in batches:
        table = pa.Table.from_batches([batch])
        yield Chunk(name, row, batch.nbytes, lambda table=table: (table, 0, 0))
        row += batch.num_rows


def _dict_chunks(obj: object, name: str) -> Iterator[Chunk]:
    from fastload.convert.parse import rows_to_table

    try:
        iterator = iter(obj)
    except TypeError:
        raise ConvertError(
            f"cannot convert an object of type {type(obj).__name__}; give files, a pyarrow Table, a pandas "
            "DataFrame, a Hugging Face dataset or an iterable of dicts"
        ) from None
    row = 1
    rows: list = []
    for item in iterator:
        rows.append(item)
        if len(rows) == CHUNK_ROWS:
            yield Chunk(name, row, 0, lambda rows=rows, row=row: (rows_to_table(rows, name, row), 0, 0))
            row += len(rows)
            rows = []
    if rows:
        yield Chunk(name, row, 0, lambda rows=rows, row=row: (rows_to_table(rows, name, row), 0, 0))
