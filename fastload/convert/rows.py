"""Python rows (dicts of Python values or numpy arrays) -> Arrow tables, one chunk at a time.

Values go through `pyarrow.array`, which keeps every integer exact or fails;
a failure is turned into a message that names the item, the field and the
value (an integer beyond 64 bits, one that float64 would round, a string
holding a lone surrogate) instead of pyarrow's or Python's own exception.

A field of numpy arrays is stored in one of two ways, decided once for the
whole input by `ArrayLayouts` from the first chunk where the field holds an
array: arrays that all share one shape become a fixed-shape `ndarray` column;
1-d arrays whose lengths vary become a list column, exactly as if the user
had passed Python lists (so integer arrays become `tokens`). Deciding once
keeps every chunk of a field the same kind. The trade-off: a field whose
first chunk happens to hold one length only is fixed-shape, and a later
array of another length is an error that says how to ask for a list column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fastload.errors import ConvertError

__all__ = ["ArrayLayouts", "RAGGED", "field_names", "rows_to_table"]

_INT64 = (-(2**63), 2**63 - 1)
RAGGED = None  # the layout of a field of 1-d arrays whose lengths vary


@dataclass
class ArrayLayouts:
    """How each field of numpy arrays is stored: a fixed shape, or `RAGGED`; filled in chunk order.

    `decide` runs on each chunk in input order (the reader's thread), before the
    chunk is parsed in a worker, so every chunk of a field is stored alike.
    """

    shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    plain: set[str] = field(default_factory=set)  # fields whose first value is not an array

    def decide(self, rows: list, names: list[str]) -> None:
        for name in names:
            if name in self.shapes or name in self.plain:
                continue
            values = [row.get(name) for row in rows if isinstance(row, dict)]
            sample = next((v for v in values if v is not None), None)
            if sample is None:
                continue  # null so far: decided by a later chunk
            if not isinstance(sample, np.ndarray) or sample.ndim == 0:
                self.plain.add(name)
                continue
            shapes = {v.shape for v in values if isinstance(v, np.ndarray)}
            ragged = len(shapes) > 1 and all(len(s) == 1 for s in shapes)
            self.shapes[name] = RAGGED if ragged else sample.shape


def field_names(rows: list) -> list[str]:
    """Every key of the chunk's dict rows, in order of appearance."""
    return list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))


def rows_to_table(rows: list, source: str, first_row: int, *, names: list[str], layouts: ArrayLayouts) -> pa.Table:
    """A list of dicts -> a table; array fields are stored as `layouts` decided."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConvertError(f"{source}, item {first_row + i}: expected a dict, found {type(row).__name__}")
    columns, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        if name in layouts.shapes and any(v is not None for v in values):
            shape = layouts.shapes[name]
            if shape is RAGGED:
                array = _ragged_list(values, name, source, first_row)
                fields.append(pa.field(name, array.type))
            else:
                array = _stack_arrays(values, shape, name, source, first_row)
                fields.append(pa.field(name, array.type, metadata={b"fastload.shape": json.dumps(list(shape)).encode()}))
            columns.append(array)
            continue
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError) as exc:
            raise _unconvertible(values, name, source, first_row, exc) from None
        columns.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _stack_arrays(values: list, shape: tuple, name: str, source: str, first_row: int) -> pa.Array:
    sample = next((v for v in values if isinstance(v, np.ndarray) and v.shape == shape), None)
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, np.ndarray) or v.shape != shape):
            found = v.shape if isinstance(v, np.ndarray) else type(v).__name__
            where = f"{source}, item {first_row + i}, field {name!r}"
            if isinstance(v, np.ndarray) and v.ndim == 1 and len(shape) == 1:
                raise ConvertError(
                    f"{where}: an array of shape {found}, but the field's arrays so far all have shape {shape}, "
                    "so it is stored as a fixed-shape ndarray column (decided by the first chunk of rows that "
                    "holds the field). To store 1-d arrays of varying length, give them as lists (a.tolist()) "
                    "or as a pyarrow list column."
                )
            raise ConvertError(
                f"{where}: expected an array of shape {shape} like the first one, found {found}; "
                "only 1-d arrays may vary in length (they become a list column)"
            )
    filled = [v if v is not None else np.zeros_like(sample) for v in values]
    flat = np.stack(filled).reshape(-1)
    mask = pa.array([v is None for v in values]) if any(v is None for v in values) else None
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), sample.size, mask=mask)


def _ragged_list(values: list, name: str, source: str, first_row: int) -> pa.Array:
    """1-d arrays of any length -> a list array, as `pa.array` would make of the same values as lists."""
    arrays = []
    for i, v in enumerate(values):
        if v is None:
            continue
        if not isinstance(v, np.ndarray) or v.ndim != 1:
            found = f"an array of shape {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ConvertError(
                f"{source}, item {first_row + i}, field {name!r}: the field holds 1-d arrays of varying length, found {found}"
            )
        arrays.append(v)
    lengths = np.array([len(v) if v is not None else 0 for v in values], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    nonempty = [a for a in arrays if len(a)]  # an empty np.array([]) is float64 and must not turn ints into floats
    if nonempty:
        flat = np.concatenate(nonempty)
    else:
        flat = np.array([], arrays[0].dtype if arrays else np.int64)
    list_type = pa.list_ if offsets[-1] < 2**31 else pa.large_list
    offsets = pa.array(offsets.astype(np.int32 if list_type is pa.list_ else np.int64))
    mask = pa.array([v is None for v in values]) if len(arrays) < len(values) else None
    return (pa.ListArray if list_type is pa.list_ else pa.LargeListArray).from_arrays(offsets, pa.array(flat), mask=mask)


def _unconvertible(values: list, name: str, source: str, first_row: int, exc: Exception) -> ConvertError:
    """Name the item pyarrow could not take, and why, in words the user can act on."""
    has_floats = any(isinstance(v, (float, np.floating)) for v in values)
    for i, v in enumerate(values):
        where = f"{source}, item {first_row + i}, field {name!r}"
        for item in _leaves(v):
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as bad:
                    return ConvertError(
                        f"{where}: the string holds {item[bad.start:bad.end]!r} at index {bad.start}, a lone UTF-16 "
                        "surrogate, so it is not valid Unicode text (often bytes decoded with errors='surrogateescape'); "
                        "fix the string"
                    )
            elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
                number = int(item)
                if not _INT64[0] <= number <= _INT64[1]:  # a field of np.uint64 values only would have converted
                    return ConvertError(
                        f"{where}: holds the integer {number}, outside int64; fastload never changes a number, so give "
                        "the whole field as np.uint64 values if it is unsigned and below 2**64, as strings to keep every "
                        "digit, or leave it out with --columns"
                    )
                if has_floats and float(number) != number:
                    return ConvertError(
                        f"{where}: holds the integer {number}, which float64 cannot store exactly, and other items of "
                        "the field are floats, so it would be rounded; give the integers as strings, or keep the field "
                        "all-integer"
                    )
    last = first_row + len(values) - 1
    return ConvertError(f"{source}, items {first_row}-{last}, field {name!r}: {exc}")


def _leaves(value):
    """`value` itself, or every scalar nested in its lists, tuples and dicts."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        else:
            yield v
