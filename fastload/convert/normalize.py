"""Turn a parsed chunk into columns of fastload's kinds (and tokenize text, if asked).

Runs in the conversion workers, after parsing: it selects the requested
columns, tokenizes the text field into a `tokens` column with a fastload
`Tokenizer` (Numba, releases the GIL), decides each column's kind
(`format.schema.infer_column`) and casts the Arrow data to the storage type
of that kind. It decides from the data of this chunk only; reconciling
chunks that disagree (promotion) is the pipeline's job, because only it sees
them all, in order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastload.errors import ConvertError
from fastload.format.schema import Column, TypeMismatch, infer_column

__all__ = ["prepare_table", "TOKENS_COLUMN"]

TOKENS_COLUMN = "tokens"


def prepare_table(
    table: pa.Table,
    *,
    source: str,
    columns: tuple[str, ...] | None,
    text_field: str,
    tokenizer=None,
    keep_text: bool = False,
) -> tuple[pa.Table, dict[str, Column | None]] | None:
    """(table with storage types, column of each field or None while all-null); None for an empty chunk."""
    if table.num_rows == 0 or table.num_columns == 0:
        return None
    if columns is not None:
        table = _select(table, columns)
    if tokenizer is not None:
        table = _tokenize(table, source=source, text_field=text_field, tokenizer=tokenizer, keep_text=keep_text)
    arrays, fields, kinds = [], [], {}
    for f, array in zip(table.schema, table.columns):
        array = _single_array(array)
        try:
            column = infer_column(f.name, f.type, f.metadata)
        except TypeMismatch as exc:
            raise ConvertError(
                f"{source}: field {f.name!r}: {exc}. Leave it out with --columns (list the fields to keep)."
            ) from None
        if column is not None and column.kind == "tokens":
            column = _token_column(f.name, array, source)
        if column is not None:
            array = _to_storage(array, column, source)
            f = column.arrow_field()
        kinds[f.name] = column
        arrays.append(array)
        fields.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), kinds


def _single_array(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (`combine_chunks` copies even one chunk, a
    whole extra pass over the text: 0.2-0.5 ms of CPU per MB of JSON Lines), or its chunks joined."""
    if not isinstance(array, pa.ChunkedArray):
        return array
    return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()


def _select(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    arrays = []
    for name in columns:
        if name in table.column_names:
            arrays.append(table.column(name))
        else:  # absent from every row of this chunk: nulls, typed later by other chunks
            arrays.append(pa.nulls(table.num_rows))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _tokenize(table: pa.Table, *, source: str, text_field: str, tokenizer, keep_text: bool) -> pa.Table:
    if text_field not in table.column_names:
        raise ConvertError(
            f"{source}: there is no field {text_field!r} to tokenize; fields are {', '.join(table.column_names)}. "
            "Name the text field with --text-field."
        )
    text = table.column(text_field).combine_chunks()
    if pa.types.is_null(text.type):
        text = pa.nulls(len(text), pa.string())
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise ConvertError(f"{source}: field {text_field!r} holds {text.type}, not text, so it cannot be tokenized")
    ids, offsets = tokenizer.encode_arrow(text)
    dtype = pa.uint16() if tokenizer.vocab_size <= 1 << 16 else pa.uint32()
    tokens = pa.ListArray.from_arrays(pa.array(np.asarray(offsets, np.int32)), pa.array(np.asarray(ids).astype(dtype.to_pandas_dtype(), copy=False)))
    if TOKENS_COLUMN in table.column_names and TOKENS_COLUMN != text_field:
        raise ConvertError(f"{source}: the input already has a field {TOKENS_COLUMN!r}; drop it with --columns before tokenizing")
    if not keep_text:
        table = table.drop_columns([text_field])
    return table.append_column(TOKENS_COLUMN, tokens)


def _token_column(name: str, array: pa.Array, source: str) -> Column:
    values = pc.list_flatten(array)
    if len(values) == 0:
        return Column(name, "tokens", "uint16")
    low, high = pc.min_max(values).values()
    low, high = low.as_py(), high.as_py()
    if low < 0 or high >= 1 << 32:
        raise ConvertError(
            f"{source}: field {name!r} is a list of integers, which fastload stores as token ids, but it holds "
            f"{low if low < 0 else high}; token ids must lie in [0, 2**32)."
        )
    return Column(name, "tokens", "uint16" if high < 1 << 16 else "uint32")


def _to_storage(array: pa.Array, column: Column, source: str) -> pa.Array:
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    target = column.arrow_type
    if array.type == target:
        return array
    try:
        return array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConvertError(f"{source}: field {column.name!r} cannot be stored as {column.kind} ({target}): {exc}") from None
