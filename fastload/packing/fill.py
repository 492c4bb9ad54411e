"""`BatchFiller`: a process's side of packing — blocks in, packed batch arrays out.

A worker (or the main process with `num_workers=0`) owns one. For each
batch it asks the plan which window runs fill which rows, makes sure the
windows' blocks are loaded, and hands the runs to the Numba kernels, which
write straight into the output arrays (in a worker: the batch's
shared-memory slot). No per-document Python runs.

A window's table is built from document lengths alone; a block is loaded
the first time a batch reaches into it, then stays while its window's table
is cached, and is dropped after:
with the `block_window` order a partition has at most two windows live, so
a worker holds about 2 × window_blocks blocks per partition it serves and
reads each block once per epoch (`blocks.py` loads them: zero-copy views of
the shard when uncompressed, decompressed once with lz4/zstd, tokenized
here, block by block, when the dataset holds text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastload.kernels.pack import fill_packed_batch
from fastload.packing.blocks import AddressBook, TokenBlocks
from fastload.packing.plan import PackPlan

__all__ = ["BatchFiller", "PackedArrays", "RowsToFill"]


@dataclass(frozen=True)
class PackedArrays:
    """A rank's packed batch: (rows, seq_len) each."""

    input_ids: np.ndarray  # int64 token ids
    labels: np.ndarray  # int64: input_ids shifted by one; -100 where the next token is padding
    position_ids: np.ndarray  # int64: position inside the document's piece in this row, from 0
    document_ids: np.ndarray  # int32: which document piece of the row, from 0 (attend where equal)

    @classmethod
    def empty(cls, rows: int, seq_len: int, allocate=np.empty) -> "PackedArrays":
        """Arrays for `rows` rows, from `allocate(shape, dtype)` (a worker passes its slot's)."""
        shape = (rows, seq_len)
        return cls(allocate(shape, np.int64), allocate(shape, np.int64), allocate(shape, np.int64), allocate(shape, np.int32))

    def as_dict(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels, "position_ids": self.position_ids, "document_ids": self.document_ids}


class RowsToFill(NamedTuple):
    """Rows [lo, hi) of global batch `batch` of `plan` (which the filler knows as `plan_key`), bound for rows `rows` of the output."""

    plan: PackPlan
    plan_key: tuple
    batch: int
    lo: int
    hi: int
    rows: np.ndarray  # (hi - lo,) int64 output rows


@dataclass
class _WindowTable:
    """A window's units resolved to loaded blocks, as the kernel reads them (see `fill_packed_batch`)."""

    slot: int  # its index in BatchFiller.tables
    start: int  # the window's first stream position
    blocks: list[int]  # the blocks this table holds loaded (taken as its batches first reach them)


