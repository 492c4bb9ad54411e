"""Column kinds and how each is stored in Arrow.

A fastload schema is a list of named columns, each of one *kind*:

| kind      | Arrow storage type                       | numpy view of a block          |
| --------- | ---------------------------------------- | ------------------------------ |
| `tokens`  | `list<uint16>` or `list<uint32>`         | values + int32 offsets         |
| `text`    | `string` (UTF-8)                         | bytes (uint8) + int32 offsets  |
| `bytes`   | `binary`                                 | bytes (uint8) + int32 offsets  |
| `ndarray` | `fixed_size_list<dtype>[prod(shape)]`    | array of shape (rows, *shape)  |
| `scalar`  | `bool`, `int8`…`int64`, `uint8`…`uint64`, `float16/32/64` | 1-d array    |

Arrow's own types are kept as they are so that pyarrow, polars or DuckDB read
a shard without knowing about fastload; what Arrow cannot say (that a list
column holds tokens, the shape of an ndarray) is recorded both in
`index.json` and in the Arrow field metadata under `fastload.*` keys.

This module also decides, for data coming from outside, which kind a column
is (`infer_column`) and when one column type may be *promoted* to another
(`promote_column`) as more input arrives. Promotion only ever widens
(int to float, uint16 tokens to uint32, null to anything), so no value
changes meaning; everything else is an error for the caller to report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fastload.errors import FormatError

__all__ = [
    "KINDS",
    "offsets_of",
    "Column",
    "Schema",
    "infer_column",
    "promote_column",
    "TypeMismatch",
]

KINDS = ("tokens", "text", "bytes", "ndarray", "scalar")

# The numpy dtypes a scalar or ndarray column may have, by name.
SCALAR_DTYPES = (
    "bool",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
TOKEN_DTYPES = ("uint16", "uint32")

_METADATA_KIND = b"fastload.kind"
_METADATA_SHAPE = b"fastload.shape"


class TypeMismatch(Exception):
    """Raised by `promote_column` when two column types cannot be reconciled.

    Internal: the caller knows which inputs the two types came from and turns
    this into a user-facing error that names both.
    """


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its name, kind, element dtype and (ndarray) shape."""

    name: str
    kind: str
    dtype: str  # numpy dtype name of the element ("uint16", "float32"); "utf8"/"binary" for text/bytes
    shape: tuple[int, ...] = ()  # only for ndarray columns

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"a column name must be a non-empty string, found {self.name!r}")
        if self.kind not in KINDS:
            raise FormatError(
                f"column {self.name!r} has unknown kind {self.kind!r}; valid kinds are {', '.join(KINDS)}"
            )
        valid = {
            "tokens": TOKEN_DTYPES,
            "text": ("utf8",),
            "bytes": ("binary",),
            "ndarray": SCALAR_DTYPES,
            "scalar": SCALAR_DTYPES,
        }[self.kind]
        if self.dtype not in valid:
            raise FormatError(
                f"column {self.name!r} of kind {self.kind!r} has dtype {self.dtype!r}; "
                f"valid dtypes for this kind are {', '.join(valid)}"
            )
        shape = tuple(self.shape)
        if self.kind == "ndarray":
            if not shape or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in shape):
                raise FormatError(
                    f"ndarray column {self.name!r} has shape {list(shape)}; a shape is a non-empty "
                    "list of positive integers"
                )
            if math.prod(shape) >= 2**31:
                raise FormatError(f"ndarray column {self.name!r} has {math.prod(shape):,} elements per row; the limit is 2**31-1")
        elif shape:
            raise FormatError(f"column {self.name!r} of kind {self.kind!r} cannot have a shape")
        object.__setattr__(self, "shape", shape)

    # -- Arrow ---------------------------------------------------------------

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kind == "tokens":
            return pa.list_(_arrow_scalar(self.dtype))
        if self.kind == "text":
            return pa.string()
        if self.kind == "bytes":
            return pa.binary()
        if self.kind == "ndarray":
            return pa.list_(_arrow_scalar(self.dtype), math.prod(self.shape))
        return _arrow_scalar(self.dtype)

    def arrow_field(self) -> pa.Field:
        metadata = {_METADATA_KIND: self.kind.encode()}
        if self.kind == "ndarray":
            metadata[_METADATA_SHAPE] = json.dumps(list(self.shape)).encode()
        return pa.field(self.name, self.arrow_type, nullable=True, metadata=metadata)

    @property
    def numpy_dtype(self) -> np.dtype:
        if self.kind in ("text", "bytes"):
            return np.dtype(np.uint8)
        return np.dtype(self.dtype)

    # -- JSON ----------------------------------------------------------------

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "dtype": self.dtype}
        if self.kind == "ndarray":
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_json(cls, obj: object) -> "Column":
        if not isinstance(obj, dict):
            raise FormatError(f"a schema column must be a JSON object, found {obj!r}")
        try:
            return cls(
                name=obj["name"],
                kind=obj["kind"],
                dtype=obj["dtype"],
                shape=tuple(obj.get("shape", ())),
            )
        except KeyError as missing:
            raise FormatError(f"schema column {obj!r} lacks the key {missing}") from None
        except TypeError as exc:
            raise FormatError(f"schema column {obj!r} is malformed: {exc}") from None


