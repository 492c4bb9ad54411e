"""Batches of token rows for language-model training, written by Numba kernels.

Two shapes of batch, each a kernel behind a thin wrapper that turns status
codes into errors naming the unit or row, with its twin in `pack_reference.py`:

- packed rows (`fastload.PackedDataset`): each row is seq_len + 1
  consecutive tokens of the plan's stream; `fill_packed_rows` cuts it into
  *runs*, stretches of one window's stream (the plan describes a batch's
  runs with `split_runs_at_windows`), and writes their tokens as shifted
  inputs and labels, with `segments` (document pieces numbered from 0 in
  each row, a document cut by a row boundary starting a new one) and
  `positions` (restarting at 0 in every segment). One call writes any rows
  of any batches into any output rows: a rank's share of a batch, or all of
  a mixture source's rows of one, straight into their places;
  `fill_packed_parts` writes rows of several plans and datasets (all of a
  mixture's sources) in one call;
- one document per row (`fastload.PaddedDataset`): `fill_padded_batch`
  truncates, pads and masks.

Token arrays arrive by address (`pointers.py`) so that one call reaches any
number of loaded blocks. A block of text tokenized on the fly may be filled
in document by document: the packed kernel then checks each document it
copies and names the ones not tokenized yet, all of a batch's at once, so
the caller tokenizes just those (in one call) and writes the rows again.
What this module does not do: decide which documents go where
(`fastload/packing/plan.py`), load blocks or tokenize (the worker).
Turning `segments` into flash-attention offsets is `fastload.cu_seqlens`.
"""

from __future__ import annotations

import numpy as np

from fastload.errors import FormatError
from fastload.kernels.jit import kernel
from fastload.kernels.pointers import address_of, view_at

__all__ = ["IGNORE_INDEX", "split_runs_at_windows", "fill_packed_rows", "fill_packed_parts", "packed_part", "PART_FIELDS", "PART_USE", "fill_padded_batch"]

# Codes the kernels return instead of raising (Numba raises only constant messages;
# the wrappers turn these into errors that name the unit or row).
_OK, _BAD_OFFSETS, _BAD_RUN, _BAD_SOURCE, _MISSING_BLOCK, _MISSING_TABLE, _MISSING_DOCUMENTS = range(7)
_ALL_READY = np.zeros(0, np.uint8)  # `ready` when every loaded block is tokenized whole (or holds tokens)
_NO_MISSING = np.zeros(1, np.int64)  # `missing` then: only its count is written, always 0
IGNORE_INDEX = -100  # the label of padding: torch's cross_entropy ignores it by default


@kernel
def split_runs_at_windows(begin, length, out, starts, num_windows):
    """The stretches [begin[i], begin[i] + length[i]) of the stream, cut where windows start.

    `starts` holds the windows' first stream positions and one more (the end);
    positions in windows at or past `num_windows` are padding (window -1).
    Returns four int64 arrays, one entry per run: window, begin, end, and
    where the run lands in the output (`out[i]` plus its offset in stretch i).
    Unlike the fill kernels it allocates its outputs: their length is only
    known after the first pass, and a batch has a few dozen runs.
    """
    total = 0
    for i in range(begin.shape[0]):
        first = np.searchsorted(starts, begin[i], side="right") - 1
        last = np.searchsorted(starts, begin[i] + length[i] - 1, side="right") - 1
        total += last - first + 1
    windows = np.empty(total, np.int64)
    run_begin = np.empty(total, np.int64)
    run_end = np.empty(total, np.int64)
    run_out = np.empty(total, np.int64)
    r = 0
    for i in range(begin.shape[0]):
        x, end = begin[i], begin[i] + length[i]
        w = np.searchsorted(starts, x, side="right") - 1
        while x < end:
            stop = min(end, starts[w + 1])
            windows[r] = w if w < num_windows else -1
            run_begin[r], run_end[r], run_out[r] = x, stop, out[i] + (x - begin[i])
            r += 1
            x = stop
            w += 1
    return windows, run_begin, run_end, run_out


# -- packed batches from a plan's windows (fastload.packing) ------------------------------
#
# A *run* is a stretch of one window's stream that fills consecutive positions of a
# row (the outputs seen flat as (rows, seq_len + 1)); a table of -1 marks padding.
# Each stream token at row position c is an input (c < seq_len) and the label of
# position c - 1 (c >= 1), so inputs and labels are each written once, contiguous,
# with no shifted copy afterwards. The loops below are split at row and document
# ends, and each runs over 1-d slices: indexing the 2-d outputs directly, LLVM
# does not vectorise them (measured: 55 µs a 16 x 1024 batch, against 7 µs).


