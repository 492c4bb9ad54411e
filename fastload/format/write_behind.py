"""A write-behind stage: calls run one after another, in submission order, on a thread of their own.

`DatasetWriter` cuts rows into blocks on its caller's thread and hands each
block here, to be assembled, serialized into its shard, checksummed,
written and counted into the statistics. Profiling `fastload convert` of the
benchmark's 200 MB JSON Lines corpus showed that work (about 1 ms of CPU per
MB) on the thread that also reads the input and collects the parsed chunks
in order: that thread was the bound, and a second parsing worker added
nothing. Here it overlaps with both. Most of it runs without the GIL
(pyarrow's IPC writer, the CRC-32 of large buffers, the write syscall).

Every call runs on the one thread, in order, so the shards are the same bytes
as when the caller ran them itself. At most `depth` calls wait, which bounds
the memory held by blocks not yet written (each holds its rows, and the
input batches they were sliced from). The first failure is kept: later
calls are skipped, and `submit` or `drain` raise it on the caller's thread,
where the writer turns it into its usual error. `close` is for a caller
that is done or giving up (a failure, a bad input line, Ctrl-C): the call
running ends, the queued ones are dropped, the thread is joined. A
KeyboardInterrupt while the caller waits for the stage is raised, never
taken for a call's failure. What the stage deliberately does not do is
reorder, retry or run calls in parallel.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

__all__ = ["WriteBehind"]


class WriteBehind:
    """`submit(fn, *args)` runs `fn(*args)` later on this stage's thread; `drain()` waits for all of them."""

    def __init__(self, *, depth: int, name: str = "fastload-write"):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, found {depth!r}")
        self._depth = depth
        self._name = name
        self._pool: ThreadPoolExecutor | None = None  # started by the first submit
        self._pending: deque[Future] = deque()
        self._failure: BaseException | None = None

    def submit(self, fn: Callable, *args) -> None:
        """Queue `fn(*args)`; first wait while `depth` calls are queued. Raises an earlier call's failure."""
        self._raise_failure()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        while len(self._pending) >= self._depth:
            self._wait_oldest()
        self._pending.append(self._pool.submit(self._run, fn, args))

    def _run(self, fn: Callable, args: tuple) -> None:
        if self._failure is None:  # after a failure, later calls do nothing: the writer is being abandoned
            try:
                fn(*args)
            except BaseException as exc:
                self._failure = exc
                raise

    def _wait_oldest(self) -> None:
        # `exception()` waits without raising the call's failure (that is `self._failure`, raised
        # below), so whatever it does raise is the caller's own: a KeyboardInterrupt while waiting.
        # The call then stays queued, for `close` to wait for.
        self._pending[0].exception()
        self._pending.popleft()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    @property
    def busy(self) -> bool:
        """Whether a queued call has not run yet (a caller may then skip an optional one)."""
        return any(not future.done() for future in self._pending)

    def drain(self) -> None:
        """Wait until every queued call has run; raise the first failure, if any."""
        while self._pending:
            self._wait_oldest()

    def close(self) -> None:
        """Let the running call end, drop the queued ones, and join the thread; raise no failure.

        For a caller that drained already or is giving up: it has its own error to report, or got
        this stage's from `drain`/`submit` (the failure stays in `self._failure`).
        """
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