@dataclass(frozen=True)
class Schema:
    """An ordered list of columns with unique names."""

    columns: tuple[Column, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FormatError(f"column names must be unique; repeated: {', '.join(duplicates)}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"no column {name!r}; columns are {', '.join(self.names)}")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def __iter__(self):
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def arrow_schema(self) -> pa.Schema:
        # Made once per schema (it cannot change): the writer asks for it every block and every
        # write, and building the fields with their metadata took tens of microseconds each time.
        cached = self.__dict__.get("_arrow_schema")
        if cached is None:
            cached = pa.schema([c.arrow_field() for c in self.columns])
            object.__setattr__(self, "_arrow_schema", cached)
        return cached

    def to_json(self) -> list[dict]:
        return [c.to_json() for c in self.columns]

    @classmethod
    def from_json(cls, obj: object) -> "Schema":
        if not isinstance(obj, list) or not obj:
            raise FormatError(f"'schema' must be a non-empty list of columns, found {obj!r:.200}")
        return cls(tuple(Column.from_json(c) for c in obj))


# -- inference and promotion --------------------------------------------------


def _arrow_scalar(dtype: str) -> pa.DataType:
    return pa.from_numpy_dtype(np.dtype(dtype))


def _numpy_name(arrow_type: pa.DataType) -> str | None:
    """The numpy dtype name of an Arrow scalar type we support, else None."""
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return np.dtype(arrow_type.to_pandas_dtype()).name
    return None


def infer_column(name: str, arrow_type: pa.DataType, metadata: dict | None = None) -> Column | None:
    """The column an Arrow field from outside becomes, or None while it is all-null.

    Raises `TypeMismatch` for Arrow types fastload does not store, with a
    sentence saying why.
    """
    metadata = metadata or {}
    if pa.types.is_null(arrow_type):
        return None
    if isinstance(arrow_type, pa.ExtensionType):
        if arrow_type.extension_name == "arrow.fixed_shape_tensor":
            value = _numpy_name(arrow_type.value_type)
            if value is not None:
                return Column(name, "ndarray", value, tuple(arrow_type.shape))
        arrow_type = arrow_type.storage_type
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return Column(name, "text", "utf8")
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return Column(name, "bytes", "binary")
    if pa.types.is_fixed_size_binary(arrow_type):
        return Column(name, "bytes", "binary")
    scalar = _numpy_name(arrow_type)
    if scalar is not None:
        return Column(name, "scalar", scalar)
    if pa.types.is_fixed_size_list(arrow_type):
        value = _numpy_name(arrow_type.value_type)
        if value is None:
            raise TypeMismatch(f"a fixed-size list of {arrow_type.value_type} is not a numeric array")
        shape = metadata.get(_METADATA_SHAPE)
        dims = tuple(json.loads(shape)) if shape else (arrow_type.list_size,)
        if math.prod(dims) != arrow_type.list_size:
            dims = (arrow_type.list_size,)
        return Column(name, "ndarray", value, dims)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_list_view(arrow_type):
        value_type = arrow_type.value_type
        if pa.types.is_integer(value_type):
            return Column(name, "tokens", "uint16" if value_type.bit_width <= 16 and not pa.types.is_signed_integer(value_type) else "uint32")
        if pa.types.is_null(value_type):
            return None
        raise TypeMismatch(
            f"a variable-length list of {value_type} is not supported (lists of integers are "
            "stored as tokens; fixed-shape numeric arrays as ndarray)"
        )
    raise TypeMismatch(f"Arrow type {arrow_type} is not one of fastload's column kinds ({', '.join(KINDS)})")


_INT_ORDER = ["int8", "int16", "int32", "int64"]
_UINT_ORDER = ["uint8", "uint16", "uint32", "uint64"]
_FLOAT_ORDER = ["float16", "float32", "float64"]


def _promote_numeric(a: str, b: str) -> str:
    if a == b:
        return a
    if a == "bool" or b == "bool":
        raise TypeMismatch(f"{a} and {b} cannot share a column (bool does not mix with numbers)")
    groups = {**{t: "int" for t in _INT_ORDER}, **{t: "uint" for t in _UINT_ORDER}, **{t: "float" for t in _FLOAT_ORDER}}
    ga, gb = groups[a], groups[b]
    if ga == gb:
        order = {"int": _INT_ORDER, "uint": _UINT_ORDER, "float": _FLOAT_ORDER}[ga]
        return max(a, b, key=order.index)
    if "float" in (ga, gb):
        # Integers widen to float64, which holds every int32 and every
        # integer below 2**53 exactly: the common "1 here, 1.5 there" case.
        return "float64"
    # signed meets unsigned: the signed type must hold the unsigned one.
    signed, unsigned = (a, b) if ga == "int" else (b, a)
    bits = max(np.dtype(signed).itemsize, 2 * np.dtype(unsigned).itemsize)
    if bits > 8:
        raise TypeMismatch(f"{a} and {b} have no common integer type")
    return f"int{bits * 8}"


def promote_column(current: Column, incoming: Column) -> Column:
    """The narrowest column that holds the values of both, or raise `TypeMismatch`."""
    if current == incoming:
        return current
    if current.kind != incoming.kind:
        raise TypeMismatch(f"{current.kind} ({current.dtype}) vs {incoming.kind} ({incoming.dtype})")
    if current.kind == "tokens":
        return Column(current.name, "tokens", max(current.dtype, incoming.dtype, key=TOKEN_DTYPES.index))
    if current.kind == "ndarray":
        if current.shape != incoming.shape:
            raise TypeMismatch(f"ndarray of shape {list(current.shape)} vs shape {list(incoming.shape)}")
        return Column(current.name, "ndarray", _promote_numeric(current.dtype, incoming.dtype), current.shape)
    if current.kind == "scalar":
        return Column(current.name, "scalar", _promote_numeric(current.dtype, incoming.dtype))
    raise TypeMismatch(f"{current.kind} vs {incoming.kind}")


def column_from_arrow_field(f: pa.Field) -> Column:
    """Read a column back from a shard's Arrow field (used to check shards against the index)."""
    metadata = f.metadata or {}
    kind = metadata.get(_METADATA_KIND, b"").decode()
    try:
        inferred = infer_column(f.name, f.type, metadata)
    except TypeMismatch as exc:
        raise FormatError(f"shard column {f.name!r}: {exc}") from None
    if inferred is None:
        raise FormatError(f"shard column {f.name!r} has Arrow type {f.type}, which fastload never writes")
    if kind and kind != inferred.kind:
        raise FormatError(f"shard column {f.name!r} says kind {kind!r} but its Arrow type {f.type} is {inferred.kind}")
    if inferred.kind == "tokens":
        inferred = Column(f.name, "tokens", _numpy_name(f.type.value_type) or "?")
    return inferred


def offsets_of(array: pa.Array) -> np.ndarray:
    """The int32 offsets of a list/string/binary array as a zero-copy numpy view (length + 1 entries)."""
    buffer = array.buffers()[1]
    if buffer is None:  # an empty or all-null array may have no offsets buffer
        return np.zeros(len(array) + 1, np.int32)
    return np.frombuffer(buffer, np.int32, len(array) + 1, array.offset * 4)