@kernel
def _fill_run(sources, block_slots, tables, ready, missing, t, x, end, out, eos_id, pad_id, input_ids, labels, positions, segments):
    """Stream positions [x, end) of table `t`'s window (-1: padding) into the output from flat offset `out`: (status, detail).

    A unit whose document is not tokenized yet (`ready[doc] == 0`) is noted in `missing` and
    written from the zeros its block holds there: the caller tokenizes and writes the rows again.
    """
    source_address, source_length, token = sources
    table_address, table_units = tables
    rows, seq_len = input_ids.shape
    row_tokens = seq_len + 1
    if out < 0 or x > end or out + (end - x) > rows * row_tokens:
        return _BAD_RUN, 0
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
        return _OK, 0
    if t >= table_address.shape[0] or table_address[t] == 0:
        return _BAD_RUN, 0
    num_units = table_units[t]
    table = view_at(table_address[t], (5, num_units + 1), np.int64)  # source, first token, real tokens, stream offset, document
    cum = table[3]
    if x < cum[0] or end > cum[num_units]:
        return _BAD_RUN, 0
    u = np.searchsorted(cum, x, side="right") - 1
    while x < end:
        block, first, real = table[0, u], table[1, u], table[2, u]
        if block < 0 or block >= block_slots.shape[0]:
            return _BAD_SOURCE, u
        s = block_slots[block]
        if s < 0:  # not loaded yet: the caller loads it and calls again (the batch is rewritten whole)
            return _MISSING_BLOCK, block
        if s >= source_address.shape[0]:
            return _BAD_SOURCE, u
        data = view_at(source_address[s], (source_length[s],), token.dtype)
        if first < 0 or real < 0 or first + real > data.shape[0]:
            return _BAD_OFFSETS, u
        if ready.shape[0] > 0 and x - cum[u] < real:  # tokens of a block tokenized by document: is this one done?
            doc = table[4, u]
            if doc < 0 or doc >= ready.shape[0]:
                return _BAD_SOURCE, u
            if ready[doc] == 0:
                n = missing[0]
                if n + 1 < missing.shape[0] and (n == 0 or missing[n] != doc):  # consecutive repeats noted once
                    missing[n + 1] = doc
                    missing[0] = n + 1
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
    return _OK, 0


@kernel
def _fill_rows_kernel(sources, block_slots, tables, ready, missing, starts, window_tables, window_used, use, row_start, row_out, eos_id, pad_id, input_ids, labels, positions, segments):
    row_tokens = input_ids.shape[1] + 1
    num_windows = starts.shape[0] - 2
    if window_tables.shape[0] < num_windows or window_used.shape[0] < num_windows or row_out.shape[0] != row_start.shape[0] or missing.shape[0] < 1:
        return _BAD_RUN, 0, 0
    missing[0] = 0
    for i in range(row_start.shape[0]):
        x = row_start[i]
        end, out = x + row_tokens, row_out[i] * row_tokens
        w = np.searchsorted(starts, x, side="right") - 1
        if w < 0 or row_out[i] < 0:
            return _BAD_RUN, i, 0
        while x < end:  # one run per window the row reaches
            stop = min(end, starts[w + 1])
            t = -1  # past the last window: padding
            if w < num_windows:
                t = window_tables[w]
                if t < 0:  # the window has no table yet: the caller builds it and calls again
                    return _MISSING_TABLE, w, 0
                window_used[w] = use
            status, detail = _fill_run(sources, block_slots, tables, ready, missing, t, x, stop, out, eos_id, pad_id, input_ids, labels, positions, segments)
            if status != _OK:
                return status, (i if status == _BAD_RUN else detail), t
            out += stop - x
            x = stop
            w += 1
    if missing[0] > 0:
        return _MISSING_DOCUMENTS, missing[0], 0
    return _OK, 0, 0


