"""An object in a store as a read-only, seekable binary file: what `fastload convert` reads URLs through.

    ObjectFile(store, name, size, sequential=True)   io.RawIOBase: readinto, seek, tell

Reading goes by ranged GETs. A *sequential* file (JSON Lines, text, CSV and
compressed streams, read front to back) fetches `WINDOW_BYTES` at a time and
asks for the next window while the caller works through this one, so the
round trip to the store overlaps parsing: one request in flight, one window
held, whatever the file's size. A random-access file (Parquet, Arrow: a
footer, then column chunks) fetches what each read asks for, at least
`_MIN_RANDOM_BYTES`, and nothing ahead.

Errors are the store's own (`StoreError`, `NotFound`, naming the URL), after
its retry policy; an object that turns out shorter than its recorded size
(rewritten meanwhile) is a `StoreError` too (`ObjectStore.get_range`).
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor

from fastload.store.base import Store

__all__ = ["ObjectFile", "WINDOW_BYTES"]

WINDOW_BYTES = 8 << 20  # one GET: as large as a conversion chunk, so each chunk costs about one round trip
_MIN_RANDOM_BYTES = 64 << 10  # Parquet's and Arrow's readers ask for a few bytes at a time around a footer


class ObjectFile(io.RawIOBase):
    def __init__(self, store: Store, name: str, size: int, *, sequential: bool = True, window_bytes: int = WINDOW_BYTES):
        super().__init__()
        self.store, self.name, self.size = store, name, size
        self.sequential, self.window_bytes = sequential, window_bytes
        self._position = 0
        self._window = memoryview(b"")
        self._window_start = 0
        self._ahead: tuple[int, Future] | None = None  # (start, the GET of the window from there)
        self._fetcher: ThreadPoolExecutor | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(buffer).cast("B")
        if self._position >= self.size or len(view) == 0:
            return 0
        offset = self._position - self._window_start
        if not 0 <= offset < len(self._window):
            self._fetch(self._position, len(view))
            offset = 0
        taken = min(len(view), len(self._window) - offset)
        view[:taken] = self._window[offset : offset + taken]
        self._position += taken
        return taken

    def _fetch(self, start: int, wanted: int) -> None:
        """Make the window start at `start`: the GET already in flight for it, or a new one."""
        if not self.sequential:
            self._window = self._get(start, max(wanted, _MIN_RANDOM_BYTES))
            self._window_start = start
            return
        if self._ahead is not None and self._ahead[0] == start:
            window = self._ahead[1].result()
        else:  # the first read, or a seek: what was fetched ahead is not wanted
            if self._ahead is not None:
                self._ahead[1].cancel()
            window = self._get(start, self.window_bytes)
        self._ahead = None
        self._window, self._window_start = window, start
        following = start + len(window)
        if following < self.size:
            if self._fetcher is None:
                self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="fastload-object-read")
            self._ahead = (following, self._fetcher.submit(self._get, following, self.window_bytes))

    def _get(self, start: int, length: int) -> memoryview:
        return memoryview(self.store.get_range(self.name, start, min(length, self.size - start))).cast("B")

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=False, cancel_futures=True)  # a GET in flight ends on its own; nobody reads it
            self._fetcher = None
        self._ahead = None
        self._window = memoryview(b"")
        super().close()
