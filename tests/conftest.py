"""Shared fixtures: small datasets written through the public writer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fastload.format import Column, DatasetWriter, Schema, WriteOptions

ALL_KINDS = Schema(
    (
        Column("text", "text", "utf8"),
        Column("tokens", "tokens", "uint16"),
        Column("image", "ndarray", "uint8", (3, 4, 4)),
        Column("label", "scalar", "int64"),
        Column("score", "scalar", "float32"),
        Column("blob", "bytes", "binary"),
    )
)


def all_kinds_batch(rng: np.random.Generator, n: int, start: int = 0) -> pa.RecordBatch:
    texts = [f"row {start + i}: {'é' * (i % 5)} 漢字" if i % 7 else "" for i in range(n)]
    tokens = [rng.integers(0, 65535, size=i % 13, dtype=np.uint16) for i in range(n)]
    images = rng.integers(0, 256, size=(n, 48), dtype=np.uint8).reshape(-1)
    return pa.record_batch(
        [
            pa.array(texts, pa.string()),
            pa.array(tokens, pa.list_(pa.uint16())),
            pa.FixedSizeListArray.from_arrays(pa.array(images), 48),
            pa.array(np.arange(start, start + n, dtype=np.int64)),
            pa.array(rng.random(n, dtype=np.float32)),
            pa.array([bytes([i % 256]) * (i % 9) for i in range(n)], pa.binary()),
        ],
        schema=ALL_KINDS.arrow_schema(),
    )


@pytest.fixture
def small_dataset(tmp_path):
    """A 3-shard dataset of every column kind, 600 rows, 50-row blocks."""
    rng = np.random.default_rng(0)
    path = tmp_path / "ds"
    with DatasetWriter(path, ALL_KINDS, options=WriteOptions(block_rows=50, shard_bytes=30_000)) as writer:
        for k in range(6):
            writer.write(all_kinds_batch(rng, 100, start=100 * k))
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Caches the tests fill (document token counts) go to a temporary folder, not the user's home."""
    import os

    previous = os.environ.get("FASTLOAD_CACHE_DIR")
    os.environ["FASTLOAD_CACHE_DIR"] = str(tmp_path_factory.mktemp("fastload-cache"))
    yield
    if previous is None:
        os.environ.pop("FASTLOAD_CACHE_DIR", None)
    else:
        os.environ["FASTLOAD_CACHE_DIR"] = previous
