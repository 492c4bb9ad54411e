"""`BlockCache`: complete files only, one download per block, eviction by next use, pins, no deadlock."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from fastload.store.block_cache import BlockCache


def _fetcher(counts: dict, size: int = 100):
    def fetch_for(block_id):
        def fetch():
            counts[block_id] = counts.get(block_id, 0) + 1
            return bytes([block_id % 256]) * size

        return fetch

    return fetch_for


def test_a_block_is_fetched_once_and_then_read_from_its_file(tmp_path):
    cache, counts = BlockCache(tmp_path, 10_000), {}
    fetch = _fetcher(counts)
    first = cache.get(7, 100, fetch(7))
    again = cache.get(7, 100, fetch(7))
    assert first == again == tmp_path / "7.block" and first.read_bytes() == bytes([7]) * 100
    assert counts == {7: 1} and cache.stats["downloads"] == 1 and cache.stats["hits"] == 1


def test_threads_asking_for_one_block_at_once_download_it_once(tmp_path):
    cache, counts = BlockCache(tmp_path, 10_000), {}
    gate = threading.Barrier(8)

    def slow(block_id):
        def fetch():
            counts[block_id] = counts.get(block_id, 0) + 1
            return b"x" * 100

        return fetch

    def ask():
        gate.wait()
        cache.get(3, 100, slow(3))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == {3: 1}


def test_eviction_removes_the_block_needed_furthest_in_the_future_first(tmp_path):
    cache, counts = BlockCache(tmp_path, 300), {}  # room for three blocks of 100 bytes
    fetch = _fetcher(counts)
    order = {0: 5.0, 1: 1.0, 2: 9.0, 3: 2.0}  # the next use of each block, in reads from now
    cache.next_use = lambda b: order.get(b, float("inf"))
    for b in (0, 1, 2):
        cache.get(b, 100, fetch(b))
    cache.get(3, 100, fetch(3))  # needs room: block 2 (next use 9) goes, not 0 (LRU would evict 0)
    assert sorted(p.name for p in tmp_path.glob("*.block")) == ["0.block", "1.block", "3.block"]
    assert cache.used_bytes() <= 300


def test_a_block_needed_later_than_everything_cached_stays_out_and_is_served_from_memory(tmp_path):
    cache, counts = BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    order = {0: 1.0, 1: 2.0, 2: 7.0}
    cache.next_use = lambda b: order.get(b, float("inf"))
    cache.get(0, 100, fetch(0))
    cache.get(1, 100, fetch(1))
    got = cache.get(2, 100, fetch(2))  # evicting 0 or 1 (needed sooner) would cost more downloads
    assert isinstance(got, memoryview) and bytes(got) == bytes([2]) * 100
    assert cache.stats["bypassed"] == 1 and sorted(p.name for p in tmp_path.glob("*.block")) == ["0.block", "1.block"]


def test_pinned_blocks_are_never_evicted_and_a_full_cache_of_pins_bypasses_instead_of_waiting(tmp_path):
    cache, counts = BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    for b in (0, 1):
        cache.pin(b)
        cache.get(b, 100, fetch(b))
    got = cache.get(2, 100, fetch(2))  # everything cached is pinned: no deadlock, no eviction
    assert isinstance(got, memoryview)
    assert sorted(p.name for p in tmp_path.glob("*.block")) == ["0.block", "1.block"]
    cache.unpin(0)
    assert isinstance(cache.get(3, 100, fetch(3)), type(tmp_path))  # now 0 may go
    assert not (tmp_path / "0.block").exists()


def test_two_caches_of_one_folder_in_one_process_respect_each_others_pins(tmp_path):
    """Record locks belong to the process, not the object: two `Dataset`s of one URL in a process
    share a cache folder, and one must not evict (nor unlock) the blocks the other pinned."""
    reading, evicting, counts = BlockCache(tmp_path, 200), BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    for b in (0, 1):
        reading.pin(b)
        reading.get(b, 100, fetch(b))
    got = evicting.get(2, 100, fetch(2))  # everything cached is pinned by `reading`: served from memory
    assert isinstance(got, memoryview)
    assert sorted(p.name for p in tmp_path.glob("*.block")) == ["0.block", "1.block"]


def test_threads_of_one_process_evict_one_at_a_time(tmp_path):
    """The eviction lock is a record lock, which threads of one process all hold at once: each would
    count the same excess and evict it again, and the first to finish would unlock the others' lock."""
    cache, counts = BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    cache.get(0, 100, fetch(0))
    cache.get(1, 100, fetch(1))
    inside, most, guard = [0], [0], threading.Lock()

    def next_use(block_id):  # called while evicting: how many threads are evicting now
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with guard:
            inside[0] -= 1
        return float("inf") if block_id in (0, 1) else 0.0

    cache.next_use = next_use
    start = threading.Barrier(2)

    def read(block_id):
        start.wait()
        cache.get(block_id, 100, fetch(block_id))

    threads = [threading.Thread(target=read, args=(b,)) for b in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def _pin_and_wait(folder, block_id, ready, done):
    cache = BlockCache(folder, 200)
    cache.pin(block_id)
    ready.set()
    done.wait(30)


def test_a_block_another_process_pins_is_not_evicted(tmp_path):
    cache, counts = BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    cache.get(0, 100, fetch(0))
    cache.get(1, 100, fetch(1))
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=_pin_and_wait, args=(tmp_path, 0, ready, done))
    other.start()
    try:
        assert ready.wait(30)
        cache.get(2, 100, fetch(2))  # must evict: 0 is pinned by the other process, so 1 goes
        assert (tmp_path / "0.block").exists() and not (tmp_path / "1.block").exists()
    finally:
        done.set()
        other.join(30)


