"""Parse one chunk of JSON Lines or text into an Arrow table, or say exactly which line is bad.

The fast path hands the whole chunk to pyarrow's C++ parser, after the
vectorised checks of `prescan` that protect it: the chunk must be UTF-8, and
no line may nest deeper than `MAX_JSON_DEPTH`. After parsing, a float column
holding a value of 2**53 or more is a hint that the reader may have rounded
an integer (it turns a whole column into float64 when one integer leaves
int64 or one row holds a float), so those rows are re-read exactly.

Before all this, a chunk of flat objects (the common case of pretraining
corpora) is offered to the Numba scanner of `flat_json`, which gives the
same table in half the CPU time of this path, or declines and leaves the
chunk to the path described here.

Only when something is wrong does the slow path look at the chunk line by
line with Python's `json` module, to name the file and line, or, with
`on_error="skip"`, to drop the bad lines and count them. So clean input pays
a few vectorised passes for good error messages, and nothing per line.

Tables that arrive parsed (Parquet, Arrow IPC, in-memory Arrow) are held to
the same promise by `check_utf8`: Arrow's readers do not validate strings,
and a string that is not UTF-8 would make its whole block unreadable.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from fastload.convert.prescan import MAX_JSON_DEPTH, deep_lines, first_value_is_null, is_utf8
from fastload.environment import flat_json_disabled
from fastload.errors import ConvertError

__all__ = [
    "FLAT_JSON_MIN_BYTES",
    "LineError",
    "check_utf8",
    "count_lines",
    "float_fields_to_recheck",
    "parse_json_lines",
    "parse_text",
]

# `fastload convert` reads less JSON Lines than this without the scanner: loading it (importing Numba
# and its cache, 0.3-0.7 s; compiling it, 5-8 s, the first time on a machine) would cost a small
# conversion more than the at most 0.1 s it saves there (1.5 ms of CPU per MB: 2.2 for the old path,
# 0.7 for the scanner by bench/parse_json.py on the 2-core VM). It pays back from about 300 MB on.
FLAT_JSON_MIN_BYTES = 64 << 20

_INT64 = (-(2**63), 2**63 - 1)
_EXACT_IN_FLOAT64 = 2**53  # every integer of at most this magnitude is a float64
_LONG_DIGITS = re.compile(rb"\d{16}")  # an integer beyond 2**53 has at least 16 digits
_BEYOND_INT64_DIGITS = re.compile(r"\d{19}")


class LineError(Exception):
    """A bad line, located by its offset inside a chunk.

    Chunks are parsed in parallel before anyone has counted the lines in
    front of them, so the parser reports an offset and the pipeline, which
    sees chunks in order, turns it into the file's line number.
    """

    def __init__(self, offset: int, detail: str, *, last_offset: int | None = None):
        super().__init__(detail)
        self.offset, self.detail, self.last_offset = offset, detail, last_offset

    def to_convert_error(self, source: str, first_line: int) -> ConvertError:
        if self.last_offset is None:
            where = f"line {first_line + self.offset}"
        else:
            where = f"lines {first_line + self.offset}-{first_line + self.last_offset}"
        return ConvertError(f"{source}, {where}: {self.detail}")


def count_lines(data) -> int:
    """Newlines in `data` (bytes or memoryview), at memory speed."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def _read_json(data) -> pa.Table:
    return pajson.read_json(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pajson.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 16)),
    )


# -- JSON Lines -----------------------------------------------------------------------------


def float_fields_to_recheck(table: pa.Table) -> list[str]:
    """Float (or list of float) fields holding a magnitude of 2**53 or more, where an integer may have been rounded."""
    fields = []
    for f, column in zip(table.schema, table.columns):
        values = column
        if (pa.types.is_list(f.type) or pa.types.is_large_list(f.type)) and pa.types.is_floating(f.type.value_type):
            values = pc.list_flatten(column)
        if pa.types.is_floating(values.type) and len(values):
            low, high = pc.min_max(values).values()
            if low.is_valid and max(-low.as_py(), high.as_py()) >= _EXACT_IN_FLOAT64:
                fields.append(f.name)
    return fields


