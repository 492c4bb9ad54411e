"""Epoch orders: pure functions from (layout, options, epoch, global batch) to a sample order.

The cut into partitions, windows and columns is `geometry.py`'s (shared with
the packer); this module decides which sample sits at each position.

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
from fastload.sampler.geometry import EpochGeometry
from fastload.sampler.options import SamplerOptions

__all__ = ["EpochPlan", "plan_epoch", "ORDERS"]


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
        # Rows pad the last batch by wrapping around to the epoch's start (see the module's docstring).
        self.geometry = EpochGeometry(self.block_rows, options=options, epoch=epoch, global_batch_size=global_batch_size, drop=options.drop_last, wrap=True)
        self.num_batches = self.geometry.num_batches
        self.num_positions = self.geometry.num_positions
        self.num_partitions = self.geometry.num_partitions

    # -- columns and partitions ---------------------------------------------

    @property
    def column_bounds(self) -> np.ndarray:
        """(P + 1,) batch columns where each partition's quota starts: ⌊p·B/P⌋."""
        return self.geometry.column_bounds

    def rank_columns(self, rank: int, world_size: int) -> tuple[int, int]:
        return self.geometry.rank_columns(rank, world_size)

    def worker_columns(self, rank: int, world_size: int, num_workers: int) -> list[tuple[int, int]]:
        """How a rank's columns are split among its workers (see `EpochGeometry.worker_columns`)."""
        return self.geometry.worker_columns(rank, world_size, num_workers)

    # -- sample ids ----------------------------------------------------------

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Sample ids at global positions [start, stop) of this epoch, as int64."""
        if not 0 <= start <= stop <= self.num_positions:
            raise IndexError(f"positions [{start}, {stop}) outside the epoch's [0, {self.num_positions})")
        return self._samples(np.arange(start, stop, dtype=np.int64))

    def samples_at(self, positions: np.ndarray) -> np.ndarray:
        """Sample ids at the given global positions of this epoch (any order), as int64."""
        positions = np.asarray(positions, np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self.num_positions):
            raise IndexError(f"positions outside the epoch's [0, {self.num_positions})")
        return self._samples(positions)

    def global_batch(self, batch: int) -> np.ndarray:
        B = self.global_batch_size
        return self.samples(batch * B, (batch + 1) * B)

    def rank_batch(self, batch: int, rank: int, world_size: int) -> np.ndarray:
        return self.rank_batches(batch, 1, rank, world_size)[0]

    def rank_batches(self, first: int, count: int, rank: int, world_size: int) -> np.ndarray:
        """One rank's shares of batches [first, first + count), as a (count, rows) int64 array.

        The loader asks for batches a few at a time: computing several at once
        costs about what one does, and this runs in the training process.
        """
        if not (0 <= first and 0 < count and first + count <= self.num_batches):
            raise IndexError(f"batches [{first}, {first + count}) outside the epoch's [0, {self.num_batches})")
        lo, hi = self.rank_columns(rank, world_size)
        B = self.global_batch_size
        positions = (np.arange(first, first + count, dtype=np.int64)[:, None] * B + np.arange(lo, hi, dtype=np.int64)).ravel()
        return self._samples(positions).reshape(count, hi - lo)

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
        geometry = self.geometry
        self.virtual_blocks, self.virtual_starts = geometry.virtual_blocks, geometry.virtual_starts
        self.partition_starts, self.window_starts = geometry.partition_starts, geometry.window_starts
        self._windows: OrderedDict[int, np.ndarray] = OrderedDict()
        # A partition's stream has at most two windows live (its current one and the next),
        # so this many cached permutations never regenerate one during an epoch.
        self._cached_windows = 2 * self.num_partitions + 2

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

    def rank_batches(self, first: int, count: int, rank: int, world_size: int) -> np.ndarray:
        """One rank's shares of batches [first, first + count), as a (count, rows) int64 array.

        A partition's rows in consecutive batches are evenly spaced runs of its
        stream (`quota` apart, `taken` long), so one slice of its cached window
        permutations serves all `count` batches: the cost per partition, not
        per batch or per sample, which is what keeps the training process's
        share of a batch small.
        """
        if not (0 <= first and 0 < count and first + count <= self.num_batches):
            raise IndexError(f"batches [{first}, {first + count}) outside the epoch's [0, {self.num_batches})")
        partitions, _, taken, offset = self.geometry.column_partitions(*self.rank_columns(rank, world_size))
        quotas = np.diff(self.column_bounds)
        columns = []
        for p, n, c in zip(partitions.tolist(), taken.tolist(), offset.tolist()):
            quota = int(quotas[p])
            begin = int(self.partition_starts[p]) + first * quota + c
            run = self._stream_run(begin, begin + (count - 1) * quota + n)  # never past what the last batch reads
            columns.append(run[np.arange(count)[:, None] * quota + np.arange(n)])
        if not columns:
            return np.zeros((count, 0), np.int64)
        virtual = np.concatenate(columns, axis=1).astype(np.int64)
        return self.virtual_to_samples(virtual.ravel()).reshape(virtual.shape)

    def _stream_run(self, begin: int, end: int) -> np.ndarray:
        """Virtual positions of stream indices [begin, end): slices of the window permutations it crosses."""
        pieces = []
        while begin < end:
            w = int(np.searchsorted(self.window_starts, begin, side="right")) - 1
            start, stop = int(self.window_starts[w]), min(end, int(self.window_starts[w + 1]))
            pieces.append(start + self._window(w)[begin - start : stop - start])
            begin = stop
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]

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