def _publish_and_wait(folder, needs, ready, done):
    cache = BlockCache(folder, 300)
    words = cache.publish_schedule(4)
    for block_id, place in needs.items():
        words[1 + block_id] = place
    ready.set()
    done.wait(30)


def test_a_block_another_process_reads_soon_is_kept_over_one_nobody_reads_again(tmp_path):
    """Ranked by this process's order alone, both cached blocks are "never again" here and the older
    (0) would go; the other worker reads 0 next, so 1 goes (once it was 0, downloaded twice)."""
    cache, counts = BlockCache(tmp_path, 200), {}
    fetch = _fetcher(counts)
    cache.next_use = lambda b: 0.0 if b == 2 else float("inf")
    cache.get(0, 100, fetch(0))
    cache.get(1, 100, fetch(1))
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=_publish_and_wait, args=(tmp_path, {0: 1}, ready, done))
    other.start()
    try:
        assert ready.wait(30)
        cache.get(2, 100, fetch(2))
        assert (tmp_path / "0.block").exists() and not (tmp_path / "1.block").exists()
    finally:
        done.set()
        other.join(30)
    cache.get(3, 100, fetch(3))  # the other process is gone: its schedule no longer counts, and is removed
    assert not (tmp_path / "0.block").exists() and not list(tmp_path.glob("schedules/schedule-*"))


def _publish_as_pid(folder, pid, answers, done):
    import os

    os.getpid = lambda: pid  # a process of another container (PID namespace) that has the same number there
    cache = BlockCache(folder, 300, wait_s=5)
    try:
        words = cache.publish_schedule(4)
        words[1 + 0] = 1  # it reads block 0 next
        answers.put("published")
    except Exception as exc:
        answers.put(repr(exc))
    done.wait(30)


def test_two_processes_with_one_pid_in_two_containers_sharing_the_cache_both_publish_their_schedules(tmp_path):
    import os

    cache = BlockCache(tmp_path, 200)
    cache.publish_schedule(4)
    context = multiprocessing.get_context("fork")
    answers, done = context.Queue(), context.Event()
    other = context.Process(target=_publish_as_pid, args=(tmp_path, os.getpid(), answers, done))
    other.start()
    try:
        assert answers.get(timeout=30) == "published"
        others = cache._schedules.others()
        assert [int(words[1]) for words in others] == [1], "this process sees the other's schedule as another's"
    finally:
        done.set()
        other.join(30)


def test_a_failed_download_leaves_no_file_and_the_next_one_succeeds(tmp_path):
    cache = BlockCache(tmp_path, 10_000)

    def broken():
        raise ConnectionResetError("the server went away")

    with pytest.raises(ConnectionResetError):
        cache.get(5, 100, broken)
    assert cache.lookup(5) is None
    assert cache.get(5, 100, lambda: b"y" * 100).read_bytes() == b"y" * 100


def test_a_cache_folder_without_record_locks_is_refused_with_what_to_do(tmp_path, monkeypatch):
    import errno
    import fcntl

    from fastload.errors import ConfigError

    def no_locks(*args):  # NFS without a lock daemon, some FUSE mounts
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    cache = BlockCache(tmp_path, 10_000)
    with pytest.raises(ConfigError, match=r"cache folder .* record locks \(No locks available\).*cache_dir=, --cache-dir or FASTLOAD_CACHE_DIR"):
        cache.get(5, 100, lambda: b"y" * 100)


