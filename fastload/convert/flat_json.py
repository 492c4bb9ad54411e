"""Read a chunk of JSON Lines of flat objects into the very table pyarrow's reader would give, faster.

Pretraining corpora are JSON Lines of flat objects ({"text": ..., "id": ...,
"url": ...}), and pyarrow's reader (RapidJSON, then type inference) was the
bottleneck of `fastload convert`. Here the Numba kernel
`kernels.json_lines.scan_json_lines` scans such a chunk in one pass, and the
Arrow arrays are built from its records with the type rules of pyarrow's
reader:
- columns in order of first appearance; a field missing from a row is null;
- a field of strings is `string`, of true/false `bool`, of numbers `int64`
  when every number is an integer that fits, else `double` (every number,
  integers included, converted from its text by Arrow's parser, the one the
  reader uses: so "-0" is -0.0 there); a field null in every row is `null`;
- a field mixing strings, numbers and booleans makes pyarrow fail, so it is
  refused here.
`read_flat_json_lines` returns None for anything it does not take (the
scanner's refusals, text that is not UTF-8 among them, an integer outside int64, a
chunk without a single field), and the caller (`parse.parse_json_lines`) then runs the
general path, which gives the result, or the line-numbered error, it always
gave. The differential tests in `tests/convert/test_flat_json.py` hold the
two paths to identical tables.

Costs (`python bench/parse_json.py --corpus bench/.cache/corpus-200mb.jsonl`,
8 chunks of 8 MiB of the benchmark's real-text corpus, one thread, MB per
second of thread CPU on the shared 2-core development VM): 1,409 MB/s for
this module, 1,407 for `parse_json_lines` through it (944 and 891 when
Arrow's validator checked UTF-8 in a pass of its own and the widest column
was gathered out of the scanner's text), 449 for the old path (prescan,
pyarrow, float recheck), 697 for pyarrow's reader alone. What the scanner
costs depends on the text (4 MB of each kind of the corpus, thread CPU):
0.2 ms per MB with escapes and non-ASCII bytes taken out, 0.43 for prose
(29 escapes per KB), 0.45 for code (35), 0.69 for translations (25 escapes
and 300 non-ASCII characters per KB): an escape costs a mispredicted branch
or two, about 8 ns, and a word with non-ASCII bytes the UTF-8 automaton's 8
steps. The Numba kernels compile in about 7.5 s the first time on a machine
and load from Numba's cache in 0.7 s, which is why `fastload convert` uses
this path only for larger inputs
(`parse.FLAT_JSON_MIN_BYTES`) and warms it up before its clock starts.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastload.kernels.json_lines import FALSE, FLOAT, INT, MAX_COLUMNS, NULL, STRING, TRUE, gather_spans, max_values, scan_json_lines

__all__ = ["read_flat_json_lines", "warm_up"]

_NUM_KINDS = 7  # record kinds are 1..6; 0 stands for "absent"
_MAX_STRING_BYTES = 2**31 - 1  # pyarrow's reader gives `string` (int32 offsets)
# Chunks are 8 MiB (sources.CHUNK_BYTES) unless one line is longer; the scratch a thread keeps is
# 5.4 times the largest chunk it scanned, so a chunk of a huge line is left to pyarrow's reader.
_MAX_CHUNK_BYTES = 256 << 20


def read_flat_json_lines(data) -> tuple[pa.Table, int] | None:
    """(table, newlines in `data`) exactly as pyarrow's JSON reader makes it, or None: use the general path."""
    global _wide_name
    raw = np.frombuffer(data, np.uint8)
    if len(raw) == 0 or len(raw) > _MAX_CHUNK_BYTES:
        return None
    scratch = _scratch(len(raw))
    text, names, name_ends = scratch.text, scratch.names, scratch.name_ends
    value_row, value_col, value_kind, value_end = scratch.value_row, scratch.value_col, scratch.value_kind, scratch.value_end
    wide_name = _wide_name
    wide_buffer, wide = _pool_array(len(raw), np.uint8) if len(wide_name) else (None, _NO_NAME)
    counts = np.zeros(7, np.int64)
    num_values = scan_json_lines(raw, text[: len(raw)], names[: len(raw)], name_ends, value_row, value_col, value_kind, value_end, counts, wide_name, wide)
    num_rows, num_columns, num_lines, _, _, wide_column, wide_bytes = (int(x) for x in counts)
    if num_values < 0 or num_columns == 0:  # refused (text that is not UTF-8 too), or no field at all (pyarrow's table has rows but no columns)
        return None
    wide_data = _Wide(wide_column, wide_buffer.slice(0, wide_bytes), wide[:wide_bytes]) if wide_column >= 0 else None
    records = _Records(text, value_row[:num_values], value_col[:num_values], value_kind[:num_values], value_end[:num_values], num_rows, num_columns, wide_data)
    arrays = []
    for column in range(num_columns):
        array = records.column(column)
        if array is None:
            return None
        arrays.append(array)
    starts = np.concatenate([[0], name_ends[: num_columns - 1]])
    name_bytes = [names[s:e] for s, e in zip(starts, name_ends[:num_columns])]
    _wide_name = np.array(name_bytes[records.widest()])  # (a copy: `names` is this thread's scratch)
    return pa.Table.from_arrays(arrays, names=[bytes(name).decode("utf-8") for name in name_bytes]), num_lines


