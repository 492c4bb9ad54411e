"""`PackPlan`: which document tokens fill which row of which packed batch, for one epoch.

Packing for language-model pretraining cuts one token stream — documents,
each followed by EOS — into rows of `seq_len + 1` tokens (inputs, and labels
shifted by one). The plan decides the stream; it reads no data, only the
length of every document, so a worker can compute any batch of any epoch
on its own and every worker and rank agrees on it.

    documents (storage order, grouped in blocks)
      ──► blocks in this epoch's order (block_window) ─► the virtual stream, T tokens
      ──► cut into P partitions of exactly num_batches · q_p rows each
      ──► each partition cut into windows of `window_blocks` consecutive blocks,
          and the documents of a window shuffled (a window keeps its length)
      ──► global batch b = q_0 rows of partition 0's stream, then q_1 of partition 1's, …

It is the sample sampler's `block_window` order (see `sampler/orders.py`)
measured in tokens instead of samples: partitions are cut at exact token
counts, so every partition yields whole rows and nothing is lost but the
final remainder; a document cut by a partition boundary contributes its
head to one partition and its tail to the next. Rank r of W takes columns
[r·B/W, (r+1)·B/W) of every global batch, i.e. (when W divides P and B)
whole partitions: the blocks of the others are never read. `sequential`
keeps storage order in one partition; `uniform` is one partition and one
window over the whole dataset (every document anywhere; O(documents) memory).

A *unit* is a document's run of the stream inside one window: the whole
document and its EOS, or — at a partition boundary — part of it. Units are
(doc, skip, take): tokens [skip, skip + take) of the document's stream,
where position `length` is its EOS.

A plan may use a subset of the blocks (`blocks=`: a train/validation
split by blocks, see `split_blocks`); the others are never read.

Remainder: `drop` (default) leaves out the last T mod (B·(seq_len+1))
tokens of the virtual stream (the end of the last blocks of this epoch's
order — different ones every epoch); `pad` adds one more batch, filled past
T with padding whose labels are ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from fastload.errors import ConfigError
from fastload.kernels.pack import split_runs_at_windows
from fastload.sampler import SamplerOptions
from fastload.sampler import permutation

__all__ = ["PackPlan", "Units", "REMAINDERS"]

REMAINDERS = ("drop", "pad")
DEFAULT_MAX_PARTITIONS = 64


@dataclass(frozen=True)
class Units:
    """The units of one window in stream order: doc ids, skip, take, and cum (len + 1) stream offsets."""

    start: int  # the window's first stream position
    doc: np.ndarray
    skip: np.ndarray
    take: np.ndarray
    cum: np.ndarray  # cum[i] = window-relative stream offset where unit i starts; cum[-1] = window length


class PackPlan:
    """The packed stream of one epoch. Cheap to build: O(blocks) work, plus O(units) per window used."""

    def __init__(
        self,
        doc_lengths: np.ndarray,
        block_rows: np.ndarray,
        *,
        seq_len: int,
        global_batch_size: int,
        options: SamplerOptions,
        epoch: int,
        add_eos: bool = True,
        remainder: str = "drop",
        blocks: np.ndarray | None = None,
    ):
        _check(seq_len, global_batch_size, epoch, remainder)
        self.doc_lengths = np.asarray(doc_lengths, np.int64)
        self.block_rows = np.asarray(block_rows, np.int64)
        self.block_starts = np.concatenate([[0], np.cumsum(self.block_rows)])
        if int(self.block_starts[-1]) != len(self.doc_lengths):
            raise ConfigError(f"{len(self.doc_lengths)} document lengths given for blocks holding {int(self.block_starts[-1])} rows")
        self.seq_len, self.row_tokens = seq_len, seq_len + 1
        self.global_batch_size, self.options, self.epoch = global_batch_size, options, epoch
        self.add_eos, self.remainder = add_eos, remainder
        self.stream_lengths = self.doc_lengths + int(add_eos)  # each document's tokens in the stream
        block_tokens = np.add.reduceat(self.stream_lengths, self.block_starts[:-1]) if len(self.doc_lengths) else np.zeros(len(self.block_rows), np.int64)
        block_tokens[self.block_rows == 0] = 0  # reduceat repeats a value for empty ranges
        self.blocks = _check_blocks(blocks, len(self.block_rows))  # the blocks this plan uses (a split), storage order
        num_blocks = len(self.blocks)
        self.num_tokens = int(block_tokens[self.blocks].sum())  # T: the virtual stream's length
        batch_tokens = global_batch_size * self.row_tokens
        if remainder == "drop":
            self.num_batches = self.num_tokens // batch_tokens
        else:
            self.num_batches = -(-self.num_tokens // batch_tokens)
        if self.num_batches == 0:
            raise ConfigError(
                f"the dataset holds {self.num_tokens:,} tokens (with EOS), fewer than one global batch of "
                f"{global_batch_size} rows × {self.row_tokens} tokens; lower the batch size or seq_len, or pack with remainder='pad'"
            )
        order = options.order
        if order == "block_window":
            rng = permutation.generator(options.seed, epoch, permutation.BLOCK_ORDER)
            self.block_order = self.blocks[rng.permutation(num_blocks)]
            self.num_partitions = options.num_partitions or min(DEFAULT_MAX_PARTITIONS, num_blocks)
            window_blocks, self.shuffled = options.window_blocks, True
        elif order == "uniform":
            self.block_order = self.blocks
            self.num_partitions, window_blocks, self.shuffled = 1, num_blocks, True
        elif order == "sequential":
            self.block_order = self.blocks
            self.num_partitions, window_blocks, self.shuffled = 1, options.window_blocks, False
        else:
            raise ConfigError(f"unknown order {order!r}; packing supports block_window, uniform and sequential")
        self.virtual_starts = np.concatenate([[0], np.cumsum(block_tokens[self.block_order])])  # stream position of each virtual block
        P, B = self.num_partitions, global_batch_size
        self.column_bounds = (np.arange(P + 1, dtype=np.int64) * B) // P
        self.partition_starts = self.num_batches * self.row_tokens * self.column_bounds
        self.window_starts = self._window_starts(window_blocks)
        self._starts_with_padding = np.concatenate([self.window_starts, [np.iinfo(np.int64).max]])  # window num_windows: padding
        self._geometry: dict[tuple[int, int], tuple] = {}
        self._windows: OrderedDict[int, Units] = OrderedDict()
        self._cached_windows = 2 * P + 2  # a partition has at most two windows live (see sampler/orders.py)

    # -- windows -------------------------------------------------------------------

    def _window_starts(self, window_blocks: int) -> np.ndarray:
        """Sorted stream positions where a window starts, with T appended: every partition start
        (below T), then every `window_blocks` blocks counted from the partition's first block."""
        T = self.num_tokens
        starts = []
        for p in range(self.num_partitions):
            a, e = int(self.partition_starts[p]), min(int(self.partition_starts[p + 1]), T)
            if a >= e:
                continue
            first = int(np.searchsorted(self.virtual_starts, a, side="right")) - 1
            inner = self.virtual_starts[first + window_blocks :: window_blocks]
            starts.append(np.concatenate([[a], inner[(inner > a) & (inner < e)]]))
        starts.append([T])
        return np.unique(np.concatenate(starts).astype(np.int64))

    @property
    def num_windows(self) -> int:
        return len(self.window_starts) - 1

    def window(self, w: int) -> Units:
        """The units of window `w`, in stream order (cached: the windows in use stay built)."""
        units = self._windows.get(w)
        if units is not None:
            self._windows.move_to_end(w)
            return units
        units = self._build_window(w)
        self._windows[w] = units
        if len(self._windows) > self._cached_windows:
            self._windows.popitem(last=False)
        return units

    def _build_window(self, w: int) -> Units:
        if not 0 <= w < self.num_windows:
            raise IndexError(f"window {w} out of range [0, {self.num_windows})")
        s, t = int(self.window_starts[w]), int(self.window_starts[w + 1])
        k0 = int(np.searchsorted(self.virtual_starts, s, side="right")) - 1
        k1 = int(np.searchsorted(self.virtual_starts, t, side="left"))
        blocks = self.block_order[k0:k1]
        firsts, lasts = self.block_starts[blocks], self.block_starts[blocks + 1]
        counts = lasts - firsts
        # Every document of these blocks, with its stream position.
        doc = np.repeat(firsts - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(int(counts.sum()))
        lengths = self.stream_lengths[doc]
        begin = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + self.virtual_starts[k0]
        end = begin + lengths
        keep = (end > s) & (begin < t) & (lengths > 0)
        doc, begin, end = doc[keep], begin[keep], end[keep]
        skip = np.maximum(s - begin, 0)
        take = np.minimum(end, t) - np.maximum(begin, s)
        if self.shuffled and len(doc) > 1:
            rng = permutation.generator(self.options.seed, self.epoch, permutation.PACK_WINDOW, w)
            order = rng.permutation(len(doc))
            doc, skip, take = doc[order], skip[order], take[order]
        cum = np.concatenate([[0], np.cumsum(take)])
        return Units(s, doc, skip, take, cum)

    # -- batches -------------------------------------------------------------------

    def rank_columns(self, rank: int, world_size: int) -> tuple[int, int]:
        share = self.global_batch_size // world_size
        return rank * share, (rank + 1) * share

    def _rank_geometry(self, rank: int, world_size: int) -> tuple[np.ndarray, ...]:
        """Per partition serving this rank: (first stream position, stride per batch, tokens, flat output start)."""
        key = (rank, world_size)
        cached = self._geometry.get(key)
        if cached is None:
            lo, hi = self.rank_columns(rank, world_size)
            c0, c1 = self.column_bounds[:-1], self.column_bounds[1:]
            a, z = np.maximum(lo, c0), np.minimum(hi, c1)
            mine = np.flatnonzero(a < z)
            L1 = self.row_tokens
            base = self.partition_starts[mine] + (a[mine] - c0[mine]) * L1
            stride = (c1[mine] - c0[mine]) * L1
            cached = self._geometry[key] = (base, stride, (z[mine] - a[mine]) * L1, (a[mine] - lo) * L1)
        return cached

    def rank_runs(self, batch: int, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The runs that fill rank `rank`'s rows of global batch `batch`, in output order.

        Four int64 arrays: window (-1: padding past the end of the stream),
        begin and end (stream positions), and where each run starts in the
        rank's batch seen flat as (rows, seq_len + 1).
        """
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} out of range: this epoch has {self.num_batches} batches")
        base, stride, length, out = self._rank_geometry(rank, world_size)
        return split_runs_at_windows(base + batch * stride, length, out, self._starts_with_padding, self.num_windows)

    def blocks_of_window(self, w: int) -> np.ndarray:
        """Block ids (storage numbering) that window `w` reads."""
        s, t = int(self.window_starts[w]), int(self.window_starts[w + 1])
        k0 = int(np.searchsorted(self.virtual_starts, s, side="right")) - 1
        k1 = int(np.searchsorted(self.virtual_starts, t, side="left"))
        return self.block_order[k0:k1]


def _check_blocks(blocks, num_blocks: int) -> np.ndarray:
    if blocks is None:
        return np.arange(num_blocks, dtype=np.int64)
    blocks = np.asarray(blocks)
    if blocks.ndim != 1 or len(blocks) == 0 or blocks.dtype.kind not in "iu":
        raise ConfigError("blocks must be a non-empty sequence of block ids")
    blocks = np.unique(blocks.astype(np.int64))
    if blocks[0] < 0 or blocks[-1] >= num_blocks:
        raise ConfigError(f"block ids must be in [0, {num_blocks}), found {int(blocks[0])}..{int(blocks[-1])}")
    return blocks


def _check(seq_len: int, global_batch_size: int, epoch: int, remainder: str) -> None:
    if type(seq_len) is not int or seq_len < 1:
        raise ConfigError(f"seq_len must be a positive integer, found {seq_len!r}")
    if type(global_batch_size) is not int or global_batch_size < 1:
        raise ConfigError(f"the batch size must be a positive integer, found {global_batch_size!r}")
    if type(epoch) is not int or epoch < 0:
        raise ConfigError(f"epoch must be a non-negative integer, found {epoch!r}")
    if remainder not in REMAINDERS:
        raise ConfigError(f"remainder must be one of {REMAINDERS}, found {remainder!r}")
