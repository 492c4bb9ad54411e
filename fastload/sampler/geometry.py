"""`EpochGeometry`: how one epoch's stream of blocks is cut into partitions, windows and batch columns.

The one home of the locality-aware order's shape, shared by the row sampler
(`orders.py`, measured in rows), the packer (`packing/plan.py`, measured in
tokens) and mixtures (each source's own geometry). A *unit* is what a
position counts: a row, or a token. Nothing here looks at a sample; the
callers decide what fills a window and how it is shuffled.

    blocks (storage order) ──► this epoch's block order (permuted by block_window)
    ──► the virtual stream: the blocks' units end to end, `total_units` long
    ──► P partitions, partition p exactly num_batches · q_p · column_units long
    ──► windows of `window_blocks` consecutive blocks inside each partition
    ──► global batch b, column j: partition p's stream at b · q_p + (j − ⌊p·B/P⌋)

with column quotas q_p = ⌊(p+1)·B/P⌋ − ⌊p·B/P⌋ (they sum to B and spread
evenly) and `column_units` units per column (1 row, or seq_len + 1 tokens).
Rank r of W owns columns [r·B/W, (r+1)·B/W), so the global sequence of
batches is the same for every world size; when W divides P and B a rank's
columns are whole partitions and it reads only their blocks.

The last batch: `drop` leaves out the stream's tail past num_batches
whole batches. Otherwise there is one more batch, completed either by
wrapping (`wrap=True`, rows: the stream repeats from the epoch's first
block, and windows cover exactly the epoch's positions) or by padding past
the stream's end (`wrap=False`, tokens: windows cover the stream; positions
past it belong to no window).
"""

from __future__ import annotations

import numpy as np

from fastload.sampler import permutation
from fastload.sampler.options import SamplerOptions

__all__ = ["EpochGeometry", "DEFAULT_MAX_PARTITIONS", "partition_count", "live_blocks"]

# 64 partitions give 1, 2, 4, 8, 16, 32 and 64 ranks perfect locality on large datasets.
DEFAULT_MAX_PARTITIONS = 64


def partition_count(options: SamplerOptions, num_blocks: int) -> int:
    """Partitions an epoch of `num_blocks` blocks is cut into: only `block_window` cuts more than one."""
    if options.order != "block_window":
        return 1
    return options.num_partitions or min(DEFAULT_MAX_PARTITIONS, num_blocks)


def live_blocks(options: SamplerOptions, num_blocks: int, *, partitions: int | None = None) -> int:
    """Blocks an order has live at once, which a reader keeps decoded to read each block once an epoch:
    `uniform`, every block; otherwise two windows (a partition's current one and the next, which a
    batch straddling them reaches into) of each partition read (`partitions`; default all that
    shuffle=True cuts). Never more than the dataset's blocks."""
    if options.order == "uniform":
        return num_blocks
    if partitions is None:
        partitions = options.num_partitions or min(DEFAULT_MAX_PARTITIONS, num_blocks)
    return min(num_blocks, 2 * options.window_blocks * partitions)


