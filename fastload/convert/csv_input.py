"""CSV inputs: pyarrow's streaming reader, and the check that it changed no integer.

CSV cannot be cut at arbitrary newlines (quoted fields may hold them), so it
is parsed by pyarrow's streaming reader in the reader's thread and handed to
the workers parsed. The reader checks that text is UTF-8 itself; what it
does not keep is integers: a column holding one integer beyond int64, or an
integer beside a fraction, is inferred as float64 and the integer rounded
(2**53 + 1 becomes 2**53). So a float column holding a magnitude of 2**53 or
more, which is rare, is read once more as text, alongside, and an integer
that float64 does not hold exactly (or that lies outside int64) is an error
naming the row; the same rules as for JSON Lines.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import PurePosixPath
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from fastload.convert.parse import float_fields_to_recheck
from fastload.errors import ConvertError

__all__ = ["csv_tables"]

_INT64 = (-(2**63), 2**63 - 1)
_EXACT_IN_FLOAT64 = 2**53
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def csv_tables(name: str, open_input: Callable[[], BinaryIO], *, block_bytes: int) -> Iterator[pa.Table]:
    """The tables of a CSV (TSV when named .tsv) file or object `name`, in order, each with its integers as written."""
    delimiter = "\t" if ".tsv" in [s.lower() for s in PurePosixPath(name).suffixes] else ","
    options = dict(
        read_options=pacsv.ReadOptions(block_size=block_bytes),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
    )
    as_text: dict[str, _TextColumn] = {}
    with ExitStack() as opened:  # every file this opens (the reader's, and the rechecks'), closed when it is done

        def open_kept() -> BinaryIO:
            return opened.enter_context(open_input())

        try:
            reader = pacsv.open_csv(open_kept(), **options)
            first_row = 1
            for batch in reader:
                table = pa.Table.from_batches([batch])
                for field in float_fields_to_recheck(table):
                    column = as_text.setdefault(field, _TextColumn(open_kept, field, options))
                    _require_exact_integers(table.column(field), column, name=name, field=field, first_row=first_row)
                yield table
                first_row += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise ConvertError(f"{name!r}: CSV parse error: {exc}") from None


class _TextColumn:
    """One column of the file read as text, row by row, by a second reader that only moves forward."""

    def __init__(self, open_input: Callable[[], BinaryIO], field: str, options: dict):
        convert = pacsv.ConvertOptions(include_columns=[field], column_types={field: pa.string()})
        self._batches = iter(pacsv.open_csv(open_input(), convert_options=convert, **options))
        self._values: list = []
        self._first_row = 1  # row number of self._values[0]

    def rows(self, first_row: int, count: int) -> list:
        """The text of rows first_row .. first_row + count - 1 (1-based, the header not counted)."""
        while self._first_row + len(self._values) < first_row + count:
            self._values.extend(next(self._batches).column(0).to_pylist())
        start = first_row - self._first_row
        out = self._values[start : start + count]
        self._values, self._first_row = self._values[start + count :], first_row + count
        return out


def _require_exact_integers(values: pa.ChunkedArray, column: _TextColumn, *, name: str, field: str, first_row: int) -> None:
    floats = values.to_numpy()  # nulls come back as NaN, which compares False
    with np.errstate(invalid="ignore"):
        suspects = np.flatnonzero(np.abs(floats) >= _EXACT_IN_FLOAT64)
    texts = column.rows(first_row, len(floats))
    has_fractions = bool(np.any(np.isfinite(floats) & (floats != np.round(floats))))
    for i in suspects:
        literal = texts[i]
        if literal is None or not _INTEGER.fullmatch(literal):
            continue  # written as a float: kept as it was written
        number = int(literal)
        if not _INT64[0] <= number <= _INT64[1]:
            problem = "outside int64, the widest integer fastload reads from CSV"
        elif float(number) != number:
            problem = "which float64 cannot store exactly"
            if has_fractions:
                problem += ", and other rows give the field fractional numbers"
        else:
            continue
        raise ConvertError(
            f"{name}, row {first_row + i}: field {field!r} holds the integer {number}, {problem}; the column would "
            "become float64 and change it. Give the field as strings (e.g. quoted in JSON Lines, or a Parquet string "
            "column), or leave it out with --columns"
        )
