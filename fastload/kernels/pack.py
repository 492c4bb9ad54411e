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
from fastload.kernels.pointers import view_at

__all__ = ["pack_documents", "pack_reference", "cu_seqlens", "PackCursor", "fill_packed_batch", "fill_padded_batch", "IGNORE_INDEX"]

# Codes the kernel returns instead of raising (Numba raises only constant messages;
# the wrapper turns these into errors that name the document).
_OK, _BAD_OFFSETS, _BAD_ORDER = 0, 1, 2
_BAD_RUN, _BAD_SOURCE, _MISSING_BLOCK = 3, 4, 5
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
# rank's batch, seen flat as (rows, seq_len + 1); run_table[r] < 0 marks padding.
# Each stream token at row position c is an input (c < seq_len) and the label of
# position c - 1 (c >= 1), so inputs and labels are each written once, contiguous,
# with no shifted copy afterwards. The loops below are split at row and document
# ends, and each runs over 1-d slices: indexing the 2-d outputs directly, LLVM
# does not vectorise them (measured: 55 µs a 16 x 1024 batch, against 7 µs).


@kernel
def _fill_batch_kernel(sources, block_slots, tables, run_table, run_begin, run_end, run_out, eos_id, pad_id, input_ids, labels, positions, segments):
    source_address, source_length, token = sources
    table_address, table_units = tables
    rows, seq_len = input_ids.shape
    row_tokens = seq_len + 1
    for r in range(run_table.shape[0]):
        t, x, end, out = run_table[r], run_begin[r], run_end[r], run_out[r]
        if out < 0 or x > end or out + (end - x) > rows * row_tokens:
            return _BAD_RUN, r, r
        row = out // row_tokens
        col = out % row_tokens
        segment = segments[row, col - 1] + 1 if col > 0 else 0  # a run starts at a document boundary
        position = 0
        if t < 0:  # padding: one segment of pad_id inputs whose labels are ignored
            for _ in range(end - x):
                if col < seq_len:
                    input_ids[row, col] = pad_id
                    positions[row, col] = position
                    segments[row, col] = segment
                if col > 0:
                    labels[row, col - 1] = IGNORE_INDEX
                position += 1
                col += 1
                if col == row_tokens:
                    row, col, segment, position = row + 1, 0, 0, 0
            continue
        if t >= table_address.shape[0] or table_address[t] == 0:
            return _BAD_RUN, r, r
        num_units = table_units[t]
        table = view_at(table_address[t], (4, num_units + 1), np.int64)  # source, first token, real tokens, stream offset
        cum = table[3]
        if x < 0 or end > cum[num_units]:
            return _BAD_RUN, r, r
        u = np.searchsorted(cum, x, side="right") - 1
        while x < end:
            block, first, real = table[0, u], table[1, u], table[2, u]
            if block < 0 or block >= block_slots.shape[0]:
                return _BAD_SOURCE, u, r
            s = block_slots[block]
            if s < 0:  # not loaded yet: the caller loads it and calls again (the batch is rewritten whole)
                return _MISSING_BLOCK, block, r
            if s >= source_address.shape[0]:
                return _BAD_SOURCE, u, r
            data = view_at(source_address[s], (source_length[s],), token.dtype)
            if first < 0 or real < 0 or first + real > data.shape[0]:
                return _BAD_OFFSETS, u, r
            k = x - cum[u]
            stop = min(cum[u + 1] - cum[u], k + (end - x))
            while k < stop:
                n = min(stop - k, row_tokens - col)  # tokens k..k+n-1 land in columns col..col+n-1
                n_real = max(0, min(k + n, real) - k)  # the first n_real are data, the rest (one) the EOS
                n_in = max(0, min(n, seq_len - col))
                src = data[first + k : first + k + n_real]
                dst_in = input_ids[row, col : col + n_in]
                m = min(n_in, n_real)
                for i in range(m):
                    dst_in[i] = src[i]
                for i in range(m, n_in):
                    dst_in[i] = eos_id
                dst_pos = positions[row, col : col + n_in]
                dst_seg = segments[row, col : col + n_in]
                for i in range(n_in):
                    dst_pos[i] = position + i
                    dst_seg[i] = segment
                i0 = 1 if col == 0 else 0
                dst_lab = labels[row, col + i0 - 1 : col + n - 1]
                for i in range(max(0, n_real - i0)):
                    dst_lab[i] = src[i0 + i]
                for i in range(max(0, n_real - i0), n - i0):
                    dst_lab[i] = eos_id
                k += n
                x += n
                position += n
                col += n
                if col == row_tokens:
                    row, col, segment, position = row + 1, 0, 0, 0
            if k == cum[u + 1] - cum[u]:  # the unit is done: the next one starts a new segment
                u += 1
                if col != 0:
                    segment += 1
                    position = 0
    return _OK, 0, 0