# The name of the column with the most text in the chunk read last, by any thread: the scanner
# writes that column's values into a buffer of their own in the next chunk (`_Wide`). Only a guess,
# which decides where bytes are copied, never what the table holds.
_NO_NAME = np.empty(0, np.uint8)
_wide_name = _NO_NAME


class _Wide(NamedTuple):
    """The column whose values the scanner wrote to a buffer of their own, which is its string data as it is."""

    column: int
    buffer: pa.Buffer  # from Arrow's pool, this chunk's own: the column's array keeps it
    data: np.ndarray  # a view of it


class _Scratch:
    """The scanner's working buffers for chunks of up to `num_bytes`, kept by each worker thread (`_scratch`).

    Fresh buffers for every chunk are mapped in anew, page by page: with
    them this module read the benchmark's chunks at 770 MB/s of thread CPU,
    with these (and column buffers from Arrow's pool) at 970. The price is
    about 5.4 bytes of memory per chunk byte held by each worker thread
    (text and names 1 each, records 17/5), most of it never touched.
    """

    def __init__(self, num_bytes: int):
        self.num_bytes = num_bytes
        self.text, self.names = np.empty(num_bytes, np.uint8), np.empty(num_bytes, np.uint8)
        self.name_ends = np.empty(MAX_COLUMNS, np.int64)
        capacity = max_values(num_bytes)
        self.value_row, self.value_col = np.empty(capacity, np.int32), np.empty(capacity, np.int32)
        self.value_kind, self.value_end = np.empty(capacity, np.uint8), np.empty(capacity, np.int64)


_per_thread = threading.local()


def _scratch(num_bytes: int) -> _Scratch:
    """This thread's scratch, grown to `num_bytes` if it is smaller (and kept at the chunk size the input gives)."""
    scratch = getattr(_per_thread, "scratch", None)
    if scratch is None or scratch.num_bytes < num_bytes:
        scratch = _per_thread.scratch = _Scratch(num_bytes)
    return scratch


def _pool_array(num_items: int, dtype) -> tuple[pa.Buffer, np.ndarray]:
    """A buffer from Arrow's memory pool, which reuses freed memory (fresh numpy memory is faulted in anew), and a numpy view of it."""
    buffer = pa.allocate_buffer(num_items * np.dtype(dtype).itemsize)
    return buffer, np.frombuffer(buffer, dtype)


