"""Pack documents into fixed windows for language-model pretraining.

The token stream of an epoch is every document in sampler order, each
followed by one EOS token. A batch row is the next window of `seq_len + 1`
tokens of that stream (inputs are the first `seq_len`, labels the last
`seq_len`, so labels are inputs shifted by one). For attention that stays
inside a document, each row also gets:

- `segments[r, t]`: which piece of a document token t belongs to, counted
  from 0 at the start of the row (a document cut by a row boundary starts a
  new segment in the next row: attention cannot reach the previous row);
- `positions[r, t]`: the token's position inside its segment (restarting at
  0 for every segment, so it never exceeds `seq_len`).

`pack_documents` is the kernel (Numba, writes into caller buffers, returns
where it stopped so the next call continues the stream); `pack_reference`
is its slow, readable twin for the tests. `cu_seqlens` turns segments into
flash-attention-style offsets. What this module does not do: decide the
order of documents (the sampler) or read blocks (the worker).
"""

from __future__ import annotations

import numpy as np

from fastload.errors import FormatError
from fastload.kernels.jit import kernel

__all__ = ["pack_documents", "pack_reference", "cu_seqlens", "PackCursor"]

# Codes the kernel returns instead of raising (Numba raises only constant messages;
# the wrapper turns these into errors that name the document).
_OK, _BAD_OFFSETS, _BAD_ORDER = 0, 1, 2


@kernel
def _pack_kernel(values, offsets, order, doc_index, token_index, eos_id, out_tokens, out_segments, out_positions):
    """Fill rows of `out_*` (rows, window) from the stream; returns (status, doc_index, token_index, rows, detail)."""
    num_docs = offsets.shape[0] - 1
    num_values = values.shape[0]
    rows, window = out_tokens.shape
    row = 0
    col = 0
    segment = 0
    position = 0
    while row < rows and doc_index < order.shape[0]:
        doc = order[doc_index]
        if doc < 0 or doc >= num_docs:
            return _BAD_ORDER, doc_index, token_index, row, doc
        start = offsets[doc]
        end = offsets[doc + 1]
        if start < 0 or end < start or end > num_values:
            return _BAD_OFFSETS, doc_index, token_index, row, doc
        length = end - start
        # Tokens left in this document's piece of the stream: its tokens, then one EOS.
        while token_index <= length and row < rows:
            if token_index < length:
                out_tokens[row, col] = values[start + token_index]
            else:
                out_tokens[row, col] = eos_id
            out_segments[row, col] = segment
            out_positions[row, col] = position
            token_index += 1
            position += 1
            col += 1
            if col == window:  # the row is full: the next row starts a fresh segment
                row += 1
                col = 0
                segment = 0
                position = 0
        if token_index > length:  # document and its EOS written: next document, next segment
            doc_index += 1
            token_index = 0
            if col != 0:
                segment += 1
                position = 0
    return _OK, doc_index, token_index, row, 0


class PackCursor:
    """Where the stream stands: document `doc_index` of the order, token `token_index` of it."""

    __slots__ = ("doc_index", "token_index")

    def __init__(self, doc_index: int = 0, token_index: int = 0):
        self.doc_index, self.token_index = doc_index, token_index

    def __repr__(self) -> str:
        return f"PackCursor(doc_index={self.doc_index}, token_index={self.token_index})"


def pack_documents(values: np.ndarray, offsets: np.ndarray, order: np.ndarray, cursor: PackCursor, *, eos_id: int, out_tokens: np.ndarray, out_segments: np.ndarray, out_positions: np.ndarray) -> int:
    """Write the next complete rows of the stream into the `out_*` arrays (rows, seq_len + 1).

    `values`/`offsets` hold the documents (document i is
    `values[offsets[i]:offsets[i+1]]`), `order` the document indices in
    stream order. Advances `cursor` and returns the number of complete rows
    written; fewer than `out_tokens.shape[0]` means the documents ran out
    (the tokens of the incomplete row after them are written but not counted;
    with `drop` the caller discards them, with padding it fills the rest).
    Each call starts at a row boundary. Offsets or order that point outside
    the data raise `FormatError`.
    """
    if not (out_tokens.shape == out_segments.shape == out_positions.shape) or out_tokens.ndim != 2:
        raise ValueError("out_tokens, out_segments and out_positions must be 2-d arrays of one shape (rows, seq_len + 1)")
    status, doc_index, token_index, rows, detail = _pack_kernel(
        values, np.asarray(offsets, np.int64), np.asarray(order, np.int64), cursor.doc_index, cursor.token_index, eos_id, out_tokens, out_segments, out_positions
    )
    if status == _BAD_ORDER:
        raise FormatError(f"document index {detail} in the packing order is outside the {len(offsets) - 1} documents given")
    if status == _BAD_OFFSETS:
        raise FormatError(
            f"document {detail} has offsets [{int(offsets[detail])}, {int(offsets[detail + 1])}) outside its "
            f"{len(values)} token values; the block is corrupt"
        )
    cursor.doc_index, cursor.token_index = int(doc_index), int(token_index)
    return int(rows)


def pack_reference(documents: list[list[int]], *, eos_id: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slow, obvious packing of whole documents into full rows (a partial last row is dropped)."""
    stream = [token for document in documents for token in [*document, eos_id]]
    doc_of_token = [d for d, document in enumerate(documents) for _ in range(len(document) + 1)]
    num_rows = len(stream) // window
    tokens = np.zeros((num_rows, window), np.int64)
    segments = np.zeros((num_rows, window), np.int64)
    positions = np.zeros((num_rows, window), np.int64)
    for r in range(num_rows):
        segment = position = 0
        for c in range(window):
            i = r * window + c
            if c > 0 and doc_of_token[i] != doc_of_token[i - 1]:  # a new document starts a new segment
                segment, position = segment + 1, 0
            tokens[r, c], segments[r, c], positions[r, c] = stream[i], segment, position
            position += 1
    return tokens, segments, positions


def cu_seqlens(segments: np.ndarray, seq_len: int) -> np.ndarray:
    """Flash-attention `cu_seqlens` (int32) of the inputs (the first `seq_len` columns) of every row.

    Segment starts are where the segment id changes, plus every row start;
    the offsets index the flattened (rows * seq_len) inputs.
    """
    inputs = np.asarray(segments)[:, :seq_len]
    starts = np.ones_like(inputs, dtype=bool)
    starts[:, 1:] = inputs[:, 1:] != inputs[:, :-1]
    flat = np.flatnonzero(starts.reshape(-1))
    return np.concatenate([flat, [inputs.size]]).astype(np.int32)
