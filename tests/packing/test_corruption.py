"""Damaged shards under the fast path: an error naming the block, in the main process, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.errors import FastloadError, FormatError
from fastload.format.index import read_index
from tests.packing.conftest import distinct_documents, write_documents


@pytest.fixture
def tokens_path(tmp_path):
    write_documents(tmp_path / "ds", distinct_documents(np.random.default_rng(5), 400, 60), block_rows=40)
    return tmp_path / "ds"


def _flip(path, shard: int, at: float = 0.5) -> None:
    info = read_index(path).shards[shard]
    target = int(info.block_offsets[0] + info.block_bytes[0] * at)
    shard = path / info.file
    data = bytearray(shard.read_bytes())
    data[target] ^= 0x20
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_flipped_byte_stops_the_packed_loader_with_the_checksum_error(tokens_path, workers):
    _flip(tokens_path, shard=1, at=0.7)
    loader = fastload.DataLoader(fastload.PackedDataset(tokens_path, seq_len=15, eos_id=0), batch_size=4, shuffle=True, num_workers=workers)
    with pytest.raises(FormatError, match="block 0 of shard 'shard-00001.arrow' .* fails its checksum"):
        for _ in loader:
            pass


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_is_always_a_fastload_error(tokens_path, seed):
    rng = np.random.default_rng(seed)
    shard = tokens_path / "shard-00000.arrow"
    data = bytearray(shard.read_bytes())
    for position in rng.integers(0, len(data), size=4):
        data[position] ^= int(rng.integers(1, 256))
    shard.write_bytes(bytes(data))
    with pytest.raises(FastloadError):
        for make in (
            lambda: fastload.PackedDataset(tokens_path, seq_len=15, eos_id=0),
            lambda: fastload.PaddedDataset(tokens_path, seq_len=15, eos_id=0),
        ):
            for _ in fastload.DataLoader(make(), batch_size=4, shuffle=True):
                pass
