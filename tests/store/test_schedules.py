"""`Schedules`: the other processes' published schedules, read when the cache evicts, and let go of when they go."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastload.store.schedules import NOT_NEEDED, SUBFOLDER, Schedules


def _mapped_removed(path: Path) -> list[str]:
    """Lines of this process's memory map that still map `path` after it was removed."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if str(path) in line and line.rstrip().endswith("(deleted)")]


def test_a_schedule_whose_file_is_gone_is_no_longer_mapped(tmp_path):
    (tmp_path / SUBFOLDER).mkdir()
    path = tmp_path / SUBFOLDER / "schedule-4242.i64"  # as `publish_schedule` leaves it: 1 + num_blocks int64 words
    path.write_bytes(np.full(1 + 1000, NOT_NEEDED, np.int64).tobytes())
    schedules = Schedules(tmp_path, is_alive=lambda pid: True)
    assert len(schedules.others()) == 1
    # Its owner exited (its atexit removes it) or another process found it dead and removed it: a
    # process that evicts for days sees worker after worker come and go, each schedule num_blocks words.
    path.unlink()
    assert schedules.others() == []
    assert _mapped_removed(path) == []


def _next_use_one_at_a_time(block_id: int, schedules: list[np.ndarray]) -> float:
    """The definition, block by block: the soonest next place among the schedules, counted after the places each has read."""
    soonest = float("inf")
    for words in schedules:
        if block_id + 1 < len(words) and words[block_id + 1] != NOT_NEEDED:
            soonest = min(soonest, float(max(0, int(words[block_id + 1]) - int(words[0]))))
    return soonest


def test_next_uses_of_many_blocks_at_once_are_each_blocks_soonest_use_in_any_schedule(tmp_path):
    rng = np.random.default_rng(3)
    schedules = []
    for num_blocks in (50, 80, 80, 30):  # shorter ones: another dataset version's, or a torn-down file
        words = rng.integers(NOT_NEEDED, 200, 1 + num_blocks).astype(np.int64)
        words[0] = rng.integers(0, 100)  # places read: some next uses are due already
        schedules.append(words)
    block_ids = np.arange(100)  # some past every schedule's end
    got = Schedules(tmp_path, is_alive=lambda pid: True).next_uses(block_ids, schedules)
    assert got.tolist() == [_next_use_one_at_a_time(b, schedules) for b in block_ids.tolist()]
    assert Schedules(tmp_path, is_alive=lambda pid: True).next_uses(block_ids, []).tolist() == [float("inf")] * 100


def _publish_and_die_before_renaming(folder):
    import os
    import signal

    from fastload.store.block_cache import BlockCache

    os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed between writing and renaming
    BlockCache(folder, 100).publish_schedule(1000)


def test_the_partial_schedule_of_a_process_killed_before_renaming_it_is_removed(tmp_path):
    import multiprocessing

    from fastload.store.block_cache import BlockCache

    context = multiprocessing.get_context("fork")
    killed = context.Process(target=_publish_and_die_before_renaming, args=(tmp_path,))
    killed.start()
    killed.join(30)
    assert killed.exitcode == -9 and len(list((tmp_path / SUBFOLDER).glob(".schedule-*.partial"))) == 1
    cache = BlockCache(tmp_path, 100)
    cache._lock_fd()
    assert cache._schedules.others() == []
    assert list((tmp_path / SUBFOLDER).iterdir()) == []


def test_a_partial_schedule_whose_writer_is_alive_is_left_to_it(tmp_path):
    (tmp_path / SUBFOLDER).mkdir()
    partial = tmp_path / SUBFOLDER / ".schedule-77.i64.partial"
    partial.write_bytes(b"\0" * 64)
    assert Schedules(tmp_path, is_alive=lambda slot: True).others() == [] and partial.exists()
