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

It is the row sampler's `block_window` order measured in tokens instead of
rows — both are cut by `sampler/geometry.py`: partitions are cut at exact token
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
from fastload.packing.lengths import DocumentLengths
from fastload.sampler import SamplerOptions
from fastload.sampler import permutation
from fastload.sampler.geometry import EpochGeometry

__all__ = ["PackPlan", "Units", "REMAINDERS"]

REMAINDERS = ("drop", "pad")


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
        doc_lengths: np.ndarray | DocumentLengths,
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
        self.block_rows = np.asarray(block_rows, np.int64)
        self.block_starts = np.concatenate([[0], np.cumsum(self.block_rows)])
        if not isinstance(doc_lengths, DocumentLengths):
            doc_lengths = np.asarray(doc_lengths, np.int64)
            if int(self.block_starts[-1]) != len(doc_lengths):
                raise ConfigError(f"{len(doc_lengths)} document lengths given for blocks holding {int(self.block_starts[-1])} rows")
            doc_lengths = DocumentLengths(self.block_starts, lengths=doc_lengths)
        elif not np.array_equal(doc_lengths.block_starts, self.block_starts):
            raise ConfigError("the document lengths given describe other blocks than block_rows")
        self.lengths = doc_lengths  # per block up front; a document's own when a window holding it is laid out
        self.seq_len, self.row_tokens = seq_len, seq_len + 1
        self.global_batch_size, self.options, self.epoch = global_batch_size, options, epoch
        self.add_eos, self.remainder = add_eos, remainder
        block_tokens = self.lengths.block_totals + int(add_eos) * self.block_rows  # each document's tokens in the stream, with its EOS
        self.blocks = _check_blocks(blocks, len(self.block_rows))  # the blocks this plan uses (a split), storage order
        if options.order not in ("block_window", "uniform", "sequential"):
            raise ConfigError(f"unknown order {options.order!r}; packing supports block_window, uniform and sequential")
        # `uniform` is one window over the whole dataset; `sequential` keeps storage order unshuffled.
        window_blocks = len(self.blocks) if options.order == "uniform" else options.window_blocks
        self.shuffled = options.order != "sequential"
        self.geometry = geometry = EpochGeometry(
            block_tokens, options=options, epoch=epoch, global_batch_size=global_batch_size, column_units=self.row_tokens,
            drop=remainder == "drop", wrap=False, blocks=self.blocks, window_blocks=window_blocks,
        )
        self.num_tokens = geometry.total_units  # T: the virtual stream's length
        self.num_batches = geometry.num_batches
        if self.num_batches == 0:
            raise ConfigError(
                f"the dataset holds {self.num_tokens:,} tokens (with EOS), fewer than one global batch of "
                f"{global_batch_size} rows × {self.row_tokens} tokens; lower the batch size or seq_len, or pack with remainder='pad'"
            )
        self.block_order, self.num_partitions = geometry.block_order, geometry.num_partitions
        self.column_bounds, self.partition_starts, self.window_starts = geometry.column_bounds, geometry.partition_starts, geometry.window_starts
        # the windows' starts, the stream's end, and a position past every row: from the end on is padding
        self.starts_with_padding = np.concatenate([self.window_starts, [np.iinfo(np.int64).max]])
        self._geometry: dict[tuple, tuple] = {}  # (lo, hi) or ("rows", lo, hi) -> arrays
        self._windows: OrderedDict[int, Units] = OrderedDict()
        self._cached_windows = 2 * self.num_partitions + 2  # a partition has at most two windows live

    # -- windows -------------------------------------------------------------------

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
        k0, k1 = self.geometry.virtual_range(s, t)
        blocks = self.geometry.virtual_blocks[k0:k1]
        # Every document of these blocks, with its stream position.
        doc = self.lengths.documents_of(blocks)
        lengths = self.lengths.of_blocks(blocks) + int(self.add_eos)
        begin = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + self.geometry.virtual_starts[k0]
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
        return self.geometry.rank_columns(rank, world_size)

    def _column_geometry(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Per partition serving columns [lo, hi): (first stream position, stride per batch, tokens, flat output start)."""
        key = (lo, hi)
        cached = self._geometry.get(key)
        if cached is None:
            partitions, out_column, taken, offset = self.geometry.column_partitions(lo, hi)
            L1 = self.row_tokens
            stride = np.diff(self.column_bounds)[partitions] * L1
            cached = self._geometry[key] = (self.partition_starts[partitions] + offset * L1, stride, taken * L1, out_column * L1)
        return cached

    def row_geometry(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Per row of columns [lo, hi): (its first stream position in batch 0, stride per batch); row i of
        batch b starts at base[i] + b · stride[i] (what `row_starts` computes). Cached: read only."""
        key = ("rows", lo, hi)
        cached = self._geometry.get(key)
        if cached is None:
            base, stride, length, _ = self._column_geometry(lo, hi)  # partitions serve consecutive columns, in order
            rows = length // self.row_tokens
            within = np.arange(int(rows.sum())) - np.repeat(np.cumsum(rows) - rows, rows)
            cached = self._geometry[key] = (np.repeat(base, rows) + within * self.row_tokens, np.repeat(stride, rows))
        return cached

    def row_starts(self, batch: int, lo: int, hi: int) -> np.ndarray:
        """Where each of rows [lo, hi) of global batch `batch` starts in the stream: a row is the
        seq_len + 1 tokens from there."""
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} out of range: this epoch has {self.num_batches} batches")
        base, stride = self._geometry.get(("rows", lo, hi)) or self.row_geometry(lo, hi)  # asked for every batch: the cache first
        return base + batch * stride

    def rank_runs(self, batch: int, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The runs that fill rank `rank`'s rows of global batch `batch` (see `column_runs`)."""
        return self.column_runs(batch, *self.rank_columns(rank, world_size))

    def column_runs(self, batch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The runs that fill rows [lo, hi) of global batch `batch`, in output order.

        Four int64 arrays: window (-1: padding past the end of the stream),
        begin and end (stream positions), and where each run starts in those
        rows seen flat as (hi - lo, seq_len + 1).
        """
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} out of range: this epoch has {self.num_batches} batches")
        base, stride, length, out = self._column_geometry(lo, hi)
        return split_runs_at_windows(base + batch * stride, length, out, self.starts_with_padding, self.num_windows)

    def blocks_of_window(self, w: int) -> np.ndarray:
        """Block ids (storage numbering) that window `w` reads."""
        return self.geometry.blocks_of_window(w)


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
