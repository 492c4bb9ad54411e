"""Bytes fetched over an epoch through a node cache smaller than the dataset (#12's goal: at most 1.05x the bytes read).

The bench's configuration scaled down: a packed, shuffled epoch read by two
loader workers from the folder S3 server (`folder_s3.py`, which records every
GET it serves, so the bytes are counted exactly, HTTP headers aside), with a
cache of 40% of the dataset. Every block of the dataset is read once in an
epoch, so the bytes read are the blocks' bytes.
"""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload.format import DatasetWriter, WriteOptions
from tests.packing.conftest import TOKENS
from tests.remote.folder_s3 import FolderS3Server
from tests.remote.s3 import OVERRIDING_ENV_VARS

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")
pytest.importorskip("boto3", reason="uploading to the S3 test server needs boto3: pip install boto3")

BLOCK_ROWS, NUM_DOCS = 256, 36 * 256  # 36 blocks of ~230 KB (documents of 50-400 uint32 tokens)
SEQ_LEN, BATCH = 256, 16


@pytest.fixture(scope="module")
def server_and_dataset(tmp_path_factory):
    """(the folder S3 server, the URL of a ~8 MB tokens dataset on it, the dataset's block bytes)."""
    rng = np.random.default_rng(12)
    path = tmp_path_factory.mktemp("epoch-bytes") / "local"
    documents = [np.arange(1, n + 1, dtype=np.uint32) for n in rng.integers(50, 401, size=NUM_DOCS)]
    with DatasetWriter(path, TOKENS, options=WriteOptions(block_rows=BLOCK_ROWS, shard_bytes=3 << 20)) as writer:
        writer.write(pa.record_batch([pa.array(documents, pa.list_(pa.uint32()))], schema=TOKENS.arrow_schema()))
    local = fastload.Dataset(path)
    with FolderS3Server() as server:
        server.create_bucket("epoch-bytes")
        server.upload_folder(path, "epoch-bytes", "corpus")
        yield server, "s3://epoch-bytes/corpus", local


@pytest.fixture
def served(server_and_dataset, monkeypatch):
    """`server_and_dataset`, with this process's S3 environment pointing at the server."""
    from fastload.store import object_store

    server, _, _ = server_and_dataset
    for name in OVERRIDING_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(object_store, "_runtime_pid", None)  # as if this process had not started obstore (see conftest)
    return server_and_dataset


def test_an_epoch_through_a_cache_of_40_percent_with_two_workers_fetches_at_most_5_percent_more_than_it_reads(served, tmp_path):
    server, url, local = served
    blocks = [(info.file, int(o), int(n)) for info in local.index.shards for o, n in zip(info.block_offsets, info.block_bytes)]
    block_bytes = sum(n for _, _, n in blocks)
    assert local.num_blocks == 36 and len(local.index.shards) > 1

    before = len(server.reads())
    dataset = fastload.Dataset(url, cache_dir=tmp_path / "cache", cache_bytes=int(0.4 * block_bytes))
    packed = fastload.PackedDataset(dataset, seq_len=SEQ_LEN, eos_id=0)
    loader = fastload.DataLoader(packed, batch_size=BATCH, num_workers=2, shuffle=True)
    rows = sum(int(batch["input_ids"].shape[0]) for batch in loader)
    reads = server.reads()[before:]

    assert 0.99 * len(packed) < rows <= len(packed)  # the whole epoch (a shuffled plan leaves a few rows of its windows out)
    fetched = sum(r.length for r in reads)
    per_block = collections.Counter((r.key.rsplit("/", 1)[-1], r.start, r.length) for r in reads)
    twice = {block: n for block, n in per_block.items() if n > 1 and block in set(blocks)}
    by_kind = collections.Counter("block" if (r.key.rsplit("/", 1)[-1], r.start, r.length) in set(blocks) else "other" for r in reads)
    assert all(per_block[block] >= 1 for block in blocks), "every block is read in an epoch"
    assert fetched <= 1.05 * block_bytes, (
        f"fetched {fetched:,} bytes for {block_bytes:,} bytes of blocks ({fetched / block_bytes:.3f}x); "
        f"requests by kind {dict(by_kind)}; blocks fetched more than once {twice}"
    )


