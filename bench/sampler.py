"""Sampler benchmark: planning time, shuffle quality and I/O per rank, side by side.

    python bench/sampler.py [--blocks 2048] [--rows-per-block 500] [--batch 512] [--repeats 5]

1. Planning time: an epoch of 1 billion samples in 100k blocks (`plan_epoch`)
   plus the first rank batch, median of repeats.
2. Shuffle quality over the first 100 global batches of the same layout, for
   fastload's `block_window` (default options), `uniform` and `sequential`,
   and two peer-style orders re-implemented here from their documented
   algorithms (not their code): FFCV's QUASI_RANDOM (samples shuffled inside
   each page; pages visited in random order with a buffer of 6 open pages,
   each step drawing from a random open page) and MosaicML Streaming's py1s
   (shards in random order, then samples shuffled within consecutive spans of
   `shuffle_block_size` samples; 262,144 is its default, scaled here to the
   same memory as fastload's window).
3. I/O amplification for world sizes 1, 2, 3, 4, 8: bytes each rank reads ÷
   dataset bytes, and the total over ranks (every block read once per rank
   that touches it); and, within one rank, block reads by its workers ÷ the
   blocks it needs when workers split the rank's columns (`worker_columns`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fastload.sampler import SamplerOptions, plan_epoch
from fastload.sampler.metrics import io_amplification, shuffle_report, worker_reads
from fastload.sampler.orders import EpochPlan


class ArrayPlan(EpochPlan):
    """An order given as a full array (for the peer-style baselines; fine at benchmark sizes)."""

    def __init__(self, block_rows, order: np.ndarray, name: str, global_batch_size: int):
        super().__init__(block_rows, options=SamplerOptions(drop_last=True), epoch=0, global_batch_size=global_batch_size)
        self._order, self.order = order, name

    def _samples(self, positions):
        return self._order[positions]


def ffcv_quasi_random(block_rows: np.ndarray, seed: int, buffer_pages: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(block_rows)])
    pages = [rng.permutation(np.arange(starts[b], starts[b + 1])) for b in rng.permutation(len(block_rows))]
    out, open_pages, cursor, next_page = [], [], [], 0
    while next_page < len(pages) or open_pages:
        while len(open_pages) < buffer_pages and next_page < len(pages):
            open_pages.append(pages[next_page])
            cursor.append(0)
            next_page += 1
        k = int(rng.integers(len(open_pages)))
        out.append(open_pages[k][cursor[k]])
        cursor[k] += 1
        if cursor[k] == len(open_pages[k]):
            open_pages.pop(k)
            cursor.pop(k)
    return np.asarray(out, np.int64)


def mosaic_py1s(block_rows: np.ndarray, seed: int, shuffle_block_size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(block_rows)])
    order = np.concatenate([np.arange(starts[b], starts[b + 1]) for b in rng.permutation(len(block_rows))])
    for lo in range(0, len(order), shuffle_block_size):
        rng.shuffle(order[lo : lo + shuffle_block_size])
    return order


def timed(fn, repeats: int) -> tuple[float, float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=2048)
    parser.add_argument("--rows-per-block", type=int, default=500)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    big = np.full(100_000, 10_000)
    median, lo, hi = timed(lambda: plan_epoch(big, options=SamplerOptions(), epoch=1, global_batch_size=1024).rank_batch(0, 0, 8), args.repeats)
    print(f"plan an epoch of 1,000,000,000 samples in 100,000 blocks + first batch: median {median * 1e3:.1f} ms (min {lo * 1e3:.1f}, max {hi * 1e3:.1f}; {args.repeats} runs)\n")

    rng = np.random.default_rng(0)
    rows = rng.integers(args.rows_per_block // 2, args.rows_per_block * 3 // 2, size=args.blocks)
    B = args.batch
    window = SamplerOptions().window_blocks
    plans = {
        "fastload block_window": plan_epoch(rows, options=SamplerOptions(drop_last=True), epoch=0, global_batch_size=B),
        "fastload uniform": plan_epoch(rows, options=SamplerOptions(order="uniform", drop_last=True), epoch=0, global_batch_size=B),
        "fastload sequential": plan_epoch(rows, options=SamplerOptions(order="sequential", drop_last=True), epoch=0, global_batch_size=B),
        "FFCV-style quasi-random": ArrayPlan(rows, ffcv_quasi_random(rows, 0), "ffcv", B),
        "MosaicML-style py1s": ArrayPlan(rows, mosaic_py1s(rows, 0, window * args.rows_per_block * 64), "py1s", B),
    }
    print(f"layout: {args.blocks:,} blocks of ~{args.rows_per_block} rows ({int(rows.sum()):,} samples), global batch {B}; first 100 batches")
    header = f"{'order':<26} {'blocks/batch':>12} {'displacement':>12} {'nbr corr':>9} {'same-block nbrs':>15}"
    print(header)
    print("-" * len(header))
    for name, plan in plans.items():
        r = shuffle_report(plan, 100)
        print(
            f"{name:<26} {r['distinct_blocks_per_batch']:>12.1f} {r['mean_displacement']:>12.3f} "
            f"{r['neighbour_block_correlation']:>9.3f} {r['same_block_neighbours']:>15.3f}"
        )
    print("\nI/O amplification per epoch (bytes read / dataset bytes): total over ranks, and the largest rank")
    worlds = (1, 2, 3, 4, 8)
    print(f"{'order':<26} " + " ".join(f"{'W=' + str(w):>14}" for w in worlds))
    for name in ("fastload block_window", "fastload uniform", "fastload sequential"):
        plan = plans[name]
        cells = []
        for w in worlds:
            per_rank, total = io_amplification(plan, rows, w)
            cells.append(f"{total:>6.3f} / {max(per_rank):.3f}")
        print(f"{name:<26} " + " ".join(f"{c:>14}" for c in cells))
    plan = plans["fastload block_window"]
    reads = ", ".join(f"{k} workers {worker_reads(plan, 0, 1, k):.3f}" for k in (1, 2, 4))
    print(f"\nblock_window, one rank: block reads by its workers / blocks it needs: {reads}")
    print(
        "\nblock_window: P = min(64, blocks) partitions; world sizes dividing both P and the batch read each block once"
        "\n(only blocks cut at partition boundaries twice); W=3 falls back to the same order with a little more I/O."
        "\nFFCV's QUASI_RANDOM does not support distributed training; the peer rows above are single-process orders."
    )


if __name__ == "__main__":
    main()