def fill_packed_rows(sources, block_slots, tables, windows, row_start, row_out, *, documents=None, eos_id: int, pad_id: int, input_ids, labels, positions, segments) -> tuple | None:
    """Write packed rows, every index checked: row i is the seq_len + 1 stream
    tokens from position `row_start[i]`, written as row `row_out[i]` of the
    outputs (rows of any batches, in any order: a mixture's source writes its
    rows straight into their places in the batch).

    `sources` = (addresses, lengths, an empty array of the token dtype): the
    token arrays of the loaded blocks, by address (see `pointers.py`);
    `block_slots[b]` is where block b is in them, or -1. `tables` =
    (addresses, unit counts): table t is a window as a (5, units + 1) int64
    array: unit u copies `table[2, u]` tokens of block `table[0, u]` from
    token `table[1, u]`, then an EOS when its stream length
    (`table[3, u + 1] - table[3, u]`) is one more; `table[3]` counts stream
    positions; `table[4, u]` is the unit's document id. `documents` =
    (ready, missing), for blocks tokenized document by document: `ready[d]`
    is nonzero once document d's tokens are in its block, and `missing`
    (int64, at least 2 long) receives the documents the rows need that are
    not (`missing[0]` of them, from `missing[1]`; as many as fit, the rest
    asked for on the next call). None: every loaded block is whole.
    `windows` = (starts, window_tables, window_used, use): the
    windows' first stream positions, then the stream's end, then one
    position past every row (from the end on: padding); window w's table
    (-1: none yet); and `window_used[w] = use` is set for every window read.

    Returns None when the rows are written, ("window", w, -1) when window w
    needs a table, ("block", b, t) when table t needs block b, which is
    not loaded, or ("documents", ids, -1) when the rows need documents not
    tokenized yet (ids: a view of `missing`, repeats possible; asked for
    only once every table and block is there): provide them and call again
    (the rows are rewritten whole).
    Data from disk that disagrees with the tables raises `FormatError`,
    never reads out of bounds.
    """
    starts, window_tables, window_used, use = windows
    ready, missing = documents if documents is not None else (_ALL_READY, _NO_MISSING)
    status, detail, table = _fill_rows_kernel(sources, block_slots, tables, ready, missing, starts, window_tables, window_used, use, row_start, row_out, eos_id, pad_id, input_ids, labels, positions, segments)
    return _asked_for(status, detail, table, missing, row_start, row_out, input_ids)


# A part of `fill_packed_parts` is one int64 row: the addresses and lengths of what `fill_packed_rows`
# takes for one plan of one dataset. Plain arrays of ints, not tuples of arrays: numba types a tuple
# argument element by element in Python (~0.1 µs an array; three parts of 12 arrays cost 4.7 µs a call,
# more than the rows of a half batch take to write), an int64 array in C.
(_SOURCE_ADDRESS, _SOURCE_LENGTH, _NUM_SOURCES, _BLOCK_SLOTS, _NUM_BLOCKS, _TABLE_ADDRESS, _TABLE_UNITS, _NUM_TABLES,
 _READY, _NUM_READY, _MISSING, _NUM_MISSING, _STARTS, _NUM_STARTS, _WINDOW_TABLES, _WINDOW_USED, _NUM_WINDOWS, PART_USE) = range(18)
PART_FIELDS = 18


def packed_part(sources, block_slots, tables, windows, documents=None) -> np.ndarray:
    """One part of `fill_packed_parts`: the arguments of `fill_packed_rows` that describe one plan of one
    dataset, as an int64 row of addresses and lengths. Every array must stay alive, and where it is, while
    the row is used; `row[PART_USE]` is `use` (the caller may set it again)."""
    (source_address, source_length, _), (table_address, table_units) = sources, tables
    starts, window_tables, window_used, use = windows
    ready, missing = documents if documents is not None else (_ALL_READY, _NO_MISSING)
    arrays = (source_address, source_length, block_slots, table_address, table_units, missing, starts, window_tables, window_used)
    if any(a.dtype != np.int64 for a in arrays) or ready.dtype != np.uint8:
        raise TypeError("a packed part's arrays are int64 (ready: uint8)")
    if len(source_length) != len(source_address) or len(table_units) != len(table_address) or len(window_used) != len(window_tables) or len(missing) < 1:
        raise ValueError("a packed part's paired arrays must have equal lengths (addresses and sizes, window tables and uses), and missing at least 1")
    return np.array([address_of(source_address), address_of(source_length), len(source_address), address_of(block_slots), len(block_slots),
                     address_of(table_address), address_of(table_units), len(table_address), address_of(ready), len(ready), address_of(missing),
                     len(missing), address_of(starts), len(starts), address_of(window_tables), address_of(window_used), len(window_tables), use], np.int64)