def parse_json_lines(data, on_error: str, *, flat: bool = True) -> tuple[pa.Table, int, int]:
    """JSON Lines (whole lines; bytes or memoryview) -> (table, lines skipped, lines read). Raises `LineError`.

    With `flat`, chunks of flat objects go to the Numba scanner first
    (`flat_json`), which gives the table pyarrow's reader would, faster;
    whatever it refuses, and every chunk when `FASTLOAD_DISABLE_FLAT_JSON=1`,
    takes the path below.
    """
    if flat and not flat_json_disabled():
        from fastload.convert.flat_json import read_flat_json_lines  # imports Numba: only once JSON is read

        flat = read_flat_json_lines(data)
        if flat is not None and not float_fields_to_recheck(flat[0]):
            return flat[0], 0, flat[1]
    num_lines, deep = deep_lines(data)
    if not deep and is_utf8(data) and not first_value_is_null(data):
        try:
            table = _read_json(data)
        except pa.ArrowInvalid:
            pass  # the slow path says which line, and why
        else:
            if not float_fields_to_recheck(table):
                return table, 0, num_lines
    table, skipped = _parse_line_by_line(bytes(data), on_error, deep)
    return table, skipped, num_lines


def _parse_line_by_line(data: bytes, on_error: str, deep: set[int]) -> tuple[pa.Table, int]:
    """The slow path: find the bad lines, raise for the first (or drop them all with "skip"), parse the rest."""
    lines = data.split(b"\n")
    bad: dict[int, str] = {}
    for offset, line in enumerate(lines):
        if offset in deep:
            bad[offset] = (
                f"nested deeper than {MAX_JSON_DEPTH} levels, which fastload refuses before parsing "
                "(a parser would overflow its stack)"
            )
        elif line.strip():
            problem = _line_problem(line)
            if problem is not None:
                bad[offset] = problem
    while True:
        if bad and on_error != "skip":
            offset = min(bad)
            more = f" ({len(bad) - 1} more bad lines in this part of the file)" if len(bad) > 1 else ""
            raise LineError(offset, f"{bad[offset]}{more}. Fix the line, or pass --on-error skip to drop bad lines and count them.")
        keep = [i for i, line in enumerate(lines) if i not in bad and line.strip()]
        if not keep:
            return pa.table({}), len(bad)
        try:
            table = _read_json(b"\n".join(lines[i] for i in keep) + b"\n")
        except pa.ArrowInvalid as arrow_error:
            # Every line is a valid object, so pyarrow objected to types that change inside the chunk.
            raise LineError(
                keep[0],
                f"{arrow_error}. A field holds values of different types (e.g. a number in one row, "
                "a string in another); make them consistent.",
                last_offset=keep[-1],
            ) from None
        fields = float_fields_to_recheck(table)
        rounded = {i: problem for i in keep if fields and (problem := _rounded_integer(lines[i], fields))}
        if not rounded:
            return table, len(bad)
        bad.update(rounded)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text} is too large for a float64")
    return value


def _unique_keys(pairs: list) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        repeated = sorted({k for k, _ in pairs if sum(1 for other, _ in pairs if other == k) > 1})
        raise ValueError(f"the key(s) {', '.join(map(repr, repeated))} appear more than once in one object")
    return value


