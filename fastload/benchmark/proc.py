"""What a benchmark reads about the machine and its own process tree: memory from /proc, and `machine_info`.

    peak = PeakMemory()
    cost_s = peak.sample()            # at most every 0.1 s; returns its own cost, to take off the clock
    peak.pss_mb, peak.rss_mb          # peaks summed over this process and all its descendants (None without /proc)
    tree_memory_bytes()               # TreeMemory(pss=..., rss=...) now, or None
    tree_cpu_seconds()                # CPU (user + system) of this process and its live descendants so far, or None
    machine_info()                    # date, cpus, python, platform, memory, load average

Both `fastload bench` (`fastload.benchmark.measure`) and the peer comparisons
in the repository's `bench/` (through `bench/_harness.py`) measure with this
module, so it imports nothing but the standard library: a benchmark process
of torch, LitData or Hugging Face datasets that imports it loads no numpy,
pyarrow or Numba that would add to the memory it reports (`fastload` and
`fastload.benchmark` import their names on first use; a test checks).

Linux only, deliberately: the figures come from /proc/<pid>/smaps_rollup
(psutil is not a dependency). Elsewhere the
readings are None and the tables leave those cells empty. PSS counts a page
shared by several processes (a memory map, shared memory) once in total;
RSS counts it once per process, so it overstates what mapped files and
shared batches cost; both are given.
"""

from __future__ import annotations

import os
import platform
import time
from typing import NamedTuple

__all__ = ["TreeMemory", "process_tree", "tree_memory_bytes", "tree_cpu_seconds", "PeakMemory", "machine_info"]

MEMORY_SAMPLE_S = 0.1  # reading smaps of a process tree costs about a millisecond: sample by time, off the clock


class TreeMemory(NamedTuple):
    """Bytes summed over a process tree."""

    pss: int
    rss: int


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (their ids, from /proc/<pid>/task/<tid>/children); `[pid]` without /proc."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # the process ended while we looked, or there is no /proc
            continue
    return found


def tree_memory_bytes(pid: int | None = None) -> TreeMemory | None:
    """PSS and RSS summed over process `pid` (default: this one) and its descendants; None where /proc has no smaps_rollup."""
    pid = os.getpid() if pid is None else pid
    if not os.path.exists(f"/proc/{pid}/smaps_rollup"):
        return None
    pss = rss = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
        except OSError:  # ended while we looked
            continue
    return TreeMemory(pss=pss, rss=rss)


def tree_cpu_seconds(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) used so far by process `pid` (default: this one) and its live descendants;
    None without /proc. The difference of two readings is what a stretch of work cost every process of a
    loader (the training process and its workers), which a wall clock on a shared machine cannot give.

    Read in nanoseconds from each thread's /proc/<pid>/task/<tid>/schedstat (time on a CPU) where there is
    one: /proc/<pid>/stat counts clock ticks of 10 ms, and over 1,500 batches that is ±7 µs a batch per
    process, as much as the 5% a mixture may cost. Threads that ended between two readings are not counted
    then (stat's ticks include them): read around work whose threads live throughout, as a loader's do."""
    pid = os.getpid() if pid is None else pid
    if not os.path.exists(f"/proc/{pid}/stat"):
        return None
    total = 0.0
    for p in process_tree(pid):
        total += _process_cpu_seconds(p)
    return total


def _process_cpu_seconds(pid: int) -> float:
    """One process's CPU seconds: its threads' schedstat (ns), or its stat's ticks without schedstat; 0 once it has ended."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
        if os.path.exists(f"/proc/{pid}/task/{threads[0]}/schedstat"):
            ns = 0
            for tid in threads:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        ns += int(f.read().split()[0])
                except OSError:  # the thread ended while we looked
                    continue
            return ns / 1e9
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15 of proc(5)
    except (OSError, IndexError):  # ended while we looked
        return 0.0


class PeakMemory:
    """The peak of `tree_memory_bytes()` over this process tree, sampled at most every 0.1 s (`pss`, `rss`: bytes or None)."""

    def __init__(self):
        self.pss: int | None = None
        self.rss: int | None = None
        self.last = float("-inf")

    def sample(self, *, force: bool = False) -> float:
        """Sample if 0.1 s have passed since the last sample (or `force`); returns the seconds it took, to take off the clock."""
        now = time.perf_counter()
        if not force and now - self.last < MEMORY_SAMPLE_S:
            return 0.0
        found = tree_memory_bytes()
        if found is not None:
            self.pss, self.rss = max(self.pss or 0, found.pss), max(self.rss or 0, found.rss)
        self.last = time.perf_counter()
        return self.last - now

    @property
    def pss_mb(self) -> float | None:
        return None if self.pss is None else self.pss / 2**20

    @property
    def rss_mb(self) -> float | None:
        return None if self.rss is None else self.rss / 2**20


def machine_info() -> dict:
    """The machine a result came from: date, cpus, python, platform, memory and the 1-minute load average."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": _memory_gb(),
        # above `cpus`, other work shared the machine while it was measured
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _memory_gb() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name
        return None
    return round(pages * page_size / 2**30, 1)
