"""Chunk work on threads: results in input order, a bounded number in flight, and a prompt stop.

A chunk is up to 8 MiB of input to parse and tokenize, seconds of work.
With a bare `ThreadPoolExecutor`, Ctrl-C (or an error in the pipeline) took
5–6 s to stop a conversion: leaving the pool's `with` block waited for every
chunk already submitted, and the interpreter joins the pool's threads before
exiting anyway. Here a stop cancels the chunks not yet started, and running
ones stop at their next `check()`: before and after parsing, and between
slices of about `SLICE_BYTES` of text while tokenizing (`SlicedTokenizer`),
so a stop waits for at most one slice per thread.

The threads stay ordinary (non-daemon) and are joined: a daemon thread could
still be inside pyarrow or Numba while the interpreter tears down. The
trade-off is one tokenizer call per slice instead of per chunk, which costs
nothing measurable (see `SLICE_BYTES`), and the output is the same, since
documents are tokenized independently.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["OrderedThreads", "SlicedTokenizer", "Stopped", "SLICE_BYTES"]

# Text tokenized between two stop checks: ~0.1 s for one thread on a slow
# core; per-call overhead at this size is well under 1 % of the work.
SLICE_BYTES = 256 << 10


class Stopped(Exception):
    """Raised inside chunk work whose conversion is stopping; nobody reads it."""


class OrderedThreads:
    """`map(fn, items)` on `workers` threads, at most `depth` items in flight, yielded in input order.

    Use as a context manager: leaving it by an exception (KeyboardInterrupt
    included) cancels what has not started and waits only for running items
    to reach their next `check()`.
    """

    def __init__(self, workers: int, *, depth: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastload-convert")
        self._stop = threading.Event()
        self._depth = depth

    def check(self) -> None:
        """Raise `Stopped` when the conversion is stopping; chunk work calls this between its steps."""
        if self._stop.is_set():
            raise Stopped

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        in_flight: deque[Future] = deque()
        for item in items:
            in_flight.append(self._pool.submit(fn, item))
            if len(in_flight) >= self._depth:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()

    def __enter__(self) -> "OrderedThreads":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


class SlicedTokenizer:
    """A tokenizer whose `encode_arrow` works through slices of about `slice_bytes` of text, calling `check()` before each.

    Every other attribute is the wrapped tokenizer's. The ids and offsets are
    exactly those of one `encode_arrow` call over the whole column.
    """

    def __init__(self, tokenizer, check: Callable[[], None], *, slice_bytes: int = SLICE_BYTES):
        self._tokenizer = tokenizer
        self._check = check
        self._slice_bytes = slice_bytes

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)

    def encode_arrow(self, arr) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        cuts = _slice_cuts(arr, self._slice_bytes)
        if len(cuts) <= 2:
            self._check()
            return self._tokenizer.encode_arrow(arr)
        ids_parts, offset_parts, base = [], [np.zeros(1, np.int64)], 0
        for start, stop in zip(cuts[:-1], cuts[1:]):
            self._check()
            ids, offsets = self._tokenizer.encode_arrow(arr.slice(start, stop - start))
            ids_parts.append(ids)
            offset_parts.append(offsets[1:] + base)
            base += ids.shape[0]
        return np.concatenate(ids_parts), np.concatenate(offset_parts)


def _slice_cuts(arr: pa.Array, slice_bytes: int) -> np.ndarray:
    """Row indices 0 = c0 < c1 < ... < ck = len(arr) cutting `arr` into runs of about `slice_bytes` (a longer row is a run of its own)."""
    n = len(arr)
    if n == 0:
        return np.array([0, 0])
    ends = np.cumsum(pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64))
    targets = np.arange(slice_bytes, int(ends[-1]), slice_bytes, dtype=np.int64)
    inner = np.searchsorted(ends, targets, side="left") + 1  # the row that crosses a target ends its run
    return np.unique(np.concatenate([[0], np.clip(inner, 1, n), [n]]))
