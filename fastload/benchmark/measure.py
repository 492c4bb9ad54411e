"""Timing one run of a loader and summarizing the runs; the memory of its process tree comes from `proc`."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable

from fastload.benchmark.loaders import Batches
from fastload.benchmark.proc import PeakMemory
from fastload.benchmark.report import LoaderResult

__all__ = ["one_run", "summarize"]


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
        "peak_rss_mb": peak.rss_mb,
        "peak_pss_mb": peak.pss_mb,
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
