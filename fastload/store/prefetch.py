"""`Prefetcher`: fetch blocks ahead in the order this process will read them.

The sampler knows a rank's whole future order, so the reader is told it
(`expect(order)`: block ids in order of first use) instead of guessing from
past reads. Background threads walk the order from the read cursor,
keeping at most `max_inflight` requests open and at most `ahead_bytes` of
blocks fetched but not yet read; each fetched block is pinned in the cache
until it is read (or the order changes). A resume that starts mid-epoch is
given the order from its batch, so it fetches only what the next batches read.

The order is the order of *first use*, not of reads: a window's blocks are
all needed from the batch that reaches the window, and its units are
shuffled, so they are read in any order among themselves. So a read marks
only that block's place in the order as done (`consumed`), and the cursor is
the first place not yet done; a read never skips the blocks before it.
(It used to: reading the last block of a window moved the cursor past the
window's other blocks, which were then neither fetched ahead nor ranked as
still needed, so the cache evicted them before their read and they were
downloaded twice: 1.17x the bytes of an epoch in `bench/remote.py`.)

`next_use(block_id)` ranks blocks for the cache's eviction: how many places
after the number of places read so far the block's next unread place is (0
when it is due already), infinity when this process will not read it again.
Counted from the places read, not from the cursor: one block of a window
left unread until late would hold the cursor back and make every later need
of this process look further off than the other processes' (`schedules.py`
compares them).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

__all__ = ["Prefetcher"]


class Prefetcher:
    """Fetches `fetch(block_id)` ahead of `consumed(block_id)` calls, following `expect(order)`.

    fetch: downloads a block into the cache and pins it (returns nothing; raises on failure);
    release: unpins a block fetched ahead;
    block_bytes: bytes of each block (to bound what is ahead).
    """

    def __init__(self, fetch: Callable[[int], None], release: Callable[[int], None], block_bytes: np.ndarray, *, max_inflight: int = 8,
                 ahead_bytes: int = 256 << 20, published: np.ndarray | None = None):
        self.fetch, self.release = fetch, release
        self.published = published  # where the node sees this schedule (`schedules.py`): kept equal to next_use
        self.block_bytes = np.asarray(block_bytes, np.int64)
        self.max_inflight, self.ahead_bytes = max(1, max_inflight), max(1, ahead_bytes)
        self._lock = threading.RLock()  # a done callback may run at once, inside _fill
        self._order = np.zeros(0, np.int64)
        self._places: dict[int, list[int]] = {}  # block id -> its positions in the order, ascending
        self._unread: dict[int, int] = {}  # block id -> index into its places of the first one not yet read
        self._read = np.zeros(0, bool)  # per position: read
        self._cursor = 0  # first position of the order not yet read
        self._num_read = 0  # places of the order read so far: how far this process has got
        self._fetch_end = 0  # positions from here on are known, not fetched ahead
        self._filling = self._again = False  # in `_fill`, and another pass asked for meanwhile
        self._next = 0  # next position to fetch
        self._ahead: dict[int, Future] = {}  # block id -> its fetch, until read
        self._pool: ThreadPoolExecutor | None = None
        self._pid = None
        self.errors: dict[int, BaseException] = {}

    def __getstate__(self):
        raise TypeError("a Prefetcher belongs to one process; the dataset makes one in each")

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pid != os.getpid():  # threads do not survive fork: start this process's own
            self._pool, self._pid = ThreadPoolExecutor(self.max_inflight, thread_name_prefix="fastload-prefetch"), os.getpid()
            self._ahead = {}
        return self._pool

    def expect(self, order: Sequence[int], *, fetch_ahead: int | None = None) -> None:
        """From now on this process reads `order` (block ids, in order of first use); fetching follows it.

        Only its first `fetch_ahead` places (all by default) are fetched ahead; the rest only rank what
        the cache keeps (`next_use`). The datasets pass the rest of this epoch as those, and the next
        epoch after them: a block of the next epoch fetched now is wasted if this epoch is the last or
        the cache evicts it before then, while knowing that it comes back soon keeps it cached.
        """
        order = np.asarray(order, np.int64)
        with self._lock:
            keep = set(order.tolist())
            for block_id in [b for b in self._ahead if b not in keep]:
                self._drop(block_id)
            self._order = order
            self._places, self._unread = {}, {}
            for i, block_id in enumerate(order.tolist()):
                self._places.setdefault(block_id, []).append(i)
            self._read = np.zeros(len(order), bool)
            self._cursor = self._next = self._num_read = 0
            if self.published is not None:
                words = np.full(len(self.published), -1, np.int64)
                words[0] = 0
                for block_id, places in self._places.items():
                    words[1 + block_id] = places[0]
                self.published[:] = words
            self._fetch_end = len(order) if fetch_ahead is None else max(0, min(int(fetch_ahead), len(order)))
            self._fill()

    def _next_place(self, block_id: int) -> int | None:
        """The block's first position in the order not yet read; None when it has none."""
        places = self._places.get(block_id)
        k = self._unread.get(block_id, 0)
        return None if places is None or k >= len(places) else places[k]

    def next_use(self, block_id: int) -> float:
        position = self._next_place(block_id)
        return float("inf") if position is None else float(max(0, position - self._num_read))

    def consumed(self, block_id: int) -> None:
        """The reader has this block now: its pin is released and fetching moves past it."""
        with self._lock:
            if block_id in self._ahead:
                self._drop(block_id)
            position = self._next_place(block_id)
            if position is not None:
                self._read[position] = True
                self._num_read += 1
                self._unread[block_id] = self._unread.get(block_id, 0) + 1
                while self._cursor < len(self._read) and self._read[self._cursor]:
                    self._cursor += 1
                if self.published is not None:
                    following = self._next_place(block_id)
                    self.published[1 + block_id] = -1 if following is None else following
                    self.published[0] = self._num_read
                self._next = max(self._next, self._cursor)
            self._fill()

    def wait(self, block_id: int) -> BaseException | None:
        """Wait for a fetch of `block_id` under way to end; its error, if it failed (the reader raises it
        rather than trying again: the fetch already spent its retries)."""
        with self._lock:
            future = self._ahead.get(block_id)
        return None if future is None else future.exception()

    def _drop(self, block_id: int) -> None:
        future = self._ahead.pop(block_id)
        future.add_done_callback(lambda f, b=block_id: f.exception() is None and self.release(b))

    def _fill(self) -> None:
        """Start fetches from `_next` while under both limits (called with the lock held).

        A fetch that ends at once (a block already cached) runs its done callback inside `submit`, on
        this thread, which holds the lock: that call only asks for another pass, rather than filling
        from inside this one's loop (it did, and the outer loop then stepped past a block it had not
        fetched, which was read on demand instead).
        """
        if self._filling:
            self._again = True
            return
        self._filling = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._fill_pass()
        finally:
            self._filling = False

    def _fill_pass(self) -> None:
        pool = self._executor()
        ahead = sum(int(self.block_bytes[b]) for b in self._ahead)
        running = sum(not f.done() for f in self._ahead.values())
        while self._next < self._fetch_end and running < self.max_inflight:
            block_id = int(self._order[self._next])
            if block_id in self._ahead or self._next_place(block_id) != self._next:  # read already, or read before this place
                self._next += 1
                continue
            size = int(self.block_bytes[block_id])
            if ahead + size > self.ahead_bytes and self._ahead:
                break
            self._next += 1
            ahead += size
            running += 1
            self._ahead[block_id] = future = pool.submit(self.fetch, block_id)
            future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._fill()
