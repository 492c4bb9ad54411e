"""`TokenDocuments`: what packed and padded datasets share — documents of token ids.

Which column holds the documents (a tokens column, or text tokenized on the
fly with a `Tokenizer`), the EOS and padding ids, every document's length
(read from the offsets, or counted by tokenizing once: `counts.py`), and
the blocks this process has loaded. Subclasses decide how documents become rows.
"""

from __future__ import annotations

import os

import numpy as np

from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.packing.blocks import TokenBlocks
from fastload.packing.counts import cached_counts_path, load_cached_counts, save_counts, tokenize_to_count
from fastload.packing.lengths import DocumentLengths
from fastload.sampler import SamplerOptions
from fastload.sampler.batch_dataset import BatchDataset

__all__ = ["TokenDocuments"]


class TokenDocuments(BatchDataset):
    """Documents of token ids from a fastload dataset; see `PackedDataset` for the arguments."""

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
        doc_lengths: np.ndarray | None = None,
    ):
        super().__init__(sampling)
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        if type(seq_len) is not int or seq_len < 1:
            raise ConfigError(f"seq_len must be a positive integer, found {seq_len!r}")
        self.seq_len, self.add_eos = seq_len, bool(add_eos)
        self.column, self.tokenizer = self._resolve_column(column, tokenizer)
        self.eos_id = self._resolve_eos(eos_id)
        self.pad_id = pad_id if pad_id is not None else (self.eos_id if self.eos_id is not None else 0)
        self._doc_lengths = None if doc_lengths is None else self._check_lengths(doc_lengths)
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._blocks: TokenBlocks | None = None
        self._lengths: DocumentLengths | None = None

    def _token_blocks(self, *, keep_unused: int, lengths: DocumentLengths | None, by_document: bool = False) -> TokenBlocks:
        """This process's loaded blocks; `lengths`, when given, learn or check every block loaded;
        `by_document`: text is tokenized as the packing kernel asks for documents (see `blocks.py`)."""
        if self._blocks is None:
            self._blocks = TokenBlocks(
                self.dataset, self.column, lengths=lengths, token_dtype=self.token_dtype,
                tokenizer=self.tokenizer, keep_unused=keep_unused, by_document=by_document,
            )
        return self._blocks

    def _resolve_column(self, column: str | None, tokenizer):
        schema = self.dataset.schema
        kinds = {c.name: c.kind for c in schema}
        if column is None:
            tokens = [name for name, kind in kinds.items() if kind == "tokens"]
            texts = [name for name, kind in kinds.items() if kind == "text"]
            if tokenizer is None and tokens:
                column = "tokens" if "tokens" in tokens else tokens[0]
            elif tokenizer is not None and texts:
                column = "text" if "text" in texts else texts[0]
            elif tokens:
                column = "tokens" if "tokens" in tokens else tokens[0]
            else:
                raise ConfigError(
                    f"{self.dataset!r} has no tokens column to pack; pass tokenizer= to tokenize its text column on the "
                    "fly, or convert it with 'fastload convert --tokenizer'"
                )
        if column not in kinds:
            raise ConfigError(f"{self.dataset!r} has no column {column!r}; its columns are {', '.join(kinds)}")
        kind = kinds[column]
        if kind == "text":
            if tokenizer is None:
                raise ConfigError(f"column {column!r} holds text: pass tokenizer= to tokenize it on the fly")
            return column, tokenizer
        if kind != "tokens":
            raise ConfigError(f"column {column!r} is of kind {kind!r}; packing needs a tokens column, or a text column and a tokenizer")
        if tokenizer is not None and not self.dataset.allow_tokenizer_mismatch:
            self.dataset._check_tokenizer(tokenizer)
        return column, None  # already token ids: the tokenizer, if any, only supplied the EOS id

    def _resolve_eos(self, eos_id: int | None) -> int | None:
        if eos_id is None and self.tokenizer is not None:
            eos_id = self.tokenizer.eos_id
        if eos_id is None:
            eos_id = (self.dataset.index.tokenizer or {}).get("eos_id")
        if self.add_eos and eos_id is None:
            raise ConfigError(
                "no EOS token id is known for this dataset (none recorded at conversion, and no tokenizer with one "
                "given): pass eos_id=, or add_eos=False to pack documents back to back"
            )
        if eos_id is not None and (type(eos_id) is not int or eos_id < 0):
            raise ConfigError(f"eos_id must be a non-negative integer, found {eos_id!r}")
        return eos_id

    @property
    def token_dtype(self) -> np.dtype:
        if self.tokenizer is not None:
            return np.dtype(np.uint32)  # what the tokenizer emits
        return np.dtype(self.dataset.schema[self.column].numpy_dtype)

    # -- document lengths ----------------------------------------------------------

    def _check_lengths(self, lengths) -> np.ndarray:
        lengths = np.asarray(lengths)
        if lengths.shape != (self.dataset.num_rows,) or lengths.dtype.kind not in "iu" or (len(lengths) and lengths.min() < 0):
            raise ConfigError(f"doc_lengths must be {self.dataset.num_rows:,} non-negative integers, one per row of the dataset")
        return lengths.astype(np.int64)

    def document_lengths(self) -> DocumentLengths:
        """The documents' lengths as packing plans read them (see `lengths.py`): for a tokens column whose
        index records every block's total, per block up front and per document when a window needs it,
        so that nothing reads every block before the first batch; otherwise `doc_lengths`, all at once."""
        if self._lengths is None:
            totals = self.dataset.index.block_values(self.column) if self._doc_lengths is None and self.tokenizer is None else None
            if totals is not None:
                column, dataset = self.column, self.dataset
                self._lengths = DocumentLengths(
                    dataset.block_starts, block_totals=totals, read_block=lambda b: dataset.block_row_lengths(column, b), where=repr(str(dataset.path)),
                )
            else:
                self._lengths = DocumentLengths(self.dataset.block_starts, lengths=self.doc_lengths)
        return self._lengths

    @property
    def doc_lengths(self) -> np.ndarray:
        """Tokens of every document (storage order): read from offsets, or counted by tokenizing once (see `count_tokens`)."""
        return self._doc_lengths if self._doc_lengths is not None else self.count_tokens()

    def count_tokens(self, *, quiet: bool = False) -> np.ndarray:
        """Every document's token count: read from a tokens column's offsets; for text, read from the
        cache or counted by tokenizing the column once, in parallel, with a progress bar on a terminal
        (`quiet=True`: none), then cached (see `packing/counts.py`). Call it ahead to count when you choose."""
        if self._doc_lengths is None:
            if self.tokenizer is None:
                self._doc_lengths = self.dataset.row_lengths(self.column)
            else:
                self._doc_lengths = self._count_tokens(quiet=quiet)
        return self._doc_lengths

    def _count_tokens(self, *, quiet: bool) -> np.ndarray:
        """Read the counts cached by an earlier run, or tokenize the column once to count and cache them."""
        cached = cached_counts_path(self.dataset, self.column, self.tokenizer)
        saved = load_cached_counts(cached)
        if saved is not None:
            try:
                return self._check_lengths(saved)
            except ConfigError:
                pass  # stale: count again and overwrite it
        lengths = self._tokenize_to_count(quiet=quiet)
        if cached is not None:
            save_counts(cached, lengths)
        return lengths

    def _tokenize_to_count(self, *, quiet: bool = False) -> np.ndarray:
        return tokenize_to_count(self.dataset, self.column, self.tokenizer, quiet=quiet)

    def save_lengths(self, path: str | os.PathLike) -> None:
        """Save the document lengths (`np.save`), to pass back as `doc_lengths=np.load(path)`."""
        np.save(path, self.doc_lengths)

    # -- pickling: configuration and lengths travel, blocks and plans are per process --

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in list(state):
            if name in self._PROCESS_STATE:
                state[name] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    _PROCESS_STATE = ("_blocks", "_lengths")  # _lengths: its read_block closure and read-ahead threads do not pickle

