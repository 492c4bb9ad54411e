"""`DocumentLengths`: every document's token count, block by block — known up front, or read when first needed.

A packed epoch is planned from each block's token total alone (the epoch's
geometry: partitions, windows, where each batch's rows start); a document's
own length is needed only when a window that holds it is laid out
(`PackPlan.window`, `BatchFiller`), which happens in the process that fills
those rows, just before it reads the window's blocks anyway. So when
`index.json` records every block's total (`blocks.values`, written by
fastload since 2026-12), nothing has to read every block's offsets before
the first batch: a dataset in object storage is planned from `index.json`
alone, and a large local one opens without a pass over its blocks. Older
datasets, text counted by a tokenizer and user-supplied lengths give every
length up front, and the same object answers from that array.

A block's lengths read late are checked against the total the plan was built
from: an index that disagrees with its shards is a `FormatError`, never a
batch of shifted tokens. In object storage each read is a round trip, so the
process that fills batches reads them ahead along its read order
(`read_ahead`), a bounded number at a time, in background threads.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np

from fastload.errors import FormatError

__all__ = ["DocumentLengths"]

READ_AHEAD_BLOCKS = 64  # blocks whose lengths are being read ahead at once (each a round trip or two in object storage)


class DocumentLengths:
    """Token counts of the documents (rows) of a dataset whose blocks start at rows `block_starts`.

    Give `lengths` (every document's, int64), or `block_totals` (tokens per
    block) with `read_block(block_id) -> that block's document lengths`.
    Blocks read are kept: a process keeps the lengths of the blocks it has
    planned windows over (8 bytes a document), never more than all of them.
    """

    def __init__(self, block_starts: np.ndarray, *, lengths: np.ndarray | None = None, block_totals: np.ndarray | None = None,
                 read_block: Callable[[int], np.ndarray] | None = None, where: str = "the dataset"):
        self.block_starts = np.asarray(block_starts, np.int64)
        self.num_blocks = len(self.block_starts) - 1
        self.num_documents = int(self.block_starts[-1])
        self.where = where
        if lengths is not None:
            self._all = np.asarray(lengths, np.int64)
            cum = np.concatenate([[0], np.cumsum(self._all)])
            self.block_totals = cum[self.block_starts[1:]] - cum[self.block_starts[:-1]]
            self._read_block = None
            self._offset_all = None
        else:
            if block_totals is None or read_block is None:
                raise ValueError("give lengths, or block_totals with read_block")
            self._all = None
            self.block_totals = np.asarray(block_totals, np.int64)
            self._read_block = read_block
            self._blocks: dict[int, np.ndarray] = {}
            self._ahead: dict[int, Future] = {}  # blocks being read ahead, in the order given
            self._order: Iterable[int] = iter(())
            self._threads: ThreadPoolExecutor | None = None
            self._threads_pid: int | None = None  # a forked child starts its own threads

    def knows(self, block_id: int) -> bool:
        """Whether a block's document lengths are known without reading it."""
        return self._all is not None or block_id in self._blocks

    @property
    def num_tokens(self) -> int:
        return int(self.block_totals.sum())

    def of_block(self, block_id: int) -> np.ndarray:
        """The lengths of one block's documents (read, checked and kept on first use)."""
        if self._all is not None:
            return self._all[self.block_starts[block_id] : self.block_starts[block_id + 1]]
        found = self._blocks.get(block_id)
        if found is None:
            ahead = self._ahead.pop(block_id, None) if self._threads_pid == os.getpid() else None
            found = self.learn(block_id, ahead.result() if ahead is not None else self._read_block(block_id))
            self._top_up()
        return found

    def read_ahead(self, order) -> None:
        """This process lays out windows over these blocks in this order: read their lengths ahead, at
        most `READ_AHEAD_BLOCKS` at a time, in background threads (replaces an earlier order)."""
        if self._all is None:
            if self._threads_pid != os.getpid():
                self._threads = ThreadPoolExecutor(READ_AHEAD_BLOCKS, thread_name_prefix="fastload-lengths")
                self._threads_pid, self._ahead = os.getpid(), {}
            self._order = iter(dict.fromkeys(int(b) for b in order))  # first use of each block
            self._top_up()

    def _top_up(self) -> None:
        if self._threads_pid != os.getpid():
            return
        while len(self._ahead) < READ_AHEAD_BLOCKS:
            block_id = next(itertools.dropwhile(lambda b: b in self._blocks or b in self._ahead, self._order), None)
            if block_id is None:
                return
            self._ahead[block_id] = self._threads.submit(self._read_block, block_id)

    def learn(self, block_id: int, lengths: np.ndarray) -> np.ndarray:
        """Record a block's document lengths seen elsewhere (its offsets, once loaded); checked against
        what the plan assumed. Returns them as kept."""
        lengths = np.asarray(lengths, np.int64)
        rows = int(self.block_starts[block_id + 1] - self.block_starts[block_id])
        if len(lengths) != rows or int(lengths.sum()) != int(self.block_totals[block_id]) or (rows and lengths.min() < 0):
            raise FormatError(
                f"block {block_id} of {self.where} holds {len(lengths):,} documents of {int(lengths.sum()):,} tokens, but "
                f"index.json records {rows:,} rows and {int(self.block_totals[block_id]):,} tokens: the index and the "
                f"shards disagree. Run 'fastload verify' on it."
            )
        if self._all is not None:
            raise RuntimeError("lengths known up front are not learnt")  # pragma: no cover - a bug, not data
        self._blocks[block_id] = lengths
        self._ahead.pop(block_id, None)  # learnt from the block itself first: its read ahead is not needed
        return lengths

    def documents_of(self, blocks: np.ndarray) -> np.ndarray:
        """The ids of the documents of `blocks`, block after block in the order given."""
        firsts, lasts = self.block_starts[blocks], self.block_starts[blocks + 1]
        counts = lasts - firsts
        return np.repeat(firsts - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(int(counts.sum()))

    def of_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """The lengths of the documents of `blocks` (`documents_of`), block after block in the order given."""
        if self._all is not None:
            return self._all[self.documents_of(blocks)]
        parts = [self.of_block(int(b)) for b in blocks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def locate(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For documents (global ids): (their block, their first token within it, their length)."""
        docs = np.asarray(docs, np.int64)
        block = np.searchsorted(self.block_starts, docs, side="right") - 1
        if self._all is not None:
            if self._offset_all is None:  # where each document starts in its block, for all at once
                cum = np.concatenate([[0], np.cumsum(self._all)])
                self._offset_all = cum[:-1] - np.repeat(cum[self.block_starts[:-1]], np.diff(self.block_starts))
            return block, self._offset_all[docs], self._all[docs]
        offset = np.empty(len(docs), np.int64)
        length = np.empty(len(docs), np.int64)
        for b in np.unique(block).tolist():
            mine = block == b
            lengths = self.of_block(b)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            local = docs[mine] - self.block_starts[b]
            offset[mine], length[mine] = starts[local], lengths[local]
        return block, offset, length
