"""`PaddedDataset`: one document per row, cut to `seq_len + 1` tokens and padded, with an attention mask.

    padded = fastload.PaddedDataset("data/corpus", seq_len=512)
    loader = fastload.DataLoader(padded, batch_size=32, num_workers=2, shuffle=True)
    for batch in loader:      # input_ids, labels, attention_mask, position_ids: (32, 512) each
        ...

For fine-tuning and classification-style data where a row must hold one
document. The rows of a batch are the sample ids a `fastload.Sampler` picks
(so the `block_window` shuffle, distributed splitting and resumption are
the sampler's); a worker loads their blocks and one kernel writes the batch
into its slot. Row r holds document tokens, then EOS (`add_eos`), cut to
seq_len + 1: inputs are the first seq_len (padded with `pad_id`), labels the
last seq_len (-100 past the document), `attention_mask` 1 on real inputs.
Documents longer than seq_len + 1 tokens lose their tail; use
`PackedDataset` to keep every token.
"""

from __future__ import annotations

import os

import numpy as np

from fastload.format.reader import Dataset
from fastload.kernels.pack import fill_padded_batch
from fastload.packing.documents import TokenDocuments
from fastload.packing.lengths import DocumentLengths
from fastload.packing.rows import row_number
from fastload.sampler import Mixture, Sampler, SamplerOptions
from fastload.sampler.mixture_dataset import RowMixture, open_sources, same_ids

__all__ = ["PaddedDataset"]


class PaddedDataset(TokenDocuments):
    """Documents of a fastload dataset, one per row; arguments as `PackedDataset` (no remainder:
    the loader's `drop_last` drops an incomplete last batch, else it is completed from the start).
    A `fastload.Mixture` in place of the dataset pads the documents of several, in its proportions."""

    def __new__(cls, dataset=None, *args, **kwargs):
        if isinstance(dataset, Mixture):
            return _padded_mixture(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        dataset: Dataset | str | os.PathLike,
        *,
        seq_len: int,
        column: str | None = None,
        tokenizer=None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        add_eos: bool = True,
        sampling: SamplerOptions | None = None,
    ):
        super().__init__(dataset, seq_len=seq_len, column=column, tokenizer=tokenizer, eos_id=eos_id, pad_id=pad_id, add_eos=add_eos, sampling=sampling)

    def _blocks_for_batches(self):
        # No plan needs the lengths here: a tokens column's are checked as blocks load (against each
        # block's total in index.json, without a pass over every block first), and a text column is
        # never counted ahead (counts given or counted earlier are checked).
        if self.tokenizer is None:
            lengths = self.document_lengths()
        else:
            lengths = None if self._doc_lengths is None else DocumentLengths(self.dataset.block_starts, lengths=self._doc_lengths)
        return self._token_blocks(keep_unused=self.live_blocks(self.dataset.num_blocks), lengths=lengths)

    def batch_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False) -> Sampler:
        """The sampler `fastload.DataLoader` uses: a `fastload.Sampler` over documents."""
        options = self.sampler_options(shuffle=shuffle, drop_last=drop_last)
        return Sampler(self.dataset.block_rows, global_batch_size=global_batch_size, rank=rank, world_size=world_size, options=options)

    def __fastload_batch__(self, sample_ids, allocate, rows: tuple[int, int] | None = None) -> dict:
        """The rows of `sample_ids` as a dict of arrays from `allocate(shape, dtype)`; with
        `rows=(lo, hi)` only those rows are written (see `BatchDataset`)."""
        ids = np.asarray(sample_ids, np.int64)
        shape = (len(ids), self.seq_len)
        out = {
            "input_ids": allocate(shape, np.int64),
            "labels": allocate(shape, np.int64),
            "attention_mask": allocate(shape, np.int64),
            "position_ids": allocate(shape, np.int64),
        }
        first, last = (0, len(ids)) if rows is None else rows
        ids = ids[first:last]  # no rows (how the loader sizes slots) still runs the kernel, loading it once before workers fork
        if len(ids) and (ids.min() < 0 or ids.max() >= self.dataset.num_rows):
            raise IndexError(f"document ids must be in [0, {self.dataset.num_rows:,})")
        blocks = self._blocks if self._blocks is not None else self._blocks_for_batches()
        starts = self.dataset.block_starts
        block_of = np.searchsorted(starts, ids, side="right") - 1
        src, off, ntok = np.empty_like(ids), np.empty_like(ids), np.empty_like(ids)
        used = np.unique(block_of).tolist()
        for block_id in used:
            slot, offsets = blocks.acquire(block_id)
            mine = block_of == block_id
            local = ids[mine] - starts[block_id]
            src[mine], off[mine], ntok[mine] = slot, offsets[local], offsets[local + 1] - offsets[local]
        mine = {name: array[first:last] for name, array in out.items()}
        try:
            fill_padded_batch(
                blocks.sources, src, off, ntok, add_eos=self.add_eos, eos_id=self.eos_id if self.eos_id is not None else 0,
                pad_id=self.pad_id, input_ids=mine["input_ids"], labels=mine["labels"], attention_mask=mine["attention_mask"], positions=mine["position_ids"],
            )
        finally:
            for block_id in used:
                blocks.release(block_id)
        return out

    def __len__(self) -> int:
        return self.dataset.num_rows

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            batch = self.__fastload_batch__([row_number(index, len(self), "documents")], np.empty)
            return {name: array[0] for name, array in batch.items()}
        return self.__fastload_batch__(index, np.empty)

    def __repr__(self) -> str:
        source = f"tokenized on the fly from {self.column!r}" if self.tokenizer is not None else f"column {self.column!r}"
        return f"PaddedDataset({str(self.dataset.path)!r}, seq_len={self.seq_len}, {source}, eos_id={self.eos_id}, pad_id={self.pad_id})"


def _padded_mixture(mixture: Mixture, *, sampling: SamplerOptions | None = None, **arguments) -> RowMixture:
    """One `PaddedDataset` per source, sharing every argument (one EOS and padding id: rows meet in a batch)."""
    sources = open_sources(mixture, lambda name, dataset: PaddedDataset(dataset, **arguments))
    same_ids(mixture.names, sources)
    return RowMixture(mixture, sources, sampling=sampling)
