"""`TokenBlocks`: the token arrays of the blocks a process is using, reachable by address.

Both packed and padded batches read documents from many blocks in one
kernel call. This keeps each loaded block's token array alive in a slot
whose address and size the kernels read (see `kernels/pointers.py`),
counts who uses it, and keeps a bounded number of unused blocks around in
case they are wanted again. Loading a block checks it (CRC and Arrow
validation, in `Dataset.read_block`), tokenizes it when the dataset holds
text, and checks its document lengths against the ones the batches were
planned with (when the caller knows them).

Text is tokenized whole-block or document by document (`by_document`).
Whole-block is what a padded batch gets, and what any caller gets while the
document lengths are unknown. Packed batches know every length before the
first batch (the plan is built from them), and tokenizing whole blocks made
them wait: a batch of the `block_window` order reaches into a window of
every partition (up to 64), so the first batch waited for tens of whole
blocks to be tokenized to use ~16k tokens of them (bench/loader_tokens.py,
200 MB of text in 179 blocks, 2 cores: first batch 1.37 s with 0 workers
and 2.90 s with 2; by document 0.13 s and 0.63 s). By document, loading a
block only reads and checks its text and allocates its whole token array
from the lengths (each document's place is their running sum, so every
address a window table holds stays right); a per-document flag
(`ready`) says which places are filled. The packing kernel notes each
document it copies whose flag is clear, the caller tokenizes those (one
tokenizer call per block, only their bytes: `Tokenizer.encode_arrow(...,
documents=)`), sets the flags and writes the rows again. A document's
tokens are checked against its planned length when they are made. Work
per batch is then the documents it touches, not the blocks they are in;
over an epoch each document is still tokenized once per process while its
block stays loaded. `documents_tokenized` and `bytes_tokenized` count the
work, for tests and benchmarks.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from fastload.errors import FormatError
from fastload.format.reader import Dataset, column_view
from fastload.kernels.pointers import address_of
from fastload.packing.lengths import DocumentLengths
from fastload.tokenizer.batch import string_bytes

__all__ = ["AddressBook", "TokenBlocks"]


class AddressBook:
    """Arrays kept alive by slot, with their addresses and sizes as int64 arrays a kernel reads.

    A dropped slot reads as address 0, size 0, which every kernel's bounds check refuses.
    Growing replaces both arrays by larger copies: whatever holds the old ones (a kernel argument row
    of `fill_packed_parts`) is stale from then on, and `AddressBook.growths` tells it so.
    """

    growths = 0  # times any book of this process replaced its arrays: a row of addresses made before may point at old ones

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
                AddressBook.growths += 1
        self.address[slot], self.size[slot] = address_of(array), size
        return slot

    def drop(self, slot: int) -> None:
        self.address[slot] = self.size[slot] = 0
        self.arrays[slot] = None
        self._free.append(slot)


class TokenBlocks:
    """Loaded blocks of one tokens (or text, tokenized here) column, by block id. One per process.

    by_document: tokenize text document by document as batches need them
    (packed batches: the kernel asks, see `fill_packed_rows`); needs
    `lengths`. Otherwise a block of text is tokenized whole when loaded.
    `lengths` (a `DocumentLengths`), when given, learns or checks the
    lengths of every block loaded.
    """

    def __init__(self, dataset: Dataset, column: str, *, lengths: DocumentLengths | None, token_dtype, tokenizer=None, keep_unused: int = 0, by_document: bool = False):
        self.dataset, self.column, self.tokenizer = dataset, column, tokenizer
        self.lengths = lengths
        self.book = AddressBook()
        self.token = np.zeros(0, np.dtype(token_dtype))  # tells a kernel the token dtype
        self.keep_unused = keep_unused
        self._entries: dict[int, _Loaded] = {}
        self.slot_of_block = np.full(dataset.num_blocks, -1, np.int64)  # for kernels: where each loaded block is
        self._unused: OrderedDict[int, None] = OrderedDict()  # loaded, no users, oldest first
        self.blocks_loaded = 0  # blocks read (and tokenized) by this process: a measure of locality
        self.by_document = tokenizer is not None and lengths is not None and by_document
        # Per document of the dataset: 1 once its tokens are in its loaded block (by_document only;
        # empty tells the kernel that every loaded block is complete).
        self.ready = np.zeros(dataset.num_rows if self.by_document else 0, np.uint8)
        self._missing = np.zeros(1 + _MISSING_PER_CALL, np.int64)  # where the kernel names documents not tokenized yet
        self.documents_tokenized = 0  # documents this process has tokenized (text only)
        self.bytes_tokenized = 0  # and their UTF-8 bytes

    @property
    def sources(self) -> tuple:
        """What the kernels take as `sources`: (addresses, sizes, empty array of the token dtype)."""
        return self.book.address, self.book.size, self.token

    @property
    def documents(self) -> tuple | None:
        """What `fill_packed_rows` takes as `documents`: (ready flags, buffer for missing ids), or None when blocks are whole."""
        return (self.ready, self._missing) if self.by_document else None

    def _load(self, block_id: int) -> _Loaded:
        batch = self.dataset.read_block(block_id)
        first, last = int(self.dataset.block_starts[block_id]), int(self.dataset.block_starts[block_id + 1])
        if batch.num_rows != last - first:
            raise FormatError(f"block {block_id} of {str(self.dataset.path)!r} holds {batch.num_rows} documents, not {last - first}")
        if self.tokenizer is None:
            ragged = column_view(batch, self.dataset.schema, self.column)
            values, offsets = ragged.values, np.asarray(ragged.offsets, np.int64)
        elif self.by_document:  # room for every document, filled as batches need them (see the module docstring)
            text = batch.column(self.column)
            offsets = np.concatenate([[0], np.cumsum(self.lengths.of_block(block_id))]).astype(np.int64)
            return _Loaded(np.zeros(int(offsets[-1]), self.token.dtype), offsets, text)
        else:
            text = batch.column(self.column)
            values, offsets = self.tokenizer.encode_arrow(text)
            self.documents_tokenized += last - first
            self.bytes_tokenized += int(string_bytes(text).sum())
        if self.lengths is not None:
            self._check_lengths(block_id, np.diff(np.asarray(offsets, np.int64)))
        offsets = np.asarray(offsets, np.int64)
        values = np.ascontiguousarray(values[offsets[0] :], dtype=self.token.dtype)
        return _Loaded(values, offsets - offsets[0], None)  # a block's first document starts at token 0

    def _check_lengths(self, block_id: int, found: np.ndarray) -> None:
        """A loaded block's documents have the lengths its batches were planned with (a block planned
        from index.json's totals alone has its lengths learnt here, and checked against the total)."""
        if self.lengths.knows(block_id):
            if not np.array_equal(found, self.lengths.of_block(block_id)):
                raise self._changed(block_id)
        else:
            self.lengths.learn(block_id, found)

    def _changed(self, block_id: int) -> FormatError:
        return FormatError(
            f"block {block_id} of {str(self.dataset.path)!r} holds documents of other lengths than when the batches "
            "were planned: the dataset changed since it was opened (or the tokenizer differs). Open it again."
        )

    def acquire(self, block_id: int) -> tuple[int, np.ndarray]:
        """(slot, token offsets of its documents) of a block, loading it if needed; one more user."""
        entry = self._entries.get(block_id)
        if entry is None:
            entry = self._load(block_id)
            self.blocks_loaded += 1
            entry.slot = self.book.put(entry.values, len(entry.values))
            self._entries[block_id] = entry
            self.slot_of_block[block_id] = entry.slot
        elif entry.users == 0:
            del self._unused[block_id]
        entry.users += 1
        return entry.slot, entry.offsets

    def release(self, block_id: int) -> None:
        """One user fewer; an unused block is kept (up to `keep_unused` of them) or dropped."""
        entry = self._entries[block_id]
        entry.users -= 1
        if entry.users == 0:
            self._unused[block_id] = None
            while len(self._unused) > self.keep_unused:
                old, _ = self._unused.popitem(last=False)
                self.book.drop(self._entries.pop(old).slot)
                self.slot_of_block[old] = -1
                if self.by_document:  # its tokens go with it
                    self.ready[self.dataset.block_starts[old] : self.dataset.block_starts[old + 1]] = 0

    def tokenize(self, doc_ids: np.ndarray) -> None:
        """Tokenize documents (global ids, repeats allowed) of loaded blocks into their places; by_document only."""
        docs = np.unique(np.asarray(doc_ids, np.int64))
        docs = docs[self.ready[docs] == 0]
        starts = self.dataset.block_starts
        block_of = np.searchsorted(starts, docs, side="right") - 1
        for block_id in np.unique(block_of).tolist():
            entry = self._entries.get(block_id)
            if entry is None or entry.text is None:  # pragma: no cover - a bug, not data
                raise RuntimeError(f"documents of block {block_id} were asked for, but it is not loaded by document")
            mine = docs[block_of == block_id]
            local = mine - starts[block_id]
            ids, offsets = self.tokenizer.encode_arrow(entry.text, documents=local)
            if not np.array_equal(np.diff(offsets), self.lengths.of_block(block_id)[local]):
                raise self._changed(block_id)
            places = entry.offsets
            for i, d in enumerate(local.tolist()):
                entry.values[places[d] : places[d + 1]] = ids[offsets[i] : offsets[i + 1]]
            self.ready[mine] = 1
            self.documents_tokenized += len(mine)
            self.bytes_tokenized += int(entry.text_bytes[local].sum())


_MISSING_PER_CALL = 4096  # documents the kernel names per call; a batch needing more is asked for again


class _Loaded:
    """One loaded block: its token array (in `slot` of the address book), document offsets,
    users, and, tokenized by document, its text column."""

    __slots__ = ("values", "offsets", "text", "text_bytes", "slot", "users")

    def __init__(self, values: np.ndarray, offsets: np.ndarray, text):
        self.values, self.offsets, self.text = values, offsets, text
        self.text_bytes = None if text is None else string_bytes(text)  # per document, to count the work
        self.slot, self.users = -1, 0
