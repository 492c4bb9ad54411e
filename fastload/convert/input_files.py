"""Reading input files: decompressing them, cutting them into whole lines, and
turning whatever goes wrong while reading into a `ConvertError` that names the file.

Inputs are trusted to hold still while they are converted. When one does
not (deleted, replaced by a folder, truncated, appended to) or is damaged (a
truncated or mislabelled .gz/.lz4/.zst), the OS, Arrow or the decompressor
raises one of several exceptions, some of them mid-file in a worker; here
they all become one message. A file that changed but still reads is caught
by comparing its size and mtime with those it had when it was found, which
is what keeps a file truncated at a line boundary from silently giving
fewer rows.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Iterator, NamedTuple

import pyarrow as pa

from fastload.errors import ConvertError
from fastload.store import Store

__all__ = ["InputFile", "line_pieces", "open_decompressed", "open_raw", "read_errors", "require_unchanged", "unreadable"]


class InputFile(NamedTuple):
    """One input file, as `find_inputs` found it: a local file, or an object in a store (`remote_inputs`)."""

    path: Path | str  # a local file, or an object's URL (text: see store.location)
    fmt: str
    compression: str | None
    name: str  # relative to the folder (or glob's folder, or URL prefix) it was found in; the file name when given directly
    num_bytes: int  # when found
    version: int | str  # when found (a local file's mtime_ns, an object's ETag): a file rewritten during the conversion is refused
    store: Store | None = None  # where an object lies (`name` is its key there); None for a local file


def open_raw(found: InputFile, *, sequential: bool = True) -> io.BufferedIOBase:
    """The file's bytes as stored: a local file, or an object read by ranged GETs (`store.object_file`);
    `sequential`: read front to back (the next window is fetched while this one is used)."""
    if found.store is None:
        return open(found.path, "rb")
    from fastload.store.object_file import ObjectFile

    # (buffered: a readinto fills the whole buffer, across windows, as a local file's does)
    return io.BufferedReader(ObjectFile(found.store, found.name, found.num_bytes, sequential=sequential))


def open_decompressed(found: InputFile) -> io.BufferedIOBase:
    """The file's bytes, decompressed on the fly for .gz, .lz4 and .zst."""
    if found.compression == ".zst":
        try:
            import zstandard
        except ImportError:
            raise ConvertError(f"{str(found.path)!r} is zstd-compressed; install zstandard (pip install 'fastload[zstd]')") from None
        return zstandard.ZstdDecompressor().stream_reader(open_raw(found), closefd=True)
    raw = open_raw(found)
    if found.compression is None:
        return raw
    if found.compression == ".gz":
        return _Decompressing(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    import lz4.frame

    return _Decompressing(lz4.frame.LZ4FrameFile(raw, "rb"), raw)


class _Decompressing(io.RawIOBase):
    """A decompressor reading from `raw`, which it closes when it is closed (`gzip.open(path)` would too)."""

    def __init__(self, stream, raw):
        super().__init__()
        self._stream, self._raw = stream, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._stream.readinto(buffer)  # (the decompressors fill it, as far as the data goes)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readall(self) -> bytes:
        return self._stream.read()

    def close(self) -> None:
        if not self.closed:
            try:
                self._stream.close()
            finally:
                self._raw.close()
                super().close()


def read_errors(compression: str | None) -> tuple[type[BaseException], ...]:
    """What reading a file can raise when it vanishes, changes or is damaged (by OS, Arrow or decompressor)."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, pa.ArrowException)  # (an object store's StoreError is an OSError)
    if compression == ".lz4":
        errors += (RuntimeError,)  # lz4.frame reports damaged frames as RuntimeError
    elif compression == ".zst":
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def unreadable(name: str, exc: BaseException) -> ConvertError:
    """The error for a read that failed with one of `read_errors`."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return ConvertError(
        f"cannot read input {name!r}: {reason}. The file was moved, deleted or changed during the conversion, "
        "or it is damaged (e.g. a truncated or mislabelled compressed file)"
    )


def require_unchanged(found: InputFile) -> None:
    """Refuse a file that was written to since it was found: rows read from it may be cut short or mixed."""
    try:
        if found.store is None:
            stat = found.path.stat()
            now = (stat.st_size, stat.st_mtime_ns)
        else:
            info = found.store.describe(found.name)
            now = (info.size, info.version)
    except FileNotFoundError:  # (NotFound is one too)
        return  # deleted after it was opened: what was read is the whole file
    if now != (found.num_bytes, found.version):
        raise ConvertError(
            f"input {str(found.path)!r} changed while it was being converted ({found.num_bytes:,} bytes when the "
            f"conversion started, {now[0]:,} now); the rows read from it may be incomplete or mixed. Convert "
            "a copy that nothing writes to"
        )


def _last_newline(buffer: memoryview, stop: int, *, window: int = 64 << 10) -> int:
    """Index of the last b"\\n" in buffer[:stop], or -1; looks at `window` bytes at a time from the end (lines are short)."""
    while stop > 0:
        start = max(0, stop - window)
        found = buffer[start:stop].tobytes().rfind(b"\n")
        if found >= 0:
            return start + found
        stop = start
        window *= 2
    return -1


def line_pieces(found: InputFile, *, piece_bytes: int, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
    """Whole-line pieces of a file (or of its bytes [start, end), uncompressed files only), about `piece_bytes` each, without copying them.

    Each piece is read straight into a buffer of its own (workers parse
    pieces in parallel, so none is reused) after the partial line left over
    from the previous read. The buffers come from Arrow's memory pool, which
    hands back the memory of pieces already parsed: a new `bytearray` was
    zero-filled and faulted in page by page, 0.1-0.2 ms of CPU per MB on the
    thread that feeds the workers.
    """
    carry = b""
    remaining = None if end is None else end - start
    with open_decompressed(found) as f:
        if start:
            f.seek(start)
        while True:
            size = piece_bytes if remaining is None else min(piece_bytes, remaining)
            buffer = memoryview(pa.allocate_buffer(len(carry) + size)).cast("B")
            buffer[: len(carry)] = carry
            n = f.readinto(buffer[len(carry) :]) if size else 0
            filled = len(carry) + (n or 0)
            if not n:
                break
            if remaining is not None:
                remaining -= n
            cut = _last_newline(buffer, filled) + 1
            if cut == 0:  # a line longer than a piece: keep reading until it ends
                carry = bytes(buffer[:filled])
                continue
            carry = bytes(buffer[cut:filled])
            yield buffer[:cut]
    if carry:
        yield memoryview(carry + b"\n")
