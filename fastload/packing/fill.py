"""`BatchFiller`: a process's side of packing — blocks in, packed batch arrays out.

A worker (or the main process with `num_workers=0`) owns one. For each
batch it asks the plan where each row starts in the stream and hands the
rows to one Numba kernel call, which walks them window by window and writes
straight into the output arrays (in a worker: the batch's shared-memory
slot); the kernel stops to ask for a window's table or a block it has not
got, and is called again; once it has them all, it names the documents of
text not tokenized yet, all of the batch's at once, and is called again
when they are. No per-document, and little per-batch, Python
runs: a mixture writes all its sources' rows of a batch, wherever they go
in it, with one call (`fill_together`: one kernel call costs ~2 µs of
dispatch, so one per source was a tenth of a mixture's batch).

A window's table is built from document lengths alone; a block is loaded
the first time a batch reaches into it, then stays while its window's table
is cached, and is dropped after:
with the `block_window` order a partition has at most two windows live, so
a worker holds about 2 × window_blocks blocks per partition it serves and
reads each block once per epoch (`blocks.py` loads them: zero-copy views of
the shard when uncompressed, decompressed once with lz4/zstd; when the
dataset holds text, each document is tokenized the first time a batch
reaches it, not its whole block: see `blocks.py` for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastload.kernels.pack import PART_USE, fill_packed_parts, fill_packed_rows, packed_part
from fastload.kernels.pointers import address_of
from fastload.packing.blocks import AddressBook, TokenBlocks
from fastload.packing.plan import PackPlan

__all__ = ["BatchFiller", "PackedArrays", "RowsToFill", "can_fill_together", "fill_together", "load_together_kernel", "output_rows"]


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
    """A window's units resolved to loaded blocks, as the kernel reads them (see `fill_packed_rows`)."""

    slot: int  # its index in BatchFiller.tables
    start: int  # the window's first stream position
    blocks: list[int]  # the blocks this table holds loaded (taken as its batches first reach them)