class _Records:
    """The scanner's records, and the Arrow array of each column made from them."""

    def __init__(self, text, rows, cols, kinds, ends, num_rows: int, num_columns: int, wide: _Wide | None = None):
        self.text, self.kinds, self.ends, self.wide = text, kinds, ends, wide
        # a record's text starts where the one before it in the same buffer ended
        self.starts = np.concatenate([[0], ends[:-1]])
        if wide is not None:
            in_wide = cols == wide.column
            for records in (in_wide, ~in_wide):
                record_ends = ends[records]
                self.starts[records] = np.concatenate([[0], record_ends[:-1]])
        self.cols = cols
        self.num_rows, self.num_columns = num_rows, num_columns
        self.present = np.zeros((num_columns, _NUM_KINDS), bool)  # (C, kinds): which kinds each column holds
        self.present[cols, kinds] = True
        self.regular = len(cols) == num_rows * num_columns and bool((cols.reshape(num_rows, num_columns) == np.arange(num_columns, dtype=np.int32)).all())
        if not self.regular:  # (when regular, every row has every field in one order: column c's records are every C-th)
            self.order = np.argsort(cols, kind="stable")  # by column, rows ascending within each
            self.bounds = np.searchsorted(cols[self.order], np.arange(num_columns + 1))
            self.all_rows = rows

    def _records_of(self, column: int):
        """(record indices of `column` in row order, their rows, or None when the rows are 0..num_rows-1)."""
        if self.regular:
            return slice(column, None, self.num_columns), None
        picked = self.order[self.bounds[column] : self.bounds[column + 1]]
        return picked, self.all_rows[picked]

    def column(self, column: int) -> pa.Array | None:
        """The column's array, as pyarrow's reader types it; None where pyarrow would fail (mixed kinds)."""
        has = self.present[column]
        strings, numbers, bools = bool(has[STRING]), bool(has[INT] or has[FLOAT]), bool(has[TRUE] or has[FALSE])
        if strings + numbers + bools > 1:
            return None
        picked, rows = self._records_of(column)
        kinds = self.kinds[picked]
        source = self.wide.data if self.wide is not None and column == self.wide.column else self.text
        if strings:
            if source is not self.text:
                return self._wide_strings(picked, rows, kinds)
            return self._strings(picked, rows, kinds)
        if numbers:
            return self._numbers(picked, rows, kinds, pa.float64() if has[FLOAT] else pa.int64(), source)
        if bools:
            valid = kinds != NULL
            values = self._scatter(rows, kinds == TRUE, np.zeros(self.num_rows, bool))
            return pa.array(values, pa.bool_(), mask=self._mask(rows, valid))
        return pa.nulls(self.num_rows)

    def _scatter(self, rows, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`values` of the picked records placed at their rows in `out` (absent rows keep out's values), contiguous."""
        if rows is None:
            return np.ascontiguousarray(values)  # the kernels are compiled for contiguous arrays only
        out[rows] = values
        return out

    def _mask(self, rows, valid: np.ndarray) -> np.ndarray | None:
        """True where a row is null or absent; None when no row is."""
        if rows is None and valid.all():
            return None
        return ~self._scatter(rows, valid, np.zeros(self.num_rows, bool))

    def _strings(self, picked, rows, kinds) -> pa.Array | None:
        # Null records have no text (start == end), and neither have absent rows: zero-length entries.
        starts = self._scatter(rows, self.starts[picked], np.zeros(self.num_rows, np.int64))
        ends = self._scatter(rows, self.ends[picked], np.zeros(self.num_rows, np.int64))
        num_bytes = int((ends - starts).sum())
        if num_bytes > _MAX_STRING_BYTES:
            return None
        data_buffer, data = _pool_array(num_bytes, np.uint8)
        offsets_buffer, offsets = _pool_array(self.num_rows + 1, np.int32)
        gather_spans(self.text, starts, ends, data, offsets)
        mask = self._mask(rows, kinds == STRING)
        if mask is None:
            return pa.StringArray.from_buffers(self.num_rows, offsets_buffer, data_buffer)
        validity = np.packbits(~mask, bitorder="little")
        return pa.StringArray.from_buffers(self.num_rows, offsets_buffer, data_buffer, pa.py_buffer(validity), int(mask.sum()))

    def _wide_strings(self, picked, rows, kinds) -> pa.Array | None:
        """The wide column's strings: its values lie in `wide` one after another in row order, so only offsets are made."""
        ends = self.ends[picked]  # the ends of the column's values, nulls' included (no text: start == end)
        if len(self.wide.data) > _MAX_STRING_BYTES:
            return None
        offsets_buffer, offsets = _pool_array(self.num_rows + 1, np.int32)
        offsets[0] = 0
        if rows is None:
            offsets[1:] = ends
        else:  # absent rows have no text either: each row ends where the last value at or before it ended
            row_ends = np.zeros(self.num_rows, np.int64)
            row_ends[rows] = ends
            offsets[1:] = np.maximum.accumulate(row_ends)
        mask = self._mask(rows, kinds == STRING)
        if mask is None:
            return pa.StringArray.from_buffers(self.num_rows, offsets_buffer, self.wide.buffer)
        validity = np.packbits(~mask, bitorder="little")
        return pa.StringArray.from_buffers(self.num_rows, offsets_buffer, self.wide.buffer, pa.py_buffer(validity), int(mask.sum()))

    def widest(self) -> int:
        """The column with the most bytes of text in this chunk."""
        return int(np.argmax(np.bincount(self.cols, weights=self.ends - self.starts, minlength=self.num_columns)))

    def _numbers(self, picked, rows, kinds, arrow_type: pa.DataType, source: np.ndarray) -> pa.Array | None:
        valid = kinds != NULL
        records = np.arange(len(self.kinds))[picked] if isinstance(picked, slice) else picked
        starts, ends = self.starts[records[valid]], self.ends[records[valid]]
        data, offsets = np.empty(int((ends - starts).sum()), np.uint8), np.empty(len(starts) + 1, np.int32)
        gather_spans(source, starts, ends, data, offsets)
        texts = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data))
        try:
            parsed = pc.cast(texts, arrow_type).to_numpy()
        except pa.ArrowInvalid:  # an integer outside int64: pyarrow's reader would make the field double, and round it
            return None
        values = np.zeros(len(kinds), parsed.dtype)
        values[valid] = parsed  # zero under nulls, as pyarrow's builders leave it
        values = self._scatter(rows, values, np.zeros(self.num_rows, parsed.dtype))
        return pa.array(values, arrow_type, mask=self._mask(rows, valid))


def warm_up() -> None:
    """Compile the kernels, or load them from Numba's cache, for the argument types conversion gives them.

    The chunk is a writable buffer as `line_pieces` makes it (Numba compiles
    read-only arrays, such as those of `bytes`, separately), and its two
    lines take both ways of building columns (every row with every field, or not).
    """
    global _warm
    if _warm:  # once per process (a forked child inherits the compiled kernels): the local engine asks per partition
        return
    line = b'{"text": "warm up: \\"\\u00e9\\ud83d\\ude00\\n", "id": -1, "score": 0.5e1, "ok": true, "no": false, "none": null}\n'
    read_flat_json_lines(memoryview(bytearray(line * 2)))
    read_flat_json_lines(memoryview(bytearray(line + b"{}\n")))
    _warm = True


_warm = False
