"""Timing one run of a loader, and the memory of its process tree (from /proc; psutil is not a dependency)."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from typing import Callable

from fastload.benchmark.loaders import Batches
from fastload.benchmark.report import LoaderResult

__all__ = ["one_run", "summarize", "tree_memory_bytes", "machine_info"]

MEMORY_SAMPLE_S = 0.1  # how often peak memory is sampled; reading smaps costs about a millisecond


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # ended while we looked, or no /proc
            continue
    return found


def tree_memory_bytes() -> tuple[int, int] | None:
    """(RSS, PSS) summed over this process and its descendants, from /proc; None where /proc has no smaps_rollup."""
    if not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"):
        return None
    rss = pss = 0
    for pid in process_tree(os.getpid()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


class PeakMemory:
    def __init__(self):
        self.rss = self.pss = None
        self.last = float("-inf")

    def sample(self, force: bool = False) -> float:
        """Sample if 0.1 s have passed (or `force`); returns the seconds it took, to take off the clock."""
        now = time.perf_counter()
        if not force and now - self.last < MEMORY_SAMPLE_S:
            return 0.0
        found = tree_memory_bytes()
        if found is not None:
            self.rss, self.pss = max(self.rss or 0, found[0]), max(self.pss or 0, found[1])
        self.last = time.perf_counter()
        return self.last - now


def one_run(make: Callable[[], object], counter, *, num_batches: int) -> dict:
    peak = PeakMemory()
    with counter.get_lock():
        counter.value = 0
    started = time.perf_counter()
    batches = Batches(make())
    batch = next(batches)
    first_batch_s = time.perf_counter() - started
    del batch
    peak.sample(force=True)
    tokens = 0
    cpu_s = sampling_s = 0.0
    started = time.perf_counter()
    for _ in range(num_batches):
        c0 = time.thread_time()
        batch = next(batches)
        cpu_s += time.thread_time() - c0
        tokens += batch["input_ids"].numel()
        del batch
        sampling_s += peak.sample()
    elapsed = max(time.perf_counter() - started - sampling_s, 1e-9)
    peak.sample(force=True)
    batches.close()
    gc.collect()
    return {
        "tokens_per_s": tokens / elapsed,
        "batches_per_s": num_batches / elapsed,
        "first_batch_s": first_batch_s,
        "main_ms_per_batch": 1e3 * cpu_s / num_batches,
        "peak_rss_mb": None if peak.rss is None else peak.rss / 2**20,
        "peak_pss_mb": None if peak.pss is None else peak.pss / 2**20,
        "bytes_read": int(counter.value),
        "num_tokens": tokens,
    }


def summarize(loader: str, num_workers: int, runs: list[dict], *, num_batches: int, bytes_per_token: float) -> LoaderResult:
    def median(key):
        return statistics.median(r[key] for r in runs)

    def peak(key):
        values = [r[key] for r in runs if r[key] is not None]
        return max(values) if values else None

    # bytes read ÷ the bytes that the delivered batches (the timed ones and the first) hold
    io = statistics.median(r["bytes_read"] / (bytes_per_token * r["num_tokens"] * (num_batches + 1) / num_batches) for r in runs)
    return LoaderResult(
        loader=loader, num_workers=num_workers,
        tokens_per_s=median("tokens_per_s"),
        tokens_per_s_min=min(r["tokens_per_s"] for r in runs), tokens_per_s_max=max(r["tokens_per_s"] for r in runs),
        batches_per_s=median("batches_per_s"), first_batch_s=median("first_batch_s"), main_ms_per_batch=median("main_ms_per_batch"),
        peak_rss_mb=peak("peak_rss_mb"), peak_pss_mb=peak("peak_pss_mb"), io_amplification=io,
        num_batches=num_batches, num_tokens=runs[0]["num_tokens"], runs=tuple(runs),
    )


# ---------------------------------------------------------------- the whole benchmark


def machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
