"""Parse one chunk of input into an Arrow table, or say exactly which line is bad.

The fast path hands the whole chunk to pyarrow's C++ parser. Only when that
fails does the slow path look at the chunk line by line with Python's `json`
module, to name the file and line and the parser's message, or, with
`on_error="skip"`, to drop the bad lines and count them. So clean input pays
nothing for good error messages.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from fastload.errors import ConvertError

__all__ = ["LineError", "count_lines", "parse_json_lines", "parse_text", "rows_to_table"]


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


def _bad_json_lines(data: bytes) -> list[tuple[int, str]]:
    """(line offset within the chunk, message) of every line that is not a JSON object."""
    bad = []
    for offset, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            bad.append((offset, f"invalid JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            bad.append((offset, f"expected a JSON object, found a JSON {type(value).__name__}"))
    return bad


def parse_json_lines(data, on_error: str) -> tuple[pa.Table, int]:
    """JSON Lines (whole lines; bytes or memoryview) -> (table, lines skipped). Raises `LineError`."""
    try:
        return _read_json(data), 0
    except pa.ArrowInvalid as arrow_error:
        data = bytes(data)
        bad = _bad_json_lines(data)
        if not bad:
            # Every line is a valid object, so pyarrow objected to types that change inside the chunk.
            raise LineError(
                0,
                f"{arrow_error}. A field holds values of different types (e.g. a number in one row, "
                "a string in another); make them consistent.",
                last_offset=max(0, data.count(b"\n") - 1),
            ) from None
        if on_error != "skip":
            offset, message = bad[0]
            more = f" ({len(bad) - 1} more bad lines in this part of the file)" if len(bad) > 1 else ""
            raise LineError(offset, f"{message}{more}. Fix the line, or pass --on-error skip to drop bad lines and count them.") from None
    bad_offsets = {offset for offset, _ in bad}
    good = b"\n".join(line for i, line in enumerate(data.split(b"\n")) if i not in bad_offsets)
    if not good.strip():
        return pa.table({}), len(bad)
    return parse_json_lines(good + b"\n", "fail")[0], len(bad)


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


def rows_to_table(rows: list, source: str, first_row: int) -> pa.Table:
    """A list of dicts (Python values or numpy arrays) -> a table; numpy arrays become fixed-shape columns."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConvertError(f"{source}, item {first_row + i}: expected a dict, found {type(row).__name__}")
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, np.ndarray) and sample.ndim >= 1:
            array, shape = _stack_arrays(values, sample, name, source, first_row)
            columns.append(array)
            fields.append(pa.field(name, array.type, metadata={b"fastload.shape": json.dumps(list(shape)).encode()}))
            continue
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConvertError(f"{source}, items {first_row}-{first_row + len(rows) - 1}, field {name!r}: {exc}") from None
        columns.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _stack_arrays(values: list, sample: np.ndarray, name: str, source: str, first_row: int) -> tuple[pa.Array, tuple]:
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, np.ndarray) or v.shape != sample.shape):
            found = v.shape if isinstance(v, np.ndarray) else type(v).__name__
            raise ConvertError(
                f"{source}, item {first_row + i}, field {name!r}: expected an array of shape {sample.shape} "
                f"like the first one, found {found}"
            )
    filled = [v if v is not None else np.zeros_like(sample) for v in values]
    flat = np.stack(filled).reshape(-1)
    mask = pa.array([v is None for v in values]) if any(v is None for v in values) else None
    array = pa.FixedSizeListArray.from_arrays(pa.array(flat), sample.size, mask=mask)
    return array, sample.shape
