"""How shuffled is an order, and how much does it read? Measured, for benchmarks and tests.

Shuffle quality, over the first batches of an epoch (a uniform permutation is
the reference every order is compared with):
- `distinct_blocks_per_batch`: mean number of different source blocks in a
  global batch (uniform: about min(B, num_blocks); sequential: 1–2).
- `mean_displacement`: mean |position − storage index| / num_samples over
  the first batches (uniform: about 1/2 for a short prefix, 1/3 over a whole
  epoch; sequential: 0).
- `neighbour_block_correlation`: Pearson correlation between the source
  blocks of consecutive samples (uniform: ~0; sequential: ~1).
- `same_block_neighbours`: fraction of consecutive samples from one block.

I/O (`io_amplification`): bytes of the distinct blocks each rank touches in
an epoch ÷ dataset bytes — per rank, and summed over ranks. One means the job
reads the dataset once; W means every rank reads all of it.
"""

from __future__ import annotations

import numpy as np

from fastload.sampler.orders import EpochPlan

__all__ = [
    "distinct_blocks_per_batch",
    "mean_displacement",
    "neighbour_block_correlation",
    "same_block_neighbours",
    "io_amplification",
    "worker_reads",
    "shuffle_report",
]


def _first_positions(plan: EpochPlan, num_batches: int) -> np.ndarray:
    stop = min(plan.num_batches, num_batches) * plan.global_batch_size
    return plan.samples(0, stop)


def distinct_blocks_per_batch(plan: EpochPlan, num_batches: int = 100) -> float:
    samples = _first_positions(plan, num_batches)
    blocks = plan.block_of(samples).reshape(-1, plan.global_batch_size)
    return float(np.mean([len(np.unique(row)) for row in blocks]))


def mean_displacement(plan: EpochPlan, num_batches: int = 100) -> float:
    samples = _first_positions(plan, num_batches)
    positions = np.arange(len(samples))
    return float(np.mean(np.abs(samples - positions)) / plan.num_samples)


def neighbour_block_correlation(plan: EpochPlan, num_batches: int = 100) -> float:
    blocks = plan.block_of(_first_positions(plan, num_batches)).astype(np.float64)
    if len(blocks) < 3 or blocks[:-1].std() == 0 or blocks[1:].std() == 0:
        return 1.0
    return float(np.corrcoef(blocks[:-1], blocks[1:])[0, 1])


def same_block_neighbours(plan: EpochPlan, num_batches: int = 100) -> float:
    blocks = plan.block_of(_first_positions(plan, num_batches))
    return float(np.mean(blocks[:-1] == blocks[1:])) if len(blocks) > 1 else 1.0


def rank_blocks(plan: EpochPlan, rank: int, world_size: int, *, chunk_batches: int = 4096) -> np.ndarray:
    """Distinct blocks rank `rank` touches over the whole epoch (exact: every batch is computed)."""
    lo, hi = plan.rank_columns(rank, world_size)
    B = plan.global_batch_size
    touched = np.zeros(len(plan.block_rows), bool)
    columns = np.arange(lo, hi, dtype=np.int64)
    for first in range(0, plan.num_batches, chunk_batches):
        batches = np.arange(first, min(first + chunk_batches, plan.num_batches), dtype=np.int64)
        positions = (batches[:, None] * B + columns[None, :]).reshape(-1)
        touched[plan.block_of(plan._samples(positions))] = True
    return np.flatnonzero(touched)


def worker_reads(plan: EpochPlan, rank: int, world_size: int, num_workers: int) -> float:
    """Block reads by this rank's workers ÷ distinct blocks the rank needs (1.0: each block read once per rank)."""
    B = plan.global_batch_size
    reads = 0
    for lo, hi in plan.worker_columns(rank, world_size, num_workers):
        if hi == lo:
            continue
        columns = np.arange(lo, hi, dtype=np.int64)
        positions = (np.arange(plan.num_batches, dtype=np.int64)[:, None] * B + columns[None, :]).reshape(-1)
        reads += len(np.unique(plan.block_of(plan._samples(positions))))
    return reads / max(1, len(rank_blocks(plan, rank, world_size)))


def io_amplification(plan: EpochPlan, block_bytes: np.ndarray, world_size: int) -> tuple[list[float], float]:
    """(bytes each rank reads ÷ dataset bytes, for each rank; their sum)."""
    block_bytes = np.asarray(block_bytes, np.float64)
    total = block_bytes.sum()
    per_rank = [float(block_bytes[rank_blocks(plan, r, world_size)].sum() / total) for r in range(world_size)]
    return per_rank, float(sum(per_rank))


def shuffle_report(plan: EpochPlan, num_batches: int = 100) -> dict:
    return {
        "distinct_blocks_per_batch": distinct_blocks_per_batch(plan, num_batches),
        "mean_displacement": mean_displacement(plan, num_batches),
        "neighbour_block_correlation": neighbour_block_correlation(plan, num_batches),
        "same_block_neighbours": same_block_neighbours(plan, num_batches),
    }