class BatchFiller:
    """Fills packed batches from one dataset column in this process. Not shared between processes."""

    def __init__(self, blocks: TokenBlocks, *, eos_id: int, pad_id: int):
        self.blocks = blocks
        self.doc_lengths = blocks.doc_lengths
        self.eos_id, self.pad_id = eos_id, pad_id
        # Where each document starts in its block's tokens, from the lengths alone: window tables are
        # built without reading a block, and a block is loaded when a batch first reaches into it.
        starts = blocks.dataset.block_starts
        cum = np.concatenate([[0], np.cumsum(self.doc_lengths)])
        self._doc_offset = cum[:-1] - np.repeat(cum[starts[:-1]], np.diff(starts))
        self._block_of_doc = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
        self._tables_book = AddressBook()  # window tables, (4, units + 1) int64 each
        self._tables: dict[tuple, _WindowTable] = {}  # (plan key, window) -> its table
        self._table_at: dict[int, _WindowTable] = {}  # table slot -> its table
        self._window_slots: dict[tuple, tuple] = {}  # plan key -> (table slot of each window or -1, its last use)
        self._uses = 0  # batches filled: the clock of least-recently-used

    # -- windows -------------------------------------------------------------------

    def _window_table(self, plan: PackPlan, w: int) -> _WindowTable:
        units = plan.window(w)
        n = len(units.doc)
        table = np.zeros((4, n + 1), np.int64)  # block, first token in it, real tokens, stream offset
        table[0, :n] = self._block_of_doc[units.doc]
        table[1, :n] = self._doc_offset[units.doc] + units.skip
        table[2, :n] = np.clip(self.doc_lengths[units.doc] - units.skip, 0, units.take)  # real tokens; the rest is the EOS
        table[3] = units.cum + units.start  # stream offsets count from the stream's start, as the plan's runs do
        slot = self._tables_book.put(table, n)
        self._table_at[slot] = _WindowTable(slot, units.start, [])
        return self._table_at[slot]

    def _drop_table(self, plan_key: tuple, w: int) -> None:
        table = self._tables.pop((plan_key, w))
        self._window_slots[plan_key][0][w] = -1
        self._tables_book.drop(table.slot)
        del self._table_at[table.slot]
        for block_id in table.blocks:
            self.blocks.release(block_id)

    def _tables_for(self, plan: PackPlan, plan_key: tuple, windows: np.ndarray) -> np.ndarray:
        """Table slots of `windows` (-1 stays -1: padding), building the missing ones. The caller
        ticks `_uses` once per batch: every table of the batch is then the most recent, and kept."""
        per_plan = self._window_slots.get(plan_key)
        if per_plan is None:  # (table slot or -1, last batch that used it) of every window
            per_plan = self._window_slots[plan_key] = (np.full(plan.num_windows, -1, np.int64), np.zeros(plan.num_windows, np.int64))
        slots, last_used = per_plan
        real = windows[windows >= 0]
        last_used[real] = self._uses
        missing = real[slots[real] < 0]
        if len(missing):
            for w in np.unique(missing).tolist():
                table = self._tables[(plan_key, w)] = self._window_table(plan, w)
                slots[w] = table.slot
            # A partition has at most two windows live: drop the least recently used beyond that
            # (never one this batch uses: they are the most recent).
            excess = len(self._tables) - (2 * plan.num_partitions + 2)
            if excess > 0:
                by_age = sorted(self._tables, key=lambda key: self._window_slots[key[0]][1][key[1]])
                for key in by_age[:excess]:
                    if self._window_slots[key[0]][1][key[1]] < self._uses:
                        self._drop_table(*key)
        return np.where(windows >= 0, slots[np.maximum(windows, 0)], -1)

    # -- batches -------------------------------------------------------------------

    def fill(self, plan: PackPlan, plan_key: tuple, batch: int, rank: int, world_size: int, allocate=np.empty) -> PackedArrays:
        """Rank `rank`'s rows of global batch `batch`, in arrays from `allocate(shape, dtype)`."""
        return self.fill_rows(plan, plan_key, batch, *plan.rank_columns(rank, world_size), allocate)

    def fill_rows(self, plan: PackPlan, plan_key: tuple, batch: int, lo: int, hi: int, allocate=np.empty) -> PackedArrays:
        """Rows [lo, hi) of global batch `batch`, in arrays from `allocate(shape, dtype)`."""
        out = PackedArrays.empty(hi - lo, plan.seq_len, allocate)
        self._uses += 1
        windows, begin, end, run_out = plan.column_runs(batch, lo, hi)
        self._write(self._tables_for(plan, plan_key, windows), begin, end, run_out, out)
        return out

    def fill_parts(self, parts: list[RowsToFill], out: PackedArrays) -> None:
        """Write every part's rows into its rows of `out`, in one kernel call.

        A mixture's source fills its rows of a batch this way, straight into
        the batch, however they are spread among the rows and whichever
        source batches (and passes) they come from.
        """
        self._uses += 1
        by_plan: dict[tuple, list[RowsToFill]] = {}
        for part in parts:
            by_plan.setdefault(part.plan_key, []).append(part)
        runs = []
        for plan_key, mine in by_plan.items():  # one pass of the source: one split of its rows into runs
            plan = mine[0].plan
            starts = [part.plan.row_starts(part.batch, part.lo, part.hi) for part in mine]
            rows = [part.rows for part in mine]
            if len(mine) > 1:
                starts, rows = [np.concatenate(starts)], [np.concatenate(rows)]
            windows, begin, end, run_out = plan.runs_of_rows(starts[0], rows[0] * plan.row_tokens)
            runs.append((self._tables_for(plan, plan_key, windows), begin, end, run_out))
        if len(runs) > 1:
            runs = [tuple(np.concatenate(arrays) for arrays in zip(*runs))]
        self._write(*runs[0], out)

    def _write(self, slots: np.ndarray, begin: np.ndarray, end: np.ndarray, run_out: np.ndarray, out: PackedArrays) -> None:
        """Run the packing kernel over the runs (begin and end: stream offsets, as the tables count them), loading the blocks it reaches."""
        arrays = dict(eos_id=self.eos_id, pad_id=self.pad_id, input_ids=out.input_ids, labels=out.labels, positions=out.position_ids, segments=out.document_ids)
        tables = (self._tables_book.address, self._tables_book.size)
        for _ in range(len(self.blocks.slot_of_block) + 1):
            missing = fill_packed_batch(self.blocks.sources, self.blocks.slot_of_block, tables, slots, begin, end, run_out, **arrays)
            if missing is None:
                return
            block_id, run = missing  # load it for the table that reached it, and write the batch again
            self.blocks.acquire(block_id)
            self._table_at[int(slots[run])].blocks.append(block_id)
        raise RuntimeError("packing kept asking for blocks that were just loaded")  # pragma: no cover - a bug, not data

