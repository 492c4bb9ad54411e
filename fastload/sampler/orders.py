"""Epoch orders: pure functions from (layout, options, epoch, global batch) to a sample order.

An epoch is a sequence of `num_batches` global batches of `B` samples; global
position `v = b * B + j` (batch b, column j) holds one sample id. An
`EpochPlan` computes the sample ids of any range of positions on demand,
vectorised, from O(number of blocks) state — never a list of every sample.
Rank r of W receives columns [r·B/W, (r+1)·B/W) of every global batch, so the
global sequence of batches is the same for every world size.

The orders (registry `ORDERS`, names validated in `options.py`):

`block_window` (the default)::

    blocks, permuted per epoch ─► one virtual sequence of all samples
    ──► cut into P contiguous partitions, partition p sized num_batches · q_p
    ──► each partition shuffled within consecutive windows of `window_blocks` blocks
    ──► global batch b = q_0 samples of partition 0's stream, then q_1 of partition 1's, …

  with quotas q_p = ⌊(p+1)·B/P⌋ − ⌊p·B/P⌋ (they sum to B and spread evenly).
  A window holds `window_blocks` consecutive blocks of a partition, so each
  partition's stream reads each of its blocks once, with at most two windows
  live at a time. Columns of partition p are [⌊p·B/P⌋, ⌊(p+1)·B/P⌋): when W
  divides both P and B, rank r's columns are exactly the partitions
  [r·P/W, (r+1)·P/W), so each rank reads only its partitions' blocks (about
  1/W of the dataset; a block cut by a partition boundary is read by both
  sides). For other W the order is unchanged and still correct; a rank then
  also reads the blocks of the partitions its columns share with its
  neighbours (measured by `metrics.io_amplification`).

`uniform`: a uniformly random permutation of all samples (a keyed Feistel
bijection, so it too is O(1) state). Every batch reads ~B random blocks.

`sequential`: storage order, no shuffle.

Padding (drop_last=False): positions past the last sample wrap around to the
start of the epoch's virtual sequence, so the last batch is completed with
samples repeated from the beginning of the epoch. drop_last=True drops the
tail of the virtual sequence instead (in `block_window`, the samples of the
blocks that came last in this epoch's block order; different every epoch).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from fastload.errors import ConfigError
from fastload.sampler import permutation
from fastload.sampler.options import SamplerOptions

__all__ = ["EpochPlan", "plan_epoch", "ORDERS"]

DEFAULT_MAX_PARTITIONS = 64


class EpochPlan:
    """The order of one epoch. Subclasses implement `_samples(positions)`."""

    order = ""

    def __init__(self, block_rows: np.ndarray, *, options: SamplerOptions, epoch: int, global_batch_size: int):
        self.block_rows = np.asarray(block_rows, np.int64)
        self.block_starts = np.concatenate([[0], np.cumsum(self.block_rows)])
        self.num_samples = int(self.block_starts[-1])
        self.options = options
        self.epoch = epoch
        self.global_batch_size = global_batch_size
        if options.drop_last:
            self.num_batches = self.num_samples // global_batch_size
        else:
            self.num_batches = -(-self.num_samples // global_batch_size)
        self.num_positions = self.num_batches * global_batch_size
        self.num_partitions = 1

    # -- columns and partitions ---------------------------------------------

    @property
    def column_bounds(self) -> np.ndarray:
        """(P + 1,) batch columns where each partition's quota starts: ⌊p·B/P⌋."""
        P, B = self.num_partitions, self.global_batch_size
        return (np.arange(P + 1, dtype=np.int64) * B) // P

    def rank_columns(self, rank: int, world_size: int) -> tuple[int, int]:
        share = self.global_batch_size // world_size
        return rank * share, (rank + 1) * share

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
        bounds = self.column_bounds
        inner = np.unique(np.clip(bounds, lo, hi))
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

    # -- sample ids ----------------------------------------------------------

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Sample ids at global positions [start, stop) of this epoch, as int64."""
        if not 0 <= start <= stop <= self.num_positions:
            raise IndexError(f"positions [{start}, {stop}) outside the epoch's [0, {self.num_positions})")
        return self._samples(np.arange(start, stop, dtype=np.int64))

    def global_batch(self, batch: int) -> np.ndarray:
        B = self.global_batch_size
        return self.samples(batch * B, (batch + 1) * B)

    def rank_batch(self, batch: int, rank: int, world_size: int) -> np.ndarray:
        lo, hi = self.rank_columns(rank, world_size)
        B = self.global_batch_size
        return self.samples(batch * B + lo, batch * B + hi)

    def _samples(self, positions: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_of(self, sample_ids: np.ndarray) -> np.ndarray:
        """The block holding each sample id (storage order)."""
        return np.searchsorted(self.block_starts, sample_ids, side="right") - 1


class SequentialPlan(EpochPlan):
    order = "sequential"

    def _samples(self, positions: np.ndarray) -> np.ndarray:
        return positions % self.num_samples


class UniformPlan(EpochPlan):
    order = "uniform"

    def __init__(self, block_rows, *, options, epoch, global_batch_size):
        super().__init__(block_rows, options=options, epoch=epoch, global_batch_size=global_batch_size)
        rng = permutation.generator(options.seed, epoch, permutation.UNIFORM)
        self._permutation = permutation.FeistelPermutation(self.num_samples, rng)

    def _samples(self, positions: np.ndarray) -> np.ndarray:
        return self._permutation(positions % self.num_samples)


class BlockWindowPlan(EpochPlan):
    order = "block_window"

    def __init__(self, block_rows, *, options, epoch, global_batch_size):
        super().__init__(block_rows, options=options, epoch=epoch, global_batch_size=global_batch_size)
        num_blocks = len(self.block_rows)
        self.num_partitions = options.num_partitions or min(DEFAULT_MAX_PARTITIONS, num_blocks)
        rng = permutation.generator(options.seed, epoch, permutation.BLOCK_ORDER)
        order = rng.permutation(num_blocks)
        # The virtual sequence: blocks in this epoch's order, repeated when padding needs more.
        repeats = max(1, -(-self.num_positions // self.num_samples))
        self.virtual_blocks = np.tile(order, repeats)  # (repeats·num_blocks,) block id at each virtual block index
        self.virtual_starts = np.concatenate([[0], np.cumsum(self.block_rows[self.virtual_blocks])])
        # Partition p occupies virtual positions [partition_starts[p], partition_starts[p+1]).
        self.partition_starts = self.num_batches * self.column_bounds
        self.window_starts = self._window_starts()
        self._windows: OrderedDict[int, np.ndarray] = OrderedDict()
        # A partition's stream has at most two windows live (its current one and the next),
        # so this many cached permutations never regenerate one during an epoch.
        self._cached_windows = 2 * self.num_partitions + 2

    def _window_starts(self) -> np.ndarray:
        """Sorted virtual positions where a window starts: every partition start, then every
        `window_blocks` blocks counted from the partition's first block."""
        starts = []
        wb = self.options.window_blocks
        for p in range(self.num_partitions):
            a, e = int(self.partition_starts[p]), int(self.partition_starts[p + 1])
            if a == e:
                continue
            first = int(np.searchsorted(self.virtual_starts, a, side="right")) - 1
            last = int(np.searchsorted(self.virtual_starts, e, side="left"))
            inner = self.virtual_starts[first + wb : last : wb]
            starts.append(np.concatenate([[a], inner[inner < e]]))
        starts.append([self.num_positions])
        return np.concatenate(starts).astype(np.int64)

    def _window(self, w: int) -> np.ndarray:
        cached = self._windows.get(w)
        if cached is None:
            size = int(self.window_starts[w + 1] - self.window_starts[w])
            rng = permutation.generator(self.options.seed, self.epoch, permutation.WINDOW, w)
            cached = rng.permutation(size).astype(np.int32 if size < 2**31 else np.int64)
            self._windows[w] = cached
            if len(self._windows) > self._cached_windows:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(w)
        return cached

    def stream_to_virtual(self, partitions: np.ndarray, stream: np.ndarray) -> np.ndarray:
        """Virtual positions of stream index `stream` of each partition, after the window shuffle."""
        linear = self.partition_starts[partitions] + stream
        windows = np.searchsorted(self.window_starts, linear, side="right") - 1
        order = np.argsort(windows, kind="stable")  # group positions by window: O(n), not O(n × windows)
        sorted_windows = windows[order]
        cuts = np.flatnonzero(np.diff(sorted_windows)) + 1
        out = np.empty_like(linear)
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(order)]])):
            w = int(sorted_windows[lo])
            start = self.window_starts[w]
            idx = order[lo:hi]
            out[idx] = start + self._window(w)[linear[idx] - start]
        return out

    def rank_batch(self, batch: int, rank: int, world_size: int) -> np.ndarray:
        """One rank's share of a batch: per partition a contiguous run of its stream, so slices of
        the cached window permutations rather than a lookup per sample."""
        lo, hi = self.rank_columns(rank, world_size)
        bounds = self.column_bounds
        first = int(np.searchsorted(bounds, lo, side="right")) - 1
        pieces = []
        for p in range(first, self.num_partitions):
            c0, c1 = int(bounds[p]), int(bounds[p + 1])
            if c0 >= hi:
                break
            a, z = max(lo, c0), min(hi, c1)
            if a >= z:
                continue
            quota = c1 - c0
            linear = int(self.partition_starts[p]) + batch * quota + (a - c0)
            end = linear + (z - a)
            while linear < end:  # a run crosses at most a window boundary or two
                w = int(np.searchsorted(self.window_starts, linear, side="right")) - 1
                start, stop = int(self.window_starts[w]), min(end, int(self.window_starts[w + 1]))
                pieces.append(start + self._window(w)[linear - start : stop - start])
                linear = stop
        virtual = np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)
        return self.virtual_to_samples(virtual)

    def virtual_to_samples(self, virtual: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.virtual_starts, virtual, side="right") - 1
        return self.block_starts[self.virtual_blocks[k]] + (virtual - self.virtual_starts[k])

    def _samples(self, positions: np.ndarray) -> np.ndarray:
        B = self.global_batch_size
        batch, column = np.divmod(positions, B)
        bounds = self.column_bounds
        partitions = np.searchsorted(bounds, column, side="right") - 1
        quota = bounds[partitions + 1] - bounds[partitions]
        stream = batch * quota + (column - bounds[partitions])
        return self.virtual_to_samples(self.stream_to_virtual(partitions, stream))


ORDERS = {"block_window": BlockWindowPlan, "uniform": UniformPlan, "sequential": SequentialPlan}


def plan_epoch(block_rows, *, options: SamplerOptions, epoch: int, global_batch_size: int) -> EpochPlan:
    """The order of `epoch` for a dataset whose blocks hold `block_rows` rows (storage order)."""
    if type(epoch) is not int or epoch < 0:
        raise ConfigError(f"epoch must be a non-negative integer, found {epoch!r}")
    if type(global_batch_size) is not int or global_batch_size < 1:
        raise ConfigError(f"the global batch size must be a positive integer, found {global_batch_size!r}")
    rows = np.asarray(block_rows, np.int64)
    if rows.ndim != 1 or len(rows) == 0 or rows.min() < 1:
        raise ConfigError("a sampler needs at least one block, and every block at least one row")
    try:
        cls = ORDERS[options.order]
    except KeyError:
        raise ConfigError(f"unknown sampler order {options.order!r}; valid orders are {', '.join(ORDERS)}") from None
    return cls(rows, options=options, epoch=epoch, global_batch_size=global_batch_size)