class EpochGeometry:
    """The geometry of one epoch over `block_units` (units per block, storage order).

    blocks: the block ids this epoch reads (a split), sorted; None for all.
    window_blocks: blocks per window; default `options.window_blocks`.
    drop: drop the incomplete last batch (True) or complete it (False; see `wrap`).
    """

    def __init__(
        self,
        block_units: np.ndarray,
        *,
        options: SamplerOptions,
        epoch: int,
        global_batch_size: int,
        column_units: int = 1,
        drop: bool,
        wrap: bool,
        blocks: np.ndarray | None = None,
        window_blocks: int | None = None,
    ):
        self.block_units = np.asarray(block_units, np.int64)
        self.blocks = np.arange(len(self.block_units), dtype=np.int64) if blocks is None else np.asarray(blocks, np.int64)
        self.options, self.epoch = options, epoch
        self.global_batch_size, self.column_units = global_batch_size, column_units
        self.total_units = int(self.block_units[self.blocks].sum())
        batch_units = global_batch_size * column_units
        self.num_batches = self.total_units // batch_units if drop else -(-self.total_units // batch_units)
        self.num_positions = self.num_batches * batch_units
        if options.order == "block_window":
            rng = permutation.generator(options.seed, epoch, permutation.BLOCK_ORDER)
            self.block_order = self.blocks[rng.permutation(len(self.blocks))]
        else:
            self.block_order = self.blocks
        self.num_partitions = partition_count(options, len(self.blocks))
        # The virtual stream: blocks in this epoch's order, repeated when wrapping needs more.
        repeats = max(1, -(-self.num_positions // self.total_units)) if wrap and self.total_units else 1
        self.virtual_blocks = np.tile(self.block_order, repeats)
        self.virtual_starts = np.concatenate([[0], np.cumsum(self.block_units[self.virtual_blocks])])
        # Windows cover the epoch's positions when wrapping, else the whole stream (padding lies past it).
        self.stream_end = self.num_positions if wrap else self.total_units
        P, B = self.num_partitions, global_batch_size
        self.column_bounds = (np.arange(P + 1, dtype=np.int64) * B) // P  # column where partition p's quota starts
        self.partition_starts = self.num_batches * column_units * self.column_bounds
        self.window_starts = self._window_starts(options.window_blocks if window_blocks is None else window_blocks)

    def _window_starts(self, window_blocks: int) -> np.ndarray:
        """Sorted stream positions where a window starts, with `stream_end` appended: every
        partition start, then every `window_blocks` blocks counted from the partition's first block."""
        end = self.stream_end
        starts = []
        for p in range(self.num_partitions):
            a, e = int(self.partition_starts[p]), min(int(self.partition_starts[p + 1]), end)
            if a >= e:
                continue
            first = int(np.searchsorted(self.virtual_starts, a, side="right")) - 1
            inner = self.virtual_starts[first + window_blocks :: window_blocks]
            starts.append(np.concatenate([[a], inner[(inner > a) & (inner < e)]]))
        starts.append([end])
        return np.unique(np.concatenate(starts).astype(np.int64))

    @property
    def num_windows(self) -> int:
        return len(self.window_starts) - 1

    def window_of(self, positions: np.ndarray) -> np.ndarray:
        """The window holding each stream position."""
        return np.searchsorted(self.window_starts, positions, side="right") - 1

    def virtual_range(self, start: int, stop: int) -> tuple[int, int]:
        """Virtual block indices [k0, k1) whose units overlap stream positions [start, stop)."""
        k0 = int(np.searchsorted(self.virtual_starts, start, side="right")) - 1
        k1 = int(np.searchsorted(self.virtual_starts, stop, side="left"))
        return k0, k1

    def blocks_of_window(self, w: int) -> np.ndarray:
        """Block ids (storage numbering) that window `w` reads."""
        k0, k1 = self.virtual_range(int(self.window_starts[w]), int(self.window_starts[w + 1]))
        return self.virtual_blocks[k0:k1]

    # -- columns ---------------------------------------------------------------------

    def rank_columns(self, rank: int, world_size: int) -> tuple[int, int]:
        share = self.global_batch_size // world_size
        return rank * share, (rank + 1) * share

    def column_partitions(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """The partitions serving columns [lo, hi): (partition, its first column counted from lo,
        columns taken, column offset inside the partition's quota), each an int64 array."""
        c0, c1 = self.column_bounds[:-1], self.column_bounds[1:]
        a, z = np.maximum(lo, c0), np.minimum(hi, c1)
        mine = np.flatnonzero(a < z)
        return mine, a[mine] - lo, z[mine] - a[mine], a[mine] - c0[mine]

    def blocks_in_read_order(self, lo: int, hi: int, from_batch: int = 0) -> np.ndarray:
        """The blocks columns [lo, hi) read from batch `from_batch` to the epoch's end, each once, in
        order of first use: what a reader of those columns should fetch, and in which order.

        A window's blocks are all needed from the first batch that reaches into
        the window (its units are shuffled within it), so windows are ranked by
        that batch (ties: partition order) and each contributes its blocks.
        A window a batch at `from_batch` is still reading comes first.
        """
        partitions, _, taken, offset = self.column_partitions(lo, hi)
        cu = self.column_units
        quota = np.diff(self.column_bounds)[partitions] * cu  # stream units a partition advances per batch
        first = self.partition_starts[partitions] + offset * cu  # where batch 0's run starts, per partition
        length = taken * cu
        ranked = []  # (first batch using the window, partition rank, window)
        for rank, (x0, stride, n) in enumerate(zip(first.tolist(), quota.tolist(), length.tolist())):
            if n == 0 or self.num_batches <= from_batch:
                continue
            begin = x0 + from_batch * stride
            end = min(x0 + (self.num_batches - 1) * stride + n, self.stream_end)
            if begin >= end:
                continue
            w0, w1 = int(self.window_of(np.int64(begin))), int(self.window_of(np.int64(end - 1)))
            for w in range(w0, min(w1, self.num_windows - 1) + 1):
                reach = int(self.window_starts[w]) - x0 - n + 1  # the run [x0 + b·stride, +n) reaches the window from this b
                ranked.append((max(from_batch, -(-reach // stride)), rank, w))
        ranked.sort()
        if not ranked:
            return np.zeros(0, np.int64)
        blocks = np.concatenate([self.blocks_of_window(w) for _, _, w in ranked])
        _, keep = np.unique(blocks, return_index=True)
        return blocks[np.sort(keep)]

    def worker_columns(self, rank: int, world_size: int, num_workers: int) -> list[tuple[int, int]]:
        """How a rank's columns are split among its workers: one [lo, hi) per worker.

        Worker k produces columns [lo_k, hi_k) of every batch of this rank,
        so the batches themselves never depend on `num_workers`. Cuts fall on
        partition boundaries whenever the rank serves at least `num_workers`
        partitions, so each worker reads only its own partitions' blocks and a
        block is read once per rank; otherwise the columns are split evenly
        and workers may share blocks (measured by `metrics.worker_reads`).
        """
        lo, hi = self.rank_columns(rank, world_size)
        inner = np.unique(np.clip(self.column_bounds, lo, hi))
        inner = inner[(inner > lo) & (inner < hi)]
        cuts = []
        if len(inner) + 1 >= num_workers:
            previous = lo
            for k in range(1, num_workers):
                ideal = lo + k * (hi - lo) / num_workers
                candidates = inner[inner > previous]
                # leave enough boundaries for the workers still to come
                candidates = candidates[: len(candidates) - (num_workers - 1 - k)] if num_workers - 1 - k else candidates
                previous = int(candidates[np.argmin(np.abs(candidates - ideal))])
                cuts.append(previous)
        else:
            cuts = [lo + k * (hi - lo) // num_workers for k in range(1, num_workers)]
        edges = [lo, *cuts, hi]
        return list(zip(edges[:-1], edges[1:]))

    def worker_rows(self, rank: int, world_size: int, num_workers: int) -> list[tuple[int, int]]:
        """`worker_columns` counted from the rank's first column: rows [lo, hi) of the rank's batch per worker."""
        first = self.rank_columns(rank, world_size)[0]
        return [(lo - first, hi - first) for lo, hi in self.worker_columns(rank, world_size, num_workers)]
