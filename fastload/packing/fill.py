"""`BatchFiller`: a process's side of packing — blocks in, packed batch arrays out.

A worker (or the main process with `num_workers=0`) owns one. For each
batch it asks the plan which window runs fill which rows, makes sure the
windows' blocks are loaded, and hands the runs to the Numba kernels, which
write straight into the output arrays (in a worker: the batch's
shared-memory slot). No per-document Python runs.

Blocks stay loaded while a cached window uses them and are dropped after:
with the `block_window` order a partition has at most two windows live, so
a worker holds about 2 × window_blocks blocks per partition it serves and
reads each block once per epoch. Loaded blocks are zero-copy views of the
shard (uncompressed) or decompressed once (lz4/zstd); a dataset of text is
tokenized here, block by block, with the Numba tokenizer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from fastload.errors import FormatError
from fastload.format.reader import Dataset, column_view
from fastload.kernels.pack import fill_packed_run, fill_padding
from fastload.packing.plan import PackPlan

__all__ = ["BatchFiller", "PackedArrays"]


@dataclass(frozen=True)
class PackedArrays:
    """A rank's packed batch: (rows, seq_len) each."""

    input_ids: np.ndarray  # int64 token ids
    labels: np.ndarray  # int64: input_ids shifted by one; -100 where the next token is padding
    position_ids: np.ndarray  # int64: position inside the document's piece in this row, from 0
    document_ids: np.ndarray  # int32: which document piece of the row, from 0 (attend where equal)

    def as_dict(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels, "position_ids": self.position_ids, "document_ids": self.document_ids}


@dataclass(frozen=True)
class _WindowTable:
    """A window's units, resolved to loaded blocks: unit u copies ntok[u] tokens of sources[src[u]] from off[u]."""

    start: int
    src: np.ndarray
    off: np.ndarray
    ntok: np.ndarray
    cum: np.ndarray
    blocks: tuple[int, ...]


def _allocate_empty(shape: tuple, dtype) -> np.ndarray:
    return np.empty(shape, dtype)


class BatchFiller:
    """Fills packed batches from one dataset column in this process. Not shared between processes."""

    def __init__(self, dataset: Dataset, column: str, *, doc_lengths: np.ndarray, token_dtype, tokenizer=None, eos_id: int, pad_id: int):
        from numba import from_dtype, typed, types

        self.dataset, self.column, self.tokenizer = dataset, column, tokenizer
        self.doc_lengths = doc_lengths
        self.token_dtype = np.dtype(token_dtype)
        self.eos_id, self.pad_id = eos_id, pad_id
        self._empty = np.zeros(0, self.token_dtype)
        self._empty.setflags(write=False)
        self.sources = typed.List.empty_list(types.Array(from_dtype(self.token_dtype), 1, "C", readonly=True))
        self._free: list[int] = []
        self._blocks: dict[int, list] = {}  # block id -> [slot, token offsets (int64), windows using it]
        self._tables: OrderedDict[tuple, _WindowTable] = OrderedDict()
        self.blocks_loaded = 0  # blocks read (and tokenized) by this process: a measure of locality

    # -- blocks --------------------------------------------------------------------

    def _block_tokens(self, block_id: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.dataset.read_block(block_id)
        if self.tokenizer is None:
            ragged = column_view(batch, self.dataset.schema, self.column)
            values, offsets = ragged.values, np.asarray(ragged.offsets, np.int64)
        else:
            values, offsets = self.tokenizer.encode_arrow(batch.column(self.column))
        first, last = int(self.dataset.block_starts[block_id]), int(self.dataset.block_starts[block_id + 1])
        if len(offsets) != last - first + 1 or not np.array_equal(np.diff(offsets), self.doc_lengths[first:last]):
            raise FormatError(
                f"block {block_id} of {str(self.dataset.path)!r} holds documents of other lengths than when the packing "
                "plan was made: the dataset changed since it was opened (or the tokenizer differs). Open it again."
            )
        values = np.ascontiguousarray(values, dtype=self.token_dtype)
        if values.flags.writeable:
            values = values.view()
            values.setflags(write=False)
        return values, offsets

    def _acquire(self, block_id: int) -> list:
        entry = self._blocks.get(block_id)
        if entry is None:
            values, offsets = self._block_tokens(block_id)
            self.blocks_loaded += 1
            if self._free:
                slot = self._free.pop()
                self.sources[slot] = values
            else:
                slot = len(self.sources)
                self.sources.append(values)
            entry = self._blocks[block_id] = [slot, offsets, 0]
        entry[2] += 1
        return entry

    def _release(self, block_id: int) -> None:
        entry = self._blocks[block_id]
        entry[2] -= 1
        if entry[2] == 0:
            del self._blocks[block_id]
            self.sources[entry[0]] = self._empty
            self._free.append(entry[0])

    # -- windows -------------------------------------------------------------------

    def _table(self, plan: PackPlan, plan_key: tuple, w: int) -> _WindowTable:
        key = (plan_key, w)
        table = self._tables.get(key)
        if table is not None:
            self._tables.move_to_end(key)
            return table
        units = plan.window(w)
        starts = self.dataset.block_starts
        block_of = np.searchsorted(starts, units.doc, side="right") - 1
        blocks = np.unique(block_of)
        src = np.empty(len(units.doc), np.int64)
        off = np.empty(len(units.doc), np.int64)
        for block_id in blocks.tolist():
            slot, offsets, _ = self._acquire(block_id)
            mine = block_of == block_id
            src[mine] = slot
            off[mine] = offsets[units.doc[mine] - starts[block_id]] + units.skip[mine]
        ntok = np.clip(self.doc_lengths[units.doc] - units.skip, 0, units.take)  # real tokens; the rest is the EOS
        table = _WindowTable(units.start, src, off, ntok, units.cum, tuple(blocks.tolist()))
        self._tables[key] = table
        while len(self._tables) > 2 * plan.num_partitions + 2:
            _, old = self._tables.popitem(last=False)
            for block_id in old.blocks:
                self._release(block_id)
        return table

    # -- batches -------------------------------------------------------------------

    def fill(self, plan: PackPlan, plan_key: tuple, batch: int, rank: int, world_size: int, allocate=_allocate_empty) -> PackedArrays:
        """Rank `rank`'s rows of global batch `batch`, in arrays from `allocate(shape, dtype)`."""
        shape = (plan.global_batch_size // world_size, plan.seq_len)
        out = PackedArrays(allocate(shape, np.int64), allocate(shape, np.int64), allocate(shape, np.int64), allocate(shape, np.int32))
        arrays = dict(input_ids=out.input_ids, labels=out.labels, positions=out.position_ids, segments=out.document_ids)
        for run in plan.rank_runs(batch, rank, world_size):
            if run.window < 0:
                fill_padding(run.end - run.begin, run.out_start, pad_id=self.pad_id, **arrays)
                continue
            t = self._table(plan, plan_key, run.window)
            fill_packed_run(self.sources, t.src, t.off, t.ntok, t.cum, run.begin - t.start, run.end - t.start, run.out_start, eos_id=self.eos_id, **arrays)
        return out