def fill_packed_batch(sources, block_slots, tables, run_table, run_begin, run_end, run_out, *, eos_id: int, pad_id: int, input_ids, labels, positions, segments) -> tuple[int, int] | None:
    """Write a packed batch from its runs (see the comment above), every index checked.

    `sources` = (addresses, lengths, an empty array of the token dtype): the
    token arrays of the loaded blocks, by address (see `pointers.py`);
    `block_slots[b]` is where block b is in them, or -1. `tables` =
    (addresses, unit counts): table t is a window as a (4, units + 1) int64
    array: unit u copies `table[2, u]` tokens of block `table[0, u]` from
    token `table[1, u]`, then an EOS when its stream length
    (`table[3, u + 1] - table[3, u]`) is one more. Run begins and ends are
    offsets in their window's stream.

    Returns None when the batch is written, or (block, run) when run `run`
    needs `block`, which is not loaded: load it and call again. Data from
    disk that disagrees with the tables raises `FormatError`, never reads
    out of bounds.
    """
    status, detail, run = _fill_batch_kernel(sources, block_slots, tables, run_table, run_begin, run_end, run_out, eos_id, pad_id, input_ids, labels, positions, segments)
    if status == _MISSING_BLOCK:
        return int(detail), int(run)
    if status == _BAD_RUN:
        raise ValueError(f"run {detail} ([{int(run_begin[detail])}, {int(run_end[detail])}) of table {int(run_table[detail])}) does not fit its window or the batch")
    if status == _BAD_SOURCE:
        raise FormatError(f"unit {detail} of a packing window names a block that does not exist or is not loaded")
    if status == _BAD_OFFSETS:
        raise FormatError(f"unit {detail} of a packing window reads past the end of its block; the block is corrupt")
    return None


# -- one document per row (fastload.packing.PaddedDataset) ---------------------------------


@kernel
def _fill_padded_kernel(sources, src, off, ntok, add_eos, eos_id, pad_id, input_ids, labels, attention_mask, positions):
    source_address, source_length, token = sources
    rows, seq_len = input_ids.shape
    if src.shape[0] != rows or off.shape[0] != rows or ntok.shape[0] != rows:
        return _BAD_RUN, 0
    for r in range(rows):
        s, first, real = src[r], off[r], ntok[r]
        if s < 0 or s >= source_address.shape[0]:
            return _BAD_SOURCE, r
        if first < 0 or real < 0 or first + real > source_length[s]:
            return _BAD_OFFSETS, r
        n = min(real + add_eos, seq_len + 1)  # the row's tokens: the document, its EOS, cut to seq_len + 1
        n_real = min(real, n)
        n_in = min(n, seq_len)
        tokens = view_at(source_address[s], (source_length[s],), token.dtype)[first : first + n_real]
        row_in, row_labels, row_mask, row_positions = input_ids[r], labels[r], attention_mask[r], positions[r]  # 1-d: vectorised
        for j in range(min(n_real, n_in)):
            row_in[j] = tokens[j]
        for j in range(n_real, n_in):
            row_in[j] = eos_id
        for j in range(n_in, seq_len):
            row_in[j] = pad_id
        for j in range(max(0, n_real - 1)):
            row_labels[j] = tokens[j + 1]
        for j in range(max(0, n_real - 1), n - 1):
            row_labels[j] = eos_id
        for j in range(max(0, n - 1), seq_len):
            row_labels[j] = IGNORE_INDEX
        for j in range(n_in):
            row_mask[j] = 1
            row_positions[j] = j
        for j in range(n_in, seq_len):
            row_mask[j] = 0
            row_positions[j] = 0
    return _OK, 0


def fill_padded_batch(sources, src, off, ntok, *, add_eos: bool, eos_id: int, pad_id: int, input_ids, labels, attention_mask, positions) -> None:
    """Write one document per row: row r is `ntok[r]` tokens of source `src[r]` from `off[r]`,
    then an EOS if `add_eos`, cut to seq_len + 1 tokens; inputs padded with `pad_id`, labels with -100.

    `sources` as for `fill_packed_batch`. Offsets outside their block raise `FormatError`.
    """
    status, detail = _fill_padded_kernel(sources, src, off, ntok, int(add_eos), eos_id, pad_id, input_ids, labels, attention_mask, positions)
    if status == _BAD_RUN:
        raise ValueError(f"{len(src)} documents given for {input_ids.shape[0]} rows")
    if status == _BAD_SOURCE:
        raise FormatError(f"row {detail} names a source outside the {len(sources[0])} blocks loaded")
    if status == _BAD_OFFSETS:
        raise FormatError(f"row {detail} reads past the end of its block; the block is corrupt")