def _count_listings(cache: BlockCache) -> list:
    """Calls of the cache's folder listing (what an eviction costs in time that grows with the blocks), appended to the list returned."""
    cache._lock_fd()
    files, calls = cache._files, []
    listing = files.list

    def counted():
        calls.append(1)
        return listing()

    files.list = counted
    return calls


def test_an_eviction_frees_a_spare_two_percent_and_the_next_downloads_do_not_list_the_folder(tmp_path):
    cache, counts = BlockCache(tmp_path, 2000), {}  # 200 blocks of 10 bytes; 2% spare: 4 blocks
    fetch = _fetcher(counts, size=10)
    cache.next_use = lambda b: 0.0 if b >= 200 else float(1000 - b)  # the lowest ids are needed last
    listings = _count_listings(cache)
    for b in range(200):
        cache.get(b, 10, fetch(b))
    assert len(listings) == 1, "filling an empty cache counts the folder once, then takes room from the account"
    cache.get(200, 10, fetch(200))  # full: one listing evicts the incoming block's 10 bytes and 40 spare
    assert len(listings) == 2 and cache.stats["evictions"] == 5
    assert [b for b in range(5) if (tmp_path / f"{b}.block").exists()] == [], "the blocks needed last went"
    for b in range(201, 205):
        cache.get(b, 10, fetch(b))
    assert len(listings) == 2, "the spare room served four downloads without a listing"
    cache.get(205, 10, fetch(205))
    assert len(listings) == 3 and cache.stats["evictions"] == 10 and cache.used_bytes() == 1960


def test_a_small_cache_frees_no_more_than_the_incoming_block(tmp_path):
    cache, counts = BlockCache(tmp_path, 490), {}  # 2% of 490 bytes is less than a block of 10
    fetch = _fetcher(counts, size=10)
    for b in range(50):
        cache.get(b, 10, fetch(b))
    assert cache.stats["evictions"] == 1 and cache.used_bytes() == 490


def _take_room_elsewhere(folder, block_ids, done):
    cache = BlockCache(folder, 2000)
    for b in block_ids:
        cache.get(b, 10, lambda: b"z" * 10)
    done.put(cache.stats["evictions"])


def test_the_account_is_the_nodes_a_listing_in_one_process_serves_downloads_in_another(tmp_path):
    cache, counts = BlockCache(tmp_path, 2000), {}
    fetch = _fetcher(counts, size=10)
    for b in range(200):
        cache.get(b, 10, fetch(b))
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    other = context.Process(target=_take_room_elsewhere, args=(tmp_path, [200], done))
    other.start()
    assert done.get(timeout=30) == 5  # the other process listed the full cache and freed 4 spare blocks
    other.join(30)
    listings = _count_listings(cache)
    for b in range(201, 205):
        cache.get(b, 10, fetch(b))
    assert listings == [] and cache.stats["evictions"] == 0 and cache.used_bytes() == 2000


def test_an_account_counted_for_another_capacity_is_not_trusted(tmp_path):
    large, counts = BlockCache(tmp_path, 2000), {}
    fetch = _fetcher(counts, size=10)
    for b in range(100):
        large.get(b, 10, fetch(b))  # the account says 1000 bytes free, for a capacity of 2000
    small = BlockCache(tmp_path, 1000)  # a process configured with less, on the same folder
    small.get(100, 10, fetch(100))
    assert small.used_bytes() <= 1000


def test_bytes_taken_by_a_download_that_never_finished_are_given_back_by_the_next_listing(tmp_path):
    cache, counts = BlockCache(tmp_path, 2000), {}
    fetch = _fetcher(counts, size=10)
    for b in range(100):
        cache.get(b, 10, fetch(b))
    listings = _count_listings(cache)
    for _ in range(100):  # the account's 1000 bytes, taken by processes killed before their blocks were written
        assert cache._make_room(10_000, 10)
    assert listings == []
    cache.get(100, 10, fetch(100))  # the account is empty; the folder has room: nothing is evicted
    assert len(listings) == 1 and cache.stats["evictions"] == 0 and (tmp_path / "100.block").exists()
    for b in range(101, 190):
        cache.get(b, 10, fetch(b))
    assert len(listings) == 1, "the listing set the account to the folder's room again"
