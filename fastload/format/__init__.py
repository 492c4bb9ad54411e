"""The fastload dataset format: Arrow IPC shards plus `index.json` (spec: SPEC.md).

`schema` (column kinds) → `stats` → `index` (index.json) → `writer` / `reader`
/ `verify`. Nothing here imports torch or runs code read from disk.
"""

from fastload.format.index import COMPRESSIONS, FORMAT_VERSION, DatasetIndex, ShardInfo, read_index
from fastload.format.reader import Block, Dataset, Ragged
from fastload.format.schema import KINDS, Column, Schema
from fastload.format.verify import verify_dataset
from fastload.format.writer import DatasetWriter, WriteOptions

__all__ = [
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "KINDS",
    "Block",
    "Column",
    "Dataset",
    "DatasetIndex",
    "DatasetWriter",
    "Ragged",
    "Schema",
    "ShardInfo",
    "WriteOptions",
    "read_index",
    "verify_dataset",
]
