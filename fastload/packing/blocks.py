"""`TokenBlocks`: the token arrays of the blocks a process is using, reachable by address.

Both packed and padded batches read documents from many blocks in one
kernel call. This keeps each loaded block's token array alive in a slot
whose address and size the kernels read (see `kernels/pointers.py`),
counts who uses it, and keeps a bounded number of unused blocks around in
case they are wanted again. Loading a block checks it (CRC and Arrow
validation, in `Dataset.read_block`), tokenizes it when the dataset holds
text, and checks its document lengths against the ones the batches were
planned with (when the caller knows them).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from fastload.errors import FormatError
from fastload.format.reader import Dataset, column_view
from fastload.kernels.pointers import address_of

__all__ = ["AddressBook", "TokenBlocks"]


class AddressBook:
    """Arrays kept alive by slot, with their addresses and sizes as int64 arrays a kernel reads.

    A dropped slot reads as address 0, size 0, which every kernel's bounds check refuses.
    """

    def __init__(self):
        self.arrays: list[np.ndarray | None] = []
        self.address = np.zeros(16, np.int64)
        self.size = np.zeros(16, np.int64)
        self._free: list[int] = []

    def put(self, array: np.ndarray, size: int) -> int:
        if self._free:
            slot = self._free.pop()
            self.arrays[slot] = array
        else:
            slot = len(self.arrays)
            self.arrays.append(array)
            if slot == len(self.address):
                self.address = np.concatenate([self.address, np.zeros(slot, np.int64)])
                self.size = np.concatenate([self.size, np.zeros(slot, np.int64)])
        self.address[slot], self.size[slot] = address_of(array), size
        return slot

    def drop(self, slot: int) -> None:
        self.address[slot] = self.size[slot] = 0
        self.arrays[slot] = None
        self._free.append(slot)


class TokenBlocks:
    """Loaded blocks of one tokens (or text, tokenized here) column, by block id. One per process."""

    def __init__(self, dataset: Dataset, column: str, *, doc_lengths: np.ndarray | None, token_dtype, tokenizer=None, keep_unused: int = 0):
        self.dataset, self.column, self.tokenizer = dataset, column, tokenizer
        self.doc_lengths = doc_lengths
        self.book = AddressBook()
        self.token = np.zeros(0, np.dtype(token_dtype))  # tells a kernel the token dtype
        self.keep_unused = keep_unused
        self._entries: dict[int, list] = {}  # block id -> [slot, token offsets (int64), users]
        self.slot_of_block = np.full(dataset.num_blocks, -1, np.int64)  # for kernels: where each loaded block is
        self._unused: OrderedDict[int, None] = OrderedDict()  # loaded, no users, oldest first
        self.blocks_loaded = 0  # blocks read (and tokenized) by this process: a measure of locality

    @property
    def sources(self) -> tuple:
        """What the kernels take as `sources`: (addresses, sizes, empty array of the token dtype)."""
        return self.book.address, self.book.size, self.token

    def _load(self, block_id: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.dataset.read_block(block_id)
        if self.tokenizer is None:
            ragged = column_view(batch, self.dataset.schema, self.column)
            values, offsets = ragged.values, np.asarray(ragged.offsets, np.int64)
        else:
            values, offsets = self.tokenizer.encode_arrow(batch.column(self.column))
        first, last = int(self.dataset.block_starts[block_id]), int(self.dataset.block_starts[block_id + 1])
        if len(offsets) != last - first + 1:
            raise FormatError(f"block {block_id} of {str(self.dataset.path)!r} holds {len(offsets) - 1} documents, not {last - first}")
        if self.doc_lengths is not None and not np.array_equal(np.diff(offsets), self.doc_lengths[first:last]):
            raise FormatError(
                f"block {block_id} of {str(self.dataset.path)!r} holds documents of other lengths than when the batches "
                "were planned: the dataset changed since it was opened (or the tokenizer differs). Open it again."
            )
        offsets = np.asarray(offsets, np.int64)
        values = np.ascontiguousarray(values[offsets[0] :], dtype=self.token.dtype)
        return values, offsets - offsets[0]  # a block's first document starts at token 0

    def acquire(self, block_id: int) -> tuple[int, np.ndarray]:
        """(slot, token offsets of its documents) of a block, loading it if needed; one more user."""
        entry = self._entries.get(block_id)
        if entry is None:
            values, offsets = self._load(block_id)
            self.blocks_loaded += 1
            entry = self._entries[block_id] = [self.book.put(values, len(values)), offsets, 0]
            self.slot_of_block[block_id] = entry[0]
        elif entry[2] == 0:
            del self._unused[block_id]
        entry[2] += 1
        return entry[0], entry[1]

    def release(self, block_id: int) -> None:
        """One user fewer; an unused block is kept (up to `keep_unused` of them) or dropped."""
        entry = self._entries[block_id]
        entry[2] -= 1
        if entry[2] == 0:
            self._unused[block_id] = None
            while len(self._unused) > self.keep_unused:
                old, _ = self._unused.popitem(last=False)
                self.book.drop(self._entries.pop(old)[0])
                self.slot_of_block[old] = -1
