"""`ipc_layout`: a column's offsets read from a block's metadata and that one buffer equal the decoded column's."""

from __future__ import annotations

import numpy as np
import pytest

from fastload.format import Dataset, DatasetWriter, WriteOptions
from fastload.format.ipc_layout import decode_offsets, message_prefix, offsets_buffer_index, parse_layout
from fastload.format.schema import offsets_of
from tests.conftest import ALL_KINDS, all_kinds_batch


def _offsets_from_layout(shard, dataset: Dataset, block_id: int, column: str) -> np.ndarray:
    info = dataset.index.shards[int(dataset.block_shard[block_id])]
    local = int(dataset.block_local[block_id])
    blob = shard.block_buffer(local).to_pybytes()[shard.message_skip(local) :]
    prefix, length = message_prefix(blob[:8])
    layout = parse_layout(blob[prefix : prefix + length], prefix)
    assert layout.num_rows == int(info.block_rows[local])
    index, dtype = offsets_buffer_index(shard.arrow_schema, column)
    offset, size = layout.buffers[index]
    raw = blob[layout.body_start + offset : layout.body_start + offset + size]
    return decode_offsets(raw, layout.codec, layout.num_rows, dtype)


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_offsets_from_the_metadata_equal_the_decoded_columns(tmp_path, compression):
    rng = np.random.default_rng(1)
    with DatasetWriter(tmp_path / "ds", ALL_KINDS, options=WriteOptions(block_rows=30, shard_bytes=20_000, compression=compression)) as writer:
        for k in range(4):
            writer.write(all_kinds_batch(rng, 97, start=97 * k))
    dataset = Dataset(tmp_path / "ds")
    ragged = [c.name for c in ALL_KINDS if c.kind in ("tokens", "text", "bytes")]
    assert len(ragged) >= 3
    for block_id in range(dataset.num_blocks):
        shard = dataset._shard(int(dataset.block_shard[block_id]))
        batch = dataset.read_block(block_id)
        for column in ragged:
            expected = offsets_of(batch.column(column))
            found = _offsets_from_layout(shard, dataset, block_id, column)
            assert np.array_equal(found - found[0], expected - expected[0]), (compression, block_id, column)
            assert np.array_equal(dataset.block_row_lengths(column, block_id), np.diff(expected)), (compression, block_id, column)  # read_offsets


def test_metadata_pointing_outside_itself_is_a_value_error():
    with pytest.raises(ValueError):
        parse_layout(b"\xff\xff\xff\x7f" + bytes(12), 8)
    with pytest.raises(ValueError):
        parse_layout(bytes(3), 8)