def _line_problem(line: bytes) -> str | None:
    """Why one line cannot be a row, or None: what pyarrow's reader would reject, and what it would let through wrongly."""
    try:
        text = line.decode("utf-8")  # strict: also refuses encoded surrogates, unlike json.loads(bytes)
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1]
        return f"not valid UTF-8 (byte {byte!r} at column {exc.start + 1}: {exc.reason}); convert the file to UTF-8"
    try:
        value = json.loads(text, parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except RecursionError:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as exc:  # JSONDecodeError, and ours above, and Python's limit on integer digits
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"expected a JSON object, found a JSON {type(value).__name__}"
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "a \\u escape gives a lone UTF-16 surrogate (half of a pair), which is not text; fix the escape"
    if _BEYOND_INT64_DIGITS.search(text):
        for name, number in _integers(value):
            if not _INT64[0] <= number <= _INT64[1]:
                return (
                    f"field {name!r} holds the integer {number}, outside int64, the widest integer fastload reads "
                    "from JSON; write it as a string (in quotes) to keep every digit, or leave the field out with --columns"
                )
    return None


def _integers(value: dict):
    """(top-level field, integer) for every integer in a row, nested ones under their top-level field."""
    for name, item in value.items():
        stack = [item]
        while stack:
            v = stack.pop()
            if isinstance(v, int) and not isinstance(v, bool):
                yield name, v
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, dict):
                stack.extend(v.values())


def _rounded_integer(line: bytes, fields: list[str]) -> str | None:
    """The problem of a line whose integer would be rounded to fit a float field, or None."""
    if not _LONG_DIGITS.search(line):
        return None
    value = json.loads(line)
    for name, number in _integers({f: value.get(f) for f in fields}):
        if float(number) != number:
            return (
                f"field {name!r} holds the integer {number}, which float64 cannot store exactly, and nearby rows "
                "give the field fractional numbers, so it would become float64 and change; write the integer as a "
                "string (in quotes), or keep the field all-integer"
            )
    return None


# -- tables from Arrow readers --------------------------------------------------------------


def check_utf8(table: pa.Table, source: str, first_row: int) -> pa.Table:
    """`table`, once all its data is valid, strings UTF-8 included; `first_row` numbers its rows in messages.

    Arrow's and Parquet's readers do not check strings (CSV's reader does).
    """
    for f, column in zip(table.schema, table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as exc:
            row = _first_non_utf8_row(column)
            if row is not None:
                raise ConvertError(
                    f"{source}: field {f.name!r} in row {first_row + row} holds text that is not valid UTF-8; "
                    "fix the input, or leave the field out with --columns"
                ) from None
            raise ConvertError(
                f"{source}: field {f.name!r} holds invalid data ({exc}); fix the input, or leave the field out with --columns"
            ) from None
    return table


def _first_non_utf8_row(column: pa.ChunkedArray) -> int | None:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None  # nested strings: the field is named, the row is not looked for
    binary = pa.binary() if pa.types.is_string(column.type) else pa.large_binary()
    for row, value in enumerate(column.cast(binary).to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return None


# -- plain text -----------------------------------------------------------------------------


def parse_text(data, source: str, text_field: str, on_error: str, *, whole: bool = False) -> tuple[pa.Table, int]:
    """Plain text -> a one-column table: one row per non-empty line, or (`whole`) one row for all of it.

    A trailing "\\r" is removed with the newline, so CRLF files give the same rows.
    Raises `LineError` for a line that is not UTF-8.
    """
    if whole:
        try:
            return pa.table({text_field: pa.array([bytes(data).decode("utf-8")], pa.string())}), 0
        except UnicodeDecodeError as exc:
            if on_error == "skip":
                return pa.table({text_field: pa.array([], pa.string())}), 1
            raise ConvertError(f"{source}: not valid UTF-8 ({exc}); convert it to UTF-8 or pass --on-error skip") from None
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw == ord("\n")) + 1
    if len(ends) == 0 or ends[-1] != len(raw):
        ends = np.append(ends, len(raw))
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    lines = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    skipped = 0
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        data = bytes(data)
        keep = np.ones(len(ends), bool)
        for i, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
            try:
                data[start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                if on_error != "skip":
                    raise LineError(i, f"not valid UTF-8 ({exc}); fix the file or pass --on-error skip") from None
                keep[i] = False
        skipped = int((~keep).sum())
        lines = pa.array([data[s:e].decode("utf-8") for s, e, k in zip(offsets[:-1], offsets[1:], keep) if k], pa.string())
    lines = pc.utf8_rtrim(lines, characters="\r\n")
    lines = lines.filter(pc.greater(pc.binary_length(lines), 0))
    return pa.table({text_field: lines}), skipped
