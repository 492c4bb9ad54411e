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

__all__ = ["pack_documents", "pack_reference", "cu_seqlens", "PackCursor", "fill_packed_run", "fill_padding", "IGNORE_INDEX"]

# Codes the kernel returns instead of raising (Numba raises only constant messages;
# the wrapper turns these into errors that name the document).
_OK, _BAD_OFFSETS, _BAD_ORDER = 0, 1, 2
_BAD_RUN, _BAD_SOURCE = 3, 4
IGNORE_INDEX = -100  # the label of padding: torch's cross_entropy ignores it by default


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


# -- packed batches from a plan's windows (fastload.packing) ------------------------------
#
# A *run* is a stretch of one window's stream that fills consecutive positions of a
# rank's batch, seen flat as (rows, seq_len + 1). Each stream token at row position c
# is an input (c < seq_len) and the label of position c - 1 (c >= 1), so inputs and
# labels are written once each, contiguous, with no shifted copy afterwards.


@kernel
def _fill_run_kernel(sources, src, off, ntok, cum, begin, end, out_start, eos_id, input_ids, labels, positions, segments):
    rows, seq_len = input_ids.shape
    row_tokens = seq_len + 1
    num_units = cum.shape[0] - 1
    if begin < 0 or begin > end or end > cum[num_units] or out_start < 0 or out_start + (end - begin) > rows * row_tokens:
        return _BAD_RUN, 0
    u = np.searchsorted(cum, begin, side="right") - 1
    row = out_start // row_tokens
    col = out_start % row_tokens
    segment = 0
    if col > 0:  # a run starts at a unit boundary: a new segment after what the row already holds
        segment = segments[row, col - 1] + 1
    position = 0
    x = begin
    while x < end:
        s = src[u]
        if s < 0 or s >= len(sources):
            return _BAD_SOURCE, u
        data = sources[s]
        first = off[u]
        real = ntok[u]
        if first < 0 or real < 0 or first + real > data.shape[0]:
            return _BAD_OFFSETS, u
        unit_len = cum[u + 1] - cum[u]
        k = x - cum[u]
        k_first = k
        stop = min(unit_len, k + (end - x))
        while k < stop:
            value = data[first + k] if k < real else eos_id
            if col < seq_len:
                input_ids[row, col] = value
                positions[row, col] = position
                segments[row, col] = segment
            if col > 0:
                labels[row, col - 1] = value
            k += 1
            position += 1
            col += 1
            if col == row_tokens:
                row += 1
                col = 0
                segment = 0
                position = 0
        x += k - k_first
        if k == unit_len:
            u += 1
            if col != 0:
                segment += 1
                position = 0
    return _OK, 0


def fill_packed_run(sources, src, off, ntok, cum, begin: int, end: int, out_start: int, *, eos_id: int, input_ids, labels, positions, segments) -> None:
    """Copy window stream positions [begin, end) into a packed batch, from flat position `out_start`.

    The window is given as units in stream order: unit u takes `ntok[u]`
    tokens of `sources[src[u]]` from `off[u]`, then an EOS when its stream
    length `cum[u + 1] - cum[u]` is one more. Every index is checked against
    the arrays: data from disk that disagrees raises `FormatError`.
    """
    status, detail = _fill_run_kernel(sources, src, off, ntok, cum, begin, end, out_start, eos_id, input_ids, labels, positions, segments)
    if status == _BAD_RUN:
        raise ValueError(f"run [{begin}, {end}) at {out_start} does not fit the window ({int(cum[-1])} tokens) or the batch")
    if status == _BAD_SOURCE:
        raise FormatError(f"unit {detail} of a packing window names source {int(src[detail])}, outside the {len(sources)} blocks loaded")
    if status == _BAD_OFFSETS:
        raise FormatError(
            f"unit {detail} of a packing window reads tokens [{int(off[detail])}, {int(off[detail]) + int(ntok[detail])}) "
            f"of a block of {len(sources[int(src[detail])])} tokens; the block is corrupt"
        )


@kernel
def _fill_padding_kernel(count, out_start, pad_id, input_ids, labels, positions, segments):
    rows, seq_len = input_ids.shape
    row_tokens = seq_len + 1
    if count < 0 or out_start < 0 or out_start + count > rows * row_tokens:
        return _BAD_RUN
    row = out_start // row_tokens
    col = out_start % row_tokens
    segment = segments[row, col - 1] + 1 if col > 0 else 0
    position = 0
    for _ in range(count):
        if col < seq_len:
            input_ids[row, col] = pad_id
            positions[row, col] = position
            segments[row, col] = segment
        if col > 0:
            labels[row, col - 1] = IGNORE_INDEX
        position += 1
        col += 1
        if col == row_tokens:
            row += 1
            col = 0
            segment = 0
            position = 0
    return _OK


def fill_padding(count: int, out_start: int, *, pad_id: int, input_ids, labels, positions, segments) -> None:
    """Fill `count` flat positions from `out_start` with padding: `pad_id` inputs, ignored labels, one segment."""
    if _fill_padding_kernel(count, out_start, pad_id, input_ids, labels, positions, segments) != _OK:
        raise ValueError(f"{count} padding positions at {out_start} do not fit the batch")
