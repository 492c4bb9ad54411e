"""`Schedules`: the other processes' published schedules, read when the cache evicts, and let go of when they go."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastload.store.schedules import NOT_NEEDED, Schedules


def _mapped_removed(path: Path) -> list[str]:
    """Lines of this process's memory map that still map `path` after it was removed."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if str(path) in line and line.rstrip().endswith("(deleted)")]


def test_a_schedule_whose_file_is_gone_is_no_longer_mapped(tmp_path):
    path = tmp_path / "schedule-4242.i64"  # as `publish_schedule` leaves it: 1 + num_blocks int64 words
    path.write_bytes(np.full(1 + 1000, NOT_NEEDED, np.int64).tobytes())
    schedules = Schedules(tmp_path, is_alive=lambda pid: True)
    assert len(schedules.others()) == 1
    # Its owner exited (its atexit removes it) or another process found it dead and removed it: a
    # process that evicts for days sees worker after worker come and go, each schedule num_blocks words.
    path.unlink()
    assert schedules.others() == []
    assert _mapped_removed(path) == []
