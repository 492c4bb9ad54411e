"""`Prefetcher`: fetches ahead along the order of first use, reads in any order within it, and ranks blocks for eviction."""

from __future__ import annotations

import threading

import numpy as np

from fastload.store.prefetch import Prefetcher


class _Recorder:
    """fetch/release callbacks that record what the prefetcher asked for."""

    def __init__(self):
        self.fetched: list[int] = []
        self.released: list[int] = []
        self._lock = threading.Lock()

    def fetch(self, block_id: int) -> None:
        with self._lock:
            self.fetched.append(block_id)

    def release(self, block_id: int) -> None:
        with self._lock:
            self.released.append(block_id)


def _prefetcher(recorder: _Recorder, num_blocks: int, *, ahead_blocks: int) -> Prefetcher:
    return Prefetcher(recorder.fetch, recorder.release, np.full(num_blocks, 100), max_inflight=1, ahead_bytes=100 * ahead_blocks)


def _settle(prefetcher: Prefetcher) -> None:
    """Wait for every fetch started so far (they start more as they end)."""
    for _ in range(100):
        with prefetcher._lock:
            futures = list(prefetcher._ahead.values())
        if all(f.done() for f in futures):
            return
        for future in futures:
            future.result(timeout=10)


def test_reading_a_later_block_first_keeps_the_earlier_ones_needed_and_fetched():
    """A window's blocks are needed together and read in any order among themselves: reading the
    window's last block must not count its first ones as read (they were then evicted and fetched twice)."""
    recorder = _Recorder()
    prefetcher = _prefetcher(recorder, 8, ahead_blocks=4)
    prefetcher.expect([0, 1, 2, 3, 4, 5])
    _settle(prefetcher)
    assert recorder.fetched == [0, 1, 2, 3]
    prefetcher.consumed(3)
    _settle(prefetcher)
    assert [prefetcher.next_use(b) for b in (0, 1, 2, 3, 4)] == [0.0, 0.0, 1.0, float("inf"), 3.0]  # places after the one read
    assert recorder.released == [3] and recorder.fetched == [0, 1, 2, 3, 4]  # one place freed: the next block, not a skip
    for block_id in (1, 0, 2):
        prefetcher.consumed(block_id)
    _settle(prefetcher)
    assert prefetcher.next_use(4) == 0.0 and prefetcher.next_use(5) == 1.0
    assert recorder.fetched == [0, 1, 2, 3, 4, 5]


def test_blocks_past_fetch_ahead_are_ranked_but_never_fetched():
    """The next epoch's blocks say what the cache keeps; fetching them now would be wasted if this epoch is the last."""
    recorder = _Recorder()
    prefetcher = _prefetcher(recorder, 8, ahead_blocks=8)
    prefetcher.expect([0, 1, 2, 5, 6, 0], fetch_ahead=3)
    _settle(prefetcher)
    assert recorder.fetched == [0, 1, 2]
    assert prefetcher.next_use(5) == 3.0 and prefetcher.next_use(7) == float("inf")
    for block_id in (0, 1, 2):
        prefetcher.consumed(block_id)
    _settle(prefetcher)
    assert recorder.fetched == [0, 1, 2]
    assert prefetcher.next_use(0) == 2.0  # read this epoch, needed again at the next one's third place: kept over block 7


def test_a_block_the_order_lists_twice_is_needed_again_after_its_first_read():
    recorder = _Recorder()
    prefetcher = _prefetcher(recorder, 4, ahead_blocks=1)
    prefetcher.expect([2, 0, 1, 2])
    prefetcher.consumed(2)
    assert prefetcher.next_use(2) == 2.0
    prefetcher.consumed(0)
    prefetcher.consumed(1)
    prefetcher.consumed(2)
    _settle(prefetcher)
    assert prefetcher.next_use(2) == float("inf")
