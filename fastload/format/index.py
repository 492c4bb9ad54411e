"""`index.json`: the description of a dataset folder, its validation and its encoding.

The index is the single source of truth about a dataset: which shards exist,
how many rows and blocks each holds, where each block's bytes lie in its
shard and their CRC-32, the schema, statistics and provenance. Readers trust
nothing in it blindly: `read_index` checks every field's type and range and
that the numbers agree with each other (block rows sum to shard rows, block
byte ranges tile the shard, shard names stay inside the folder), so an
edited or truncated index is a `FormatError` that says what is wrong, never
an IndexError deep inside a worker.

It is plain JSON (no pickle, nothing executable). Per-block fields are stored
as parallel lists rather than a list of objects: an index of a 100k-block
dataset stays a few MB and parses quickly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastload.errors import FormatError
from fastload.format.files import file_problem
from fastload.format.schema import Schema

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "COMPRESSIONS",
    "ShardInfo",
    "DatasetIndex",
    "read_index",
    "parse_index",
    "encode_index",
]

FORMAT_NAME = "fastload"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
COMPRESSIONS = ("none", "lz4", "zstd")

# A shard name is a plain file name: no separators, no "..", nothing hidden.
_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_MAX_BYTES = 2**48  # 256 TiB: larger is an edited index, not a real shard
_MAX_ROWS = 2**40
_MAX_INDEX_BYTES = 2**31  # an index of 100k blocks is a few MB; 2 GB is corruption

_REPAIR_HINT = "Re-create the dataset with 'fastload convert'."


@dataclass(frozen=True)
class ShardInfo:
    """One shard file and the layout of its blocks (record batches)."""

    file: str
    num_rows: int
    num_bytes: int
    crc32: int
    block_rows: np.ndarray  # (num_blocks,) int64 rows in each block
    block_offsets: np.ndarray  # (num_blocks,) int64 byte offset where each block's bytes start
    block_bytes: np.ndarray  # (num_blocks,) int64 length of each block's byte range
    block_crc32: np.ndarray  # (num_blocks,) uint32 CRC-32 of each block's byte range
    # tokens column -> (num_blocks,) int64 token ids in each block (the sum of its rows' lengths). A packed
    # dataset in object storage is planned from these, without reading a block (absent in datasets written
    # before fastload recorded them: those are planned from every block's offsets).
    block_values: dict = field(default_factory=dict)

    @property
    def num_blocks(self) -> int:
        return len(self.block_rows)

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "num_rows": int(self.num_rows),
            "num_bytes": int(self.num_bytes),
            "crc32": int(self.crc32),
            "blocks": {
                "num_rows": [int(x) for x in self.block_rows],
                "offset": [int(x) for x in self.block_offsets],
                "num_bytes": [int(x) for x in self.block_bytes],
                "crc32": [int(x) for x in self.block_crc32],
                **({"values": {name: [int(x) for x in v] for name, v in self.block_values.items()}} if self.block_values else {}),
            },
        }

    @classmethod
    def from_json(cls, obj: object, position: int) -> "ShardInfo":
        where = f"index.json shards[{position}]"
        if not isinstance(obj, dict):
            raise FormatError(f"{where} must be an object, found {obj!r:.100}. {_REPAIR_HINT}")
        name = obj.get("file")
        if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name) or name in (".", ".."):
            raise FormatError(
                f"{where} names the shard file {name!r}, which is not a plain file name inside the "
                f"dataset folder (letters, digits, '.', '_' and '-' only; no path separators or '..'). "
                f"The index was edited or is corrupt. {_REPAIR_HINT}"
            )
        where = f"index.json shard {name!r}"
        num_rows = _int(obj, "num_rows", where, upper=_MAX_ROWS)
        num_bytes = _int(obj, "num_bytes", where, upper=_MAX_BYTES)
        crc32 = _int(obj, "crc32", where, upper=2**32 - 1)
        blocks = obj.get("blocks")
        if not isinstance(blocks, dict):
            raise FormatError(f"{where} lacks its 'blocks' table. {_REPAIR_HINT}")
        arrays = {}
        for key, upper in (("num_rows", _MAX_ROWS), ("offset", _MAX_BYTES), ("num_bytes", _MAX_BYTES), ("crc32", 2**32 - 1)):
            values = blocks.get(key)
            if not isinstance(values, list) or not all(type(v) is int and 0 <= v <= upper for v in values):
                raise FormatError(
                    f"{where} blocks.{key} must be a list of integers in [0, {upper}]; found {values!r:.100}. {_REPAIR_HINT}"
                )
            arrays[key] = np.asarray(values, dtype=np.int64)
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise FormatError(f"{where} has block lists of different lengths {sorted(lengths)}. {_REPAIR_HINT}")
        values = blocks.get("values", {})
        if not isinstance(values, dict):
            raise FormatError(f"{where} blocks.values must be an object (column -> a list per block); found {values!r:.100}. {_REPAIR_HINT}")
        block_values = {}
        for column, counts in values.items():
            if not isinstance(counts, list) or len(counts) != len(arrays["num_rows"]) or not all(type(v) is int and 0 <= v <= _MAX_BYTES for v in counts):
                raise FormatError(
                    f"{where} blocks.values[{column!r}] must be a list of {len(arrays['num_rows'])} integers in [0, {_MAX_BYTES}]; "
                    f"found {counts!r:.100}. {_REPAIR_HINT}"
                )
            block_values[column] = np.asarray(counts, dtype=np.int64)
        info = cls(
            file=name,
            num_rows=num_rows,
            num_bytes=num_bytes,
            crc32=crc32,
            block_rows=arrays["num_rows"],
            block_offsets=arrays["offset"],
            block_bytes=arrays["num_bytes"],
            block_crc32=arrays["crc32"].astype(np.uint32),
            block_values=block_values,
        )
        info._check_consistent(where)
        return info

    def _check_consistent(self, where: str) -> None:
        if self.num_blocks == 0:
            raise FormatError(f"{where} has no blocks; every shard holds at least one. {_REPAIR_HINT}")
        if self.block_rows.min() < 1:
            empty = int(np.argmin(self.block_rows))
            raise FormatError(f"{where} block {empty} records 0 rows; every block holds at least one. {_REPAIR_HINT}")
        if int(self.block_rows.sum()) != self.num_rows:
            raise FormatError(
                f"{where} records {self.num_rows:,} rows but its blocks add up to "
                f"{int(self.block_rows.sum()):,}. {_REPAIR_HINT}"
            )
        ends = self.block_offsets + self.block_bytes
        if self.block_offsets[0] != 0 or np.any(self.block_offsets[1:] != ends[:-1]) or ends[-1] > self.num_bytes:
            raise FormatError(
                f"{where}: block byte ranges must tile the file from offset 0 without gaps and end within "
                f"its {self.num_bytes:,} bytes. {_REPAIR_HINT}"
            )


@dataclass(frozen=True)
class DatasetIndex:
    """Everything `index.json` says about a dataset."""

    schema: Schema
    shards: tuple[ShardInfo, ...]
    compression: str = "none"
    stats: dict = field(default_factory=dict)
    tokenizer: dict | None = None
    source: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    num_skipped_rows: int = 0
    created_by: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards", tuple(self.shards))
        if self.compression not in COMPRESSIONS:
            raise FormatError(
                f"index.json compression is {self.compression!r}; supported: {', '.join(COMPRESSIONS)}. {_REPAIR_HINT}"
            )
        names = [s.file for s in self.shards]
        if len(set(names)) != len(names):
            raise FormatError(f"index.json lists a shard file more than once. {_REPAIR_HINT}")
        kinds = {c.name: c.kind for c in self.schema}
        for shard in self.shards:
            for name in shard.block_values:
                if kinds.get(name) != "tokens":
                    raise FormatError(f"index.json shard {shard.file!r} records blocks.values for {name!r}, which is not a tokens column. {_REPAIR_HINT}")

    def block_values(self, column: str) -> np.ndarray | None:
        """(num_blocks,) token ids in each block of a tokens column, global block order; None unless every shard records them."""
        if not self.shards or not all(column in s.block_values for s in self.shards):
            return None
        return np.concatenate([s.block_values[column] for s in self.shards])

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)

    @property
    def num_blocks(self) -> int:
        return sum(s.num_blocks for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.shards)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_by": self.created_by,
            "num_rows": self.num_rows,
            "num_shards": len(self.shards),
            "num_bytes": self.num_bytes,
            "compression": self.compression,
            "schema": self.schema.to_json(),
            "stats": self.stats,
            "tokenizer": self.tokenizer,
            "source": self.source,
            "options": self.options,
            "num_skipped_rows": self.num_skipped_rows,
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, obj: object) -> "DatasetIndex":
        if not isinstance(obj, dict):
            raise FormatError(f"index.json must hold a JSON object, found {type(obj).__name__}. {_REPAIR_HINT}")
        if obj.get("format") != FORMAT_NAME:
            raise FormatError(
                f"index.json has format {obj.get('format')!r}, expected {FORMAT_NAME!r}: this folder was "
                "not written by fastload. Convert the data with 'fastload convert' first."
            )
        version = obj.get("version")
        if type(version) is not int or version < 1:
            raise FormatError(f"index.json has an invalid format version {version!r}. {_REPAIR_HINT}")
        if version > FORMAT_VERSION:
            raise FormatError(
                f"index.json has format version {version}, but this fastload reads versions up to "
                f"{FORMAT_VERSION}. Upgrade fastload (pip install -U fastload)."
            )
        shards_json = obj.get("shards")
        if not isinstance(shards_json, list) or not shards_json:
            raise FormatError(f"index.json lists no shards. {_REPAIR_HINT}")
        index = cls(
            schema=Schema.from_json(obj.get("schema")),
            shards=tuple(ShardInfo.from_json(s, i) for i, s in enumerate(shards_json)),
            compression=obj.get("compression", "none"),
            stats=obj.get("stats") if isinstance(obj.get("stats"), dict) else {},
            tokenizer=obj.get("tokenizer") if isinstance(obj.get("tokenizer"), dict) else None,
            source=obj.get("source") if isinstance(obj.get("source"), dict) else {},
            options=obj.get("options") if isinstance(obj.get("options"), dict) else {},
            num_skipped_rows=_int(obj, "num_skipped_rows", "index.json", upper=_MAX_ROWS, default=0),
            created_by=str(obj.get("created_by", "")),
        )
        recorded = obj.get("num_rows")
        if recorded != index.num_rows:
            raise FormatError(
                f"index.json records num_rows={recorded!r} but its shards add up to {index.num_rows:,}. {_REPAIR_HINT}"
            )
        return index


def _int(obj: dict, key: str, where: str, *, upper: int, default: int | None = None) -> int:
    value = obj.get(key, default)
    if type(value) is not int or not 0 <= value <= upper:
        raise FormatError(f"{where} field {key!r} must be an integer in [0, {upper:,}], found {value!r:.100}. {_REPAIR_HINT}")
    return value


def read_index(folder: str | os.PathLike) -> DatasetIndex:
    """Parse and validate `folder/index.json`; raise `FormatError` naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"dataset folder {str(folder)!r} does not exist or is not a folder")
    path = folder / INDEX_FILE
    problem = file_problem(path, folder)
    if problem == "missing":
        partial = any(p.name.startswith(".tmp") or p.suffix == ".arrow" for p in folder.iterdir())
        hint = (
            "It holds shards but no index, so a conversion did not finish; run 'fastload convert' again "
            "with --overwrite."
            if partial
            else "Create a dataset with 'fastload convert INPUT -o FOLDER'."
        )
        raise FormatError(f"{str(folder)!r} has no {INDEX_FILE}, so it is not a complete fastload dataset. {hint}")
    if problem is not None:
        raise FormatError(f"{path} is {problem}; a dataset's index.json is a regular file inside its folder. {_REPAIR_HINT}")
    if path.stat().st_size > _MAX_INDEX_BYTES:
        raise FormatError(f"{path} is {path.stat().st_size:,} bytes, far beyond any real index; the file is corrupt. {_REPAIR_HINT}")
    return parse_index(path.read_bytes(), str(path))


def parse_index(data: bytes, where: str) -> DatasetIndex:
    """Parse and validate the bytes of an index.json read from `where` (a path or URL, for messages)."""
    if len(data) > _MAX_INDEX_BYTES:
        raise FormatError(f"{where} is {len(data):,} bytes, far beyond any real index; the file is corrupt. {_REPAIR_HINT}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and integers past Python's digit limit
        raise FormatError(f"{where} is not valid JSON ({str(exc):.200}); the file is corrupt. {_REPAIR_HINT}") from None
    except RecursionError:
        raise FormatError(f"{where} nests deeper than any index does; the file is corrupt. {_REPAIR_HINT}") from None
    return DatasetIndex.from_json(obj)


def encode_index(index: DatasetIndex) -> bytes:
    """The bytes of `index.json` for `index` (written atomically by `output.OutputFolder.commit`)."""
    return _dumps(index.to_json()).encode()


def _dumps(obj: dict) -> str:
    """JSON with one top-level key (and one shard) per line: diffable, yet compact for big block lists."""

    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)

    lines = []
    for key, value in obj.items():
        if key == "shards":
            body = ",\n  ".join(compact(s) for s in value)
            lines.append(f' "shards": [\n  {body}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
