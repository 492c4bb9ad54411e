"""Token datasets with known documents, written through the public writer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fastload.format import Column, DatasetWriter, Schema, WriteOptions

TOKENS = Schema((Column("tokens", "tokens", "uint32"),))


def write_documents(path, documents: list, *, block_rows: int = 7, compression: str = "none", eos_id: int | None = 0) -> None:
    """A dataset of one tokens column holding `documents`, `block_rows` documents a block."""
    with DatasetWriter(path, TOKENS, options=WriteOptions(block_rows=block_rows, shard_bytes=2_000, compression=compression)) as writer:
        writer.write(pa.record_batch([pa.array([np.asarray(d, np.uint32) for d in documents], pa.list_(pa.uint32()))], schema=TOKENS.arrow_schema()))


def distinct_documents(rng: np.random.Generator, num_docs: int, max_len: int) -> list:
    """Documents whose tokens are all distinct (and not 0, the EOS): every token says where it came from."""
    lengths = rng.integers(0, max_len + 1, size=num_docs)
    starts = np.concatenate([[1], 1 + np.cumsum(lengths)])
    return [list(range(int(starts[i]), int(starts[i + 1]))) for i in range(num_docs)]