class BatchFiller:
    """Fills packed batches from one dataset column in this process. Not shared between processes, nor
    between threads: its kernels read the blocks and tables by address without the GIL, and a table or
    block provided by another thread meanwhile could move or free what they read (`AddressBook`)."""

    def __init__(self, blocks: TokenBlocks, *, eos_id: int, pad_id: int):
        self.blocks = blocks
        # Where each document starts in its block's tokens comes from the lengths alone: window tables
        # are built before a block is read, and a block is loaded when a batch first reaches into it.
        self.lengths = blocks.lengths
        self.eos_id, self.pad_id = eos_id, pad_id
        self._tables_book = AddressBook()  # window tables, (5, units + 1) int64 each
        self._tables: dict[tuple, _WindowTable] = {}  # (plan key, window) -> its table
        self._table_at: dict[int, _WindowTable] = {}  # table slot -> its table
        self._window_slots: dict[tuple, tuple] = {}  # plan key -> (table slot of each window or -1, its last use)
        self._uses = 0  # batches filled: the clock of least-recently-used
        self._parts: dict[tuple, tuple] = {}  # plan key -> its part of `fill_packed_parts` (see `_kernel_part`)

    # -- windows -------------------------------------------------------------------

    def _window_table(self, plan: PackPlan, w: int) -> _WindowTable:
        units = plan.window(w)
        n = len(units.doc)
        table = np.zeros((5, n + 1), np.int64)  # block, first token in it, real tokens, stream offset, document
        block, offset, length = self.lengths.locate(units.doc)
        table[0, :n] = block
        table[1, :n] = offset + units.skip
        table[2, :n] = np.clip(length - units.skip, 0, units.take)  # real tokens; the rest is the EOS
        table[3] = units.cum + units.start  # stream positions, as `PackPlan.row_starts` gives them: rows need no rebasing
        table[4, :n] = units.doc  # which flag says its tokens are there (text tokenized by document)
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

    def _windows_of(self, plan: PackPlan, plan_key: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(table slot of each window or -1, the batch that last used it) of a plan, as the kernel reads and marks them."""
        per_plan = self._window_slots.get(plan_key)
        if per_plan is None:
            per_plan = self._window_slots[plan_key] = (np.full(plan.num_windows, -1, np.int64), np.zeros(plan.num_windows, np.int64))
        return per_plan

    def _add_table(self, plan: PackPlan, plan_key: tuple, w: int) -> None:
        table = self._tables[(plan_key, w)] = self._window_table(plan, w)
        self._window_slots[plan_key][0][w] = table.slot

    def _drop_old_tables(self, plan: PackPlan) -> None:
        """A partition has at most two windows live: drop the least recently used tables beyond that
        (never one this batch used: they are the most recent)."""
        excess = len(self._tables) - (2 * plan.num_partitions + 2)
        if excess > 0:
            by_age = sorted(self._tables, key=lambda key: self._window_slots[key[0]][1][key[1]])
            for key in by_age[:excess]:
                if self._window_slots[key[0]][1][key[1]] < self._uses:
                    self._drop_table(*key)

    # -- batches -------------------------------------------------------------------

    def fill(self, plan: PackPlan, plan_key: tuple, batch: int, rank: int, world_size: int, allocate=np.empty) -> PackedArrays:
        """Rank `rank`'s rows of global batch `batch`, in arrays from `allocate(shape, dtype)`."""
        return self.fill_rows(plan, plan_key, batch, *plan.rank_columns(rank, world_size), allocate)

    def fill_rows(self, plan: PackPlan, plan_key: tuple, batch: int, lo: int, hi: int, allocate=np.empty) -> PackedArrays:
        """Rows [lo, hi) of global batch `batch`, in arrays from `allocate(shape, dtype)`."""
        out = PackedArrays.empty(hi - lo, plan.seq_len, allocate)
        self.fill_part(RowsToFill(plan, plan_key, batch, lo, hi, output_rows(0, hi - lo)), out)
        return out

    def fill_part(self, part: RowsToFill, out: PackedArrays) -> None:
        """Write a part's rows into its rows of `out`, with one kernel call."""
        self.fill_runs([(part.plan, part.plan_key, 0, part.hi - part.lo)], part.plan.row_starts(part.batch, part.lo, part.hi), part.rows, out)

    def fill_runs(self, runs: list[tuple], starts: np.ndarray, rows: np.ndarray, out: PackedArrays) -> None:
        """Write packed rows into `out`: row i is the seq_len + 1 tokens from stream position `starts[i]`,
        written as row `rows[i]` of `out`; `runs` = [(plan, plan_key, a, b)]: rows [a, b) are of that plan
        (one kernel call each). The form a caller that keeps `starts`' geometry uses (`PackedMixture`):
        no per-part objects, no concatenation per batch.
        """
        self._uses += 1  # one tick per batch: every table this batch reads is the most recent
        for plan, plan_key, a, b in runs:
            if a == 0 and b == len(starts):
                self._write_rows(plan, plan_key, starts, rows, out)
            else:
                self._write_rows(plan, plan_key, starts[a:b], rows[a:b], out)
        self._drop_old_tables(runs[-1][0])

    def _write_rows(self, plan: PackPlan, plan_key: tuple, starts: np.ndarray, rows: np.ndarray, out: PackedArrays) -> None:
        """Run the packing kernel over rows of one plan, building the window tables, loading the blocks
        and tokenizing the documents it asks for."""
        slots, last_used = self._windows_of(plan, plan_key)
        windows = (plan.starts_with_padding, slots, last_used, self._uses)
        arrays = dict(documents=self.blocks.documents, eos_id=self.eos_id, pad_id=self.pad_id, input_ids=out.input_ids, labels=out.labels,
                      positions=out.position_ids, segments=out.document_ids)
        missing = fill_packed_rows(self.blocks.sources, self.blocks.slot_of_block, (self._tables_book.address, self._tables_book.size), windows, starts, rows, **arrays)
        retries = self._retries(plan)
        while missing is not None:
            if retries == 0:  # pragma: no cover - a bug, not data
                raise RuntimeError("packing kept asking for tables, blocks or documents that were just provided")
            retries -= 1
            self._provide(plan, plan_key, missing)  # and write the rows again
            missing = fill_packed_rows(self.blocks.sources, self.blocks.slot_of_block, (self._tables_book.address, self._tables_book.size), windows, starts, rows, **arrays)

    def _retries(self, plan: PackPlan) -> int:
        """How often the kernel may ask for more while writing rows of `plan`: each retry provides a
        table, a block or (at least one) missing document."""
        return plan.num_windows + len(self.blocks.slot_of_block) + self.lengths.num_documents

    def _provide(self, plan: PackPlan, plan_key: tuple, missing: tuple) -> None:
        """Build the table, load the block or tokenize the documents that the kernel asked for (see `fill_packed_rows`)."""
        what, which, table = missing
        if what == "window":
            self._add_table(plan, plan_key, which)
        elif what == "block":
            self.blocks.acquire(which)
            self._table_at[table].blocks.append(which)
        else:
            self.blocks.tokenize(which)

    def _kernel_part(self, plan: PackPlan, plan_key: tuple) -> tuple:
        """Rows of `plan` read through this filler, as one part of `fill_packed_parts`: (the part's row,
        its address, then every array the row points to, which the tuple keeps alive). Kept per plan;
        made again when providing a table or a block has moved the arrays of addresses (an
        `AddressBook` grows by copying)."""
        kept = self._parts.get(plan_key)
        if kept is None or kept[2] is not self.blocks.book.address or kept[3] is not self._tables_book.address or kept[4] is not plan.starts_with_padding:
            if len(self._parts) >= 16:  # a pass or two of a plan or two are live: forget the rest
                self._parts.clear()
            slots, last_used = self._windows_of(plan, plan_key)
            tables = (self._tables_book.address, self._tables_book.size)
            row = packed_part(self.blocks.sources, self.blocks.slot_of_block, tables, (plan.starts_with_padding, slots, last_used, self._uses), self.blocks.documents)
            kept = self._parts[plan_key] = (row, address_of(row), self.blocks.book.address, tables[0], plan.starts_with_padding, self.blocks.book.size, tables[1],
                                            self.blocks.slot_of_block, slots, last_used, self.blocks.documents)
        kept[0][PART_USE] = self._uses
        return kept


def fill_together(parts: list[tuple], bounds: np.ndarray, starts: np.ndarray, rows: np.ndarray, out: PackedArrays, *, fillers: list | None = None,
                  kept: list | None = None) -> None:
    """`BatchFiller.fill_runs` for several fillers (a mixture's sources) with one kernel call: parts =
    [(filler, plan, plan_key)], rows [bounds[p], bounds[p + 1]) of `starts` / `rows` are part p's (see
    `fill_runs`). The fillers must share eos_id, pad_id and token dtype (`can_fill_together`). Each
    filler ticks once, as for one batch, and drops its old tables after a call that provided any
    (the same batches; a table may go a batch or more later). `fillers`: the distinct
    fillers of `parts` each with the plan of its last part, [(filler, plan)] (derived when not given).
    `kept`: a list the caller keeps with these very `parts` from call to call (a mixture's row
    layout), where the parts' kernel rows and their addresses are kept while no address book grows
    (making them is ~2 µs a batch, a fifth of what a mixture adds to one dataset's batch).
    """
    if fillers is None:
        fillers = list({filler: plan for filler, plan, _ in parts}.items())
    for filler, _ in fillers:
        filler._uses += 1
    first = fillers[0][0]
    arrays = dict(eos_id=first.eos_id, pad_id=first.pad_id, input_ids=out.input_ids, labels=out.labels, positions=out.position_ids, segments=out.document_ids)
    token, p, retries = first.blocks.token, 0, None
    while True:
        kernel_parts, addresses = _kernel_parts(parts, kept)  # the rows, and the arrays they point to, stay alive while the kernel reads them
        missing = fill_packed_parts(addresses, token, bounds, starts, rows, first_part=p, **arrays)
        if missing is None:
            break
        if retries is None:
            retries = sum(filler._retries(plan) for filler, plan, _ in parts)
        if retries == 0:  # pragma: no cover - a bug, not data
            raise RuntimeError("packing kept asking for tables, blocks or documents that were just provided")
        retries -= 1
        p, asked = missing
        filler, plan, plan_key = parts[p]
        if asked[0] == "documents":  # the ids are in the filler's own buffer
            asked = ("documents", filler.blocks.documents[1][1 : 1 + asked[1]], -1)
        filler._provide(plan, plan_key, asked)  # then write again from part p: the parts before it are written
    if retries is not None:  # tables only come in by `_provide`: with none provided, none can be in excess (~0.2 µs a filler)
        for filler, plan in fillers:
            filler._drop_old_tables(plan)


def _kernel_parts(parts: list[tuple], kept: list | None) -> tuple[list, np.ndarray]:
    """The kernel rows of `parts` (`BatchFiller._kernel_part`: each with the arrays it points to) and their
    addresses; from `kept` when no `AddressBook` has grown since they were made there: until then every
    array a row points to is the one its owner still uses (dropping a slot zeroes it in place), so the
    rows are current; after, they may point at the old copies, which no longer see the slots dropped."""
    if kept and kept[0] == AddressBook.growths:
        kernel_parts = kept[1]
        for (filler, _, _), part in zip(parts, kernel_parts):
            part[0][PART_USE] = filler._uses
        return kernel_parts, kept[2]
    kernel_parts = [filler._kernel_part(plan, plan_key) for filler, plan, plan_key in parts]
    addresses = np.array([part[1] for part in kernel_parts], np.int64)
    if kept is not None:
        kept[:] = [AddressBook.growths, kernel_parts, addresses]
    return kernel_parts, addresses


def load_together_kernel(filler: BatchFiller, out: PackedArrays) -> None:
    """Run `fill_together`'s kernel on no rows, as `filler` and `out` would: it is loaded (from numba's cache,
    with numba's context) in this process, and worker processes forked after share it."""
    none = np.zeros(0, np.int64)
    fill_packed_parts(none, filler.blocks.token, np.zeros(1, np.int64), none, none, eos_id=filler.eos_id, pad_id=filler.pad_id,
                      input_ids=out.input_ids, labels=out.labels, positions=out.position_ids, segments=out.document_ids)


def can_fill_together(fillers: list[BatchFiller]) -> bool:
    """Whether `fill_together` can write these fillers' rows in one call: one eos_id, pad_id and token dtype."""
    first = fillers[0]
    return all((f.eos_id, f.pad_id, f.blocks.token.dtype) == (first.eos_id, first.pad_id, first.blocks.token.dtype) for f in fillers)


_OUTPUT_ROWS: dict[tuple, np.ndarray] = {}  # (lo, hi) -> lo, ..., hi - 1: made once per range, not once per batch


def output_rows(lo: int, hi: int) -> np.ndarray:
    """Output rows lo .. hi - 1 in order, as int64 (where a rank's or a worker's rows land). Read only, by convention."""
    rows = _OUTPUT_ROWS.get((lo, hi))
    if rows is None:
        rows = _OUTPUT_ROWS[(lo, hi)] = np.arange(lo, hi, dtype=np.int64)  # writeable: Numba compiles read-only arrays apart
    return rows