@kernel
def _fill_parts_kernel(parts, token, bounds, first_part, row_start, row_out, eos_id, pad_id, input_ids, labels, positions, segments):
    for p in range(first_part, parts.shape[0]):
        f = view_at(parts[p], (PART_FIELDS,), np.int64)
        a, b = bounds[p], bounds[p + 1]
        if a < 0 or a > b or b > row_start.shape[0]:
            return _BAD_RUN, 0, 0, p
        sources = (view_at(f[_SOURCE_ADDRESS], (f[_NUM_SOURCES],), np.int64), view_at(f[_SOURCE_LENGTH], (f[_NUM_SOURCES],), np.int64), token)
        block_slots = view_at(f[_BLOCK_SLOTS], (f[_NUM_BLOCKS],), np.int64)
        tables = (view_at(f[_TABLE_ADDRESS], (f[_NUM_TABLES],), np.int64), view_at(f[_TABLE_UNITS], (f[_NUM_TABLES],), np.int64))
        ready = view_at(f[_READY], (f[_NUM_READY],), np.uint8)
        missing = view_at(f[_MISSING], (f[_NUM_MISSING],), np.int64)
        starts = view_at(f[_STARTS], (f[_NUM_STARTS],), np.int64)
        window_tables = view_at(f[_WINDOW_TABLES], (f[_NUM_WINDOWS],), np.int64)
        window_used = view_at(f[_WINDOW_USED], (f[_NUM_WINDOWS],), np.int64)
        status, detail, table = _fill_rows_kernel(sources, block_slots, tables, ready, missing, starts, window_tables, window_used, f[PART_USE],
                                                  row_start[a:b], row_out[a:b], eos_id, pad_id, input_ids, labels, positions, segments)
        if status != _OK:
            return status, detail, table, p
    return _OK, 0, 0, 0


def fill_packed_parts(parts: np.ndarray, token: np.ndarray, bounds: np.ndarray, row_start, row_out, *, first_part: int = 0, eos_id: int, pad_id: int,
                      input_ids, labels, positions, segments) -> tuple | None:
    """`fill_packed_rows` for rows of several plans, of one dataset or several, in one call.

    `parts`: int64 addresses of the parts (`packed_part` rows, kept alive by the caller); rows
    [bounds[p], bounds[p + 1]) of `row_start` / `row_out` are those of part p; every part's
    tokens are of `token`'s dtype (an empty array of it). Parts before `first_part` are left as
    they are (written by an earlier call).

    Returns None when every row is written, else (p, what part p asks for, as `fill_packed_rows`
    returns it, but for documents ("documents", n, -1): n ids, at [1, 1 + n) of the part's
    `missing`): provide it and call again from `first_part=p`. A mixture's sources write a
    whole batch with one call this way, not one call per source.
    """
    if len(bounds) != len(parts) + 1:
        raise ValueError(f"{len(bounds)} bounds given for {len(parts)} parts; pass one more than parts")
    status, detail, table, p = _fill_parts_kernel(parts, token, bounds, first_part, row_start, row_out, eos_id, pad_id, input_ids, labels, positions, segments)
    if status == _OK:
        return None
    if status == _BAD_RUN:
        detail += int(bounds[p])  # the row, counted from the first row of all parts
    if status == _MISSING_DOCUMENTS:
        return p, ("documents", int(detail), -1)
    asked = _asked_for(status, detail, table, _NO_MISSING, row_start, row_out, input_ids)
    return None if asked is None else (p, asked)


def _asked_for(status: int, detail: int, table: int, missing: np.ndarray, row_start, row_out, input_ids) -> tuple | None:
    """A packing kernel's status as what the caller must provide (None: done), or the error it is."""
    if status == _OK:
        return None
    if status == _MISSING_DOCUMENTS:
        return "documents", missing[1 : 1 + int(detail)], -1
    if status == _MISSING_TABLE:
        return "window", int(detail), -1
    if status == _MISSING_BLOCK:
        return "block", int(detail), int(table)
    if status == _BAD_RUN:
        raise ValueError(f"row {detail} (stream position {int(row_start[detail]) if detail < len(row_start) else '?'}, output row "
                         f"{int(row_out[detail]) if detail < len(row_out) else '?'}) does not fit the windows, its table or the {len(input_ids)} output rows")
    if status == _BAD_SOURCE:
        raise FormatError(f"unit {detail} of a packing window names a block that does not exist or is not loaded")
    if status == _BAD_OFFSETS:
        raise FormatError(f"unit {detail} of a packing window reads past the end of its block; the block is corrupt")
    return None  # pragma: no cover - every status is handled above


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

    `sources` as for `fill_packed_rows`. Offsets outside their block raise `FormatError`.
    """
    status, detail = _fill_padded_kernel(sources, src, off, ntok, int(add_eos), eos_id, pad_id, input_ids, labels, attention_mask, positions)
    if status == _BAD_RUN:
        raise ValueError(f"{len(src)} documents given for {input_ids.shape[0]} rows")
    if status == _BAD_SOURCE:
        raise FormatError(f"row {detail} names a source outside the {len(sources[0])} blocks loaded")
    if status == _BAD_OFFSETS:
        raise FormatError(f"row {detail} reads past the end of its block; the block is corrupt")