def test_the_debug_log_names_every_request_with_its_cause_and_an_epoch_in_one_process_fetches_each_block_once(served, tmp_path, caplog):
    """The "fastload.remote" DEBUG log is how to see which bytes an epoch fetches and why: it accounts
    for every byte the server sent past index.json."""
    import logging

    server, url, local = served
    blocks = {(info.file, int(o), int(n)) for info in local.index.shards for o, n in zip(info.block_offsets, info.block_bytes)}
    block_bytes = sum(n for _, _, n in blocks)

    before = len(server.reads())
    with caplog.at_level(logging.DEBUG, logger="fastload.remote"):
        dataset = fastload.Dataset(url, cache_dir=tmp_path / "cache", cache_bytes=int(0.4 * block_bytes))
        loader = fastload.DataLoader(fastload.PackedDataset(dataset, seq_len=SEQ_LEN, eos_id=0), batch_size=BATCH, num_workers=0, shuffle=True)
        for _ in loader:
            pass
    reads = [r for r in server.reads()[before:] if not r.key.endswith("index.json")]
    logged = [m for m in caplog.messages if m.startswith("process ")]
    causes = collections.Counter(m.rsplit(": ", 1)[1].split(" of block")[0] for m in logged)
    assert len(logged) == len(reads) and set(causes) <= {"head", "lengths", "ahead", "read", "refetch"}
    fetched_blocks = collections.Counter((r.key.rsplit("/", 1)[-1], r.start, r.length) for r in reads if (r.key.rsplit("/", 1)[-1], r.start, r.length) in blocks)
    assert set(fetched_blocks) == blocks and set(fetched_blocks.values()) == {1}, "each block once"
    assert causes["ahead"] + causes["read"] == len(blocks) and causes["refetch"] == 0



def test_rows_of_an_epoch_fetch_ahead_only_this_epochs_blocks_and_one_worker_fetches_each_once(served, tmp_path, monkeypatch):
    """The plain Dataset + Sampler path: the read-ahead stops at the epoch's end (the next epoch's blocks
    are only ranked, for what the cache keeps), so it fetches no block that would push out one this epoch
    still reads. (With 2 workers, which each read whole batches from every block, this path still
    fetches more: see the #12 note.)"""
    server, url, local = served
    block_bytes = sum(int(n) for info in local.index.shards for n in info.block_bytes)
    expected: list[tuple[int, int | None]] = []
    original = fastload.Dataset.expect

    def recording_expect(self, blocks, *, fetch_ahead=None):
        expected.append((len(blocks), fetch_ahead))
        return original(self, blocks, fetch_ahead=fetch_ahead)

    monkeypatch.setattr(fastload.Dataset, "expect", recording_expect)
    before = len(server.reads())
    dataset = fastload.Dataset(url, cache_dir=tmp_path / "cache", cache_bytes=int(0.4 * block_bytes))
    sampler = fastload.Sampler(dataset.block_rows, global_batch_size=BATCH, shuffle=True, seed=0)
    loader = fastload.DataLoader(dataset, batch_sampler=sampler, num_workers=0, collate_fn=len)
    assert sum(loader) == len(sampler) * BATCH
    assert expected == [(2 * local.num_blocks, local.num_blocks)]  # this epoch's blocks, then the next's, only the first fetched
    fetched = sum(r.length for r in server.reads()[before:])
    assert fetched <= 1.05 * block_bytes, f"fetched {fetched:,} bytes for {block_bytes:,} bytes of blocks ({fetched / block_bytes:.3f}x)"
