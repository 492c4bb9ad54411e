"""The dataset's columns as conversion learns them, chunk by chunk and partition by partition.

The first chunk fixes the column names; each later chunk's column kinds are
merged with `promote_column` (widening only). A column that is null
everywhere so far has no kind yet (None) until some chunk gives it one. A
type change that cannot be widened is an error that names the file where the
column got its type and the file that disagrees. Partitions of a conversion
each learn their own columns; the driver merges them in partition order
(`merge_known`) with the same rules, so the result is that of one pass over
the whole input.
"""

from __future__ import annotations

import pyarrow as pa

from fastload.errors import ConvertError
from fastload.format.schema import Column, Schema, TypeMismatch, promote_column

__all__ = ["KnownColumns", "lossy_promotion"]


class KnownColumns:
    """The dataset's columns as known so far, and which input gave each its type."""

    def __init__(self) -> None:
        self.columns: dict[str, Column | None] = {}
        self.origin: dict[str, str] = {}
        self.first_source: str | None = None  # the input that fixed the column names

    def merge(self, kinds: dict[str, Column | None], source: str) -> None:
        if not self.columns:
            self.columns = dict(kinds)
            self.origin = {name: source for name, c in kinds.items() if c is not None}
            self.first_source = source
            return
        extra = [name for name in kinds if name not in self.columns]
        if extra:
            raise ConvertError(
                f"{source} has field(s) {', '.join(map(repr, extra))} that earlier input ({self._first_source()}) "
                f"does not; list the fields to keep with --columns ({', '.join(self.columns)} are known)"
            )
        for name, incoming in kinds.items():
            current = self.columns[name]
            if incoming is None:
                continue
            if current is None:
                self.columns[name], self.origin[name] = incoming, source
                continue
            try:
                self.columns[name] = promote_column(current, incoming)
            except TypeMismatch as exc:
                raise ConvertError(
                    f"field {name!r} changes type: {self.origin[name]} gave it {current.kind} ({current.dtype}), "
                    f"{source} has {incoming.kind} ({incoming.dtype}) [{exc}]. Make the field consistent, or "
                    "leave it out with --columns."
                ) from None

    def merge_known(self, other: "KnownColumns") -> None:
        """Fold in the columns another part of the input (a later partition) learned."""
        if not other.columns:
            return
        if not self.columns:
            self.columns, self.origin, self.first_source = dict(other.columns), dict(other.origin), other.first_source
            return
        extra = [name for name in other.columns if name not in self.columns]
        if extra:
            self.merge({name: other.columns[name] for name in extra}, other.origin.get(extra[0]) or other.first_source or "later input")
        for name, incoming in other.columns.items():
            if incoming is not None:
                self.merge({name: incoming}, other.origin[name])

    def unfit(self, name: str, source: str, exc: Exception) -> ConvertError:
        column = self.columns[name]
        return ConvertError(
            f"field {name!r}: values in {source} do not fit {column.kind} ({column.dtype}), the type the field "
            f"has across the inputs ({self.origin.get(name, 'the first input')} set it): {exc}. Make the "
            "field's type consistent (e.g. all integers below 2**53 or all floats), or leave it out with --columns."
        )

    def _first_source(self) -> str:
        return next(iter(self.origin.values()), self.first_source or "the first input")

    @property
    def complete(self) -> bool:
        return all(c is not None for c in self.columns.values())

    def schema(self) -> Schema:
        return Schema(tuple(c for c in self.columns.values() if c is not None))

    @property
    def dropped(self) -> list[str]:
        """Columns still without a type: null in every row so far."""
        return [name for name, c in self.columns.items() if c is None]

    def conform(self, table: pa.Table, source: str) -> pa.Table:
        """`table` with exactly the current typed columns, in order (missing fields become nulls)."""
        arrays = []
        for name, column in self.columns.items():
            if column is None:
                continue
            if name in table.column_names:
                array = table.column(name)
                try:
                    arrays.append(array if array.type == column.arrow_type else array.cast(column.arrow_type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise self.unfit(name, source, exc) from None
            else:
                arrays.append(pa.nulls(table.num_rows, column.arrow_type))
        return pa.Table.from_arrays(arrays, schema=self.schema().arrow_schema())


def lossy_promotion(exc: Exception) -> ConvertError:
    """The error for shards rewritten after a type was widened whose values the wider type cannot hold."""
    return ConvertError(f"{exc}. A field changed type between inputs in a way that loses values; make it consistent, or leave it out with --columns.")
