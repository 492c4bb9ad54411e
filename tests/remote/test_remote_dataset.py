"""Datasets in object storage: the same batches as on local disk, through the node's cache, under faults.

Everything runs against moto's S3 on 127.0.0.1 (`conftest.py`), through the
fault proxy where a test needs faults. Batches are compared with the same
dataset read from local disk, bit for bit.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest
import torch

import fastload
from fastload.errors import StoreError
from fastload.store import RetryPolicy
from tests.packing.conftest import distinct_documents, write_documents

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")

SEQ_LEN, BATCH = 31, 8


@pytest.fixture
def local_dataset(tmp_path):
    """A tokens dataset of ~40 blocks in several shards (lz4), every token distinct."""
    path = tmp_path / "local"
    write_documents(path, distinct_documents(np.random.default_rng(5), 300, 60), block_rows=7, compression="lz4")
    return path


@pytest.fixture
def remote_url(local_dataset, s3_server, s3_bucket, s3_env):
    s3_server.upload_folder(local_dataset, s3_bucket, "corpus")
    return f"s3://{s3_bucket}/corpus"


def _open(url, tmp_path, **options):
    options.setdefault("cache_dir", tmp_path / "cache")
    return fastload.Dataset(url, **options)


def _packed_batches(dataset, *, rank=0, world_size=1, num_workers=0, epochs=1, state=None, sampling=None):
    packed = fastload.PackedDataset(dataset, seq_len=SEQ_LEN, eos_id=0, sampling=sampling)
    sampler = packed.batch_sampler(BATCH, rank=rank, world_size=world_size)
    loader = fastload.DataLoader(packed, batch_sampler=sampler, num_workers=num_workers)
    if state is not None:
        loader.load_state_dict(state)
    out = []
    for _ in range(epochs):
        out += [batch["input_ids"].clone() for batch in loader]
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_every_block_equals_the_local_one_and_a_warm_cache_fetches_nothing(local_dataset, remote_url, tmp_path):
    local, remote = fastload.Dataset(local_dataset), _open(remote_url, tmp_path)
    assert remote.num_blocks == local.num_blocks > 20 and len(remote.index.shards) > 1
    for block_id in range(local.num_blocks):
        assert remote.read_block(block_id).equals(local.read_block(block_id))
    assert remote.cache_stats["downloads"] == local.num_blocks
    assert remote.cache_stats["bytes_downloaded"] == sum(s.num_bytes for s in local.index.shards) - _headers(local)
    again = _open(remote_url, tmp_path)
    for block_id in range(local.num_blocks):
        again.read_block(block_id)
    assert again.cache_stats["downloads"] == 0 and again.cache_stats["hits"] == local.num_blocks
    assert np.array_equal(again.row_lengths("tokens"), local.row_lengths("tokens"))


def _headers(local) -> int:
    """Bytes of a shard that are not block bytes: the Arrow footer (never fetched)."""
    return sum(s.num_bytes - int(s.block_offsets[-1] + s.block_bytes[-1]) for s in local.index.shards)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_packed_batches_from_object_storage_equal_local_ones(local_dataset, remote_url, tmp_path, world_size, num_workers):
    for rank in range(world_size):
        expected = _packed_batches(fastload.Dataset(local_dataset), rank=rank, world_size=world_size, num_workers=num_workers)
        found = _packed_batches(_open(remote_url, tmp_path), rank=rank, world_size=world_size, num_workers=num_workers)
        assert len(expected) > 3 and _same(found, expected)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_padded_rows_from_object_storage_equal_local_ones(local_dataset, remote_url, tmp_path, num_workers):
    def rows(dataset):
        loader = fastload.DataLoader(fastload.PaddedDataset(dataset, seq_len=SEQ_LEN, eos_id=0), batch_size=BATCH, num_workers=num_workers, shuffle=True)
        return [b["input_ids"].clone() for b in loader]

    assert _same(rows(_open(remote_url, tmp_path)), rows(fastload.Dataset(local_dataset)))


def _first_tokens(rows: list[dict]) -> list[int]:
    return [int(row["tokens"][0]) if len(row["tokens"]) else -1 for row in rows]  # tokens are distinct: a first one names its row


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffled_rows_of_a_remote_dataset_are_fetched_ahead_and_come_in_the_local_order(local_dataset, remote_url, tmp_path, monkeypatch, num_workers):
    """`DataLoader(dataset, shuffle=True)`: its epoch's seed is drawn when the iterator is made, so the
    blocks are fetched ahead from the start (only this epoch's), and the order is the one the same
    torch seed gives a local dataset."""
    expected = []
    original = fastload.Dataset.expect

    def recording_expect(self, blocks, *, fetch_ahead=None):
        expected.append((len(blocks), fetch_ahead))
        return original(self, blocks, fetch_ahead=fetch_ahead)

    def epochs(dataset) -> list:
        torch.manual_seed(3)
        loader = fastload.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=num_workers, collate_fn=_first_tokens)
        return [list(loader) for _ in range(2)]

    local = fastload.Dataset(local_dataset)
    want = epochs(local)
    monkeypatch.setattr(fastload.Dataset, "expect", recording_expect)
    got = epochs(_open(remote_url, tmp_path))
    assert got == want and want[0] != want[1]  # a new order each epoch, the same as the local dataset's
    if num_workers == 0:  # workers are other processes: their expectations are not seen here
        assert expected == [(local.num_blocks, local.num_blocks)] * 2


def test_resume_from_a_cold_cache_fetches_only_what_the_next_batches_read(local_dataset, remote_url, tmp_path):
    sampling = fastload.SamplerOptions(num_partitions=2, window_blocks=2)  # a batch reads 2 windows of 2 blocks
    packed = fastload.PackedDataset(fastload.Dataset(local_dataset), seq_len=SEQ_LEN, eos_id=0, sampling=sampling)
    loader = fastload.DataLoader(packed, batch_sampler=packed.batch_sampler(BATCH), num_workers=0)
    everything = []
    for i, batch in enumerate(loader):
        everything.append(batch["input_ids"].clone())
        if i == len(loader) - 4:
            state = loader.state_dict()
    resumed_from = len(loader) - 3
    block_bytes = np.concatenate([s.block_bytes for s in packed.dataset.index.shards])
    remote = _open(remote_url, tmp_path, cache_dir=tmp_path / "cold", read_ahead_bytes=int(2 * block_bytes.max()))
    rest = _packed_batches(remote, state=state, sampling=sampling)
    assert _same(rest, everything[resumed_from:])
    plan = fastload.PackedDataset(remote, seq_len=SEQ_LEN, eos_id=0).plan(0, BATCH, sampling)
    needed = plan.geometry.blocks_in_read_order(0, BATCH, resumed_from)
    downloaded = remote.cache_stats["downloads"]
    assert len(needed) < remote.num_blocks / 2
    # The blocks the last batches read, and read-ahead into the next epoch bounded by read_ahead_bytes (two blocks).
    assert len(needed) <= downloaded <= len(needed) + 2


def test_a_packed_epoch_is_planned_from_the_index_alone_and_the_first_batch_reads_only_its_windows(local_dataset, remote_url, tmp_path, monkeypatch):
    """Time to the first batch must not grow with the dataset: no pass over every block's lengths, only the
    lengths of the blocks of the windows the first batch reaches (index.json records each block's total)."""
    from fastload.packing import lengths

    monkeypatch.setattr(lengths, "READ_AHEAD_BLOCKS", 2)  # lengths read ahead along the read order, two at a time
    remote = _open(remote_url, tmp_path)
    blocks_type = type(remote.remote)
    read = []
    original = blocks_type.block_lengths
    monkeypatch.setattr(blocks_type, "block_lengths", lambda self, b, column, schema: read.append(b) or original(self, b, column, schema))
    monkeypatch.setattr(blocks_type, "row_lengths", lambda *args, **kwargs: pytest.fail("every block's lengths were read"))
    sampling = fastload.SamplerOptions(num_partitions=2, window_blocks=2)
    packed = fastload.PackedDataset(remote, seq_len=SEQ_LEN, eos_id=0, sampling=sampling)
    sampler = packed.batch_sampler(BATCH)
    assert len(sampler) > 5 and read == [] and remote.cache_stats["downloads"] == 0  # planned without a block
    first = next(iter(fastload.DataLoader(packed, batch_sampler=sampler, num_workers=0)))
    expected = _packed_batches(fastload.Dataset(local_dataset), sampling=sampling)[0]
    assert torch.equal(first["input_ids"], expected)
    plan = packed.plan(0, BATCH, sampling)
    reached = {int(b) for w in range(plan.num_windows) if w in plan._windows for b in plan.blocks_of_window(w)}
    order = plan.geometry.blocks_in_read_order(0, BATCH).tolist()
    assert len(reached) <= 6 < remote.num_blocks  # 2 partitions x a window of 2 (+ the next)
    assert reached <= set(read) <= set(order[: len(reached) + 2])  # the windows laid out, and two blocks ahead of them


def test_five_percent_of_requests_failing_loses_and_repeats_nothing(local_dataset, remote_url, tmp_path, fault_proxy, s3_proxy_env):
    fault_proxy.set_faults(error_fraction=0.03, reset_after_bytes=200, reset_fraction=0.02, stall_fraction=0.01)
    retry = RetryPolicy(attempt_timeout_s=1.0, deadline_s=30.0, backoff_s=0.01, max_backoff_s=0.1, max_attempts=30)
    expected = _packed_batches(fastload.Dataset(local_dataset), num_workers=0, epochs=2)
    found = _packed_batches(_open(remote_url, tmp_path, retry=retry), num_workers=0, epochs=2)
    assert _same(found, expected)
    counts = fault_proxy.counts()
    assert counts.num_errors + counts.num_resets + counts.num_stalls > 0, "the faults must have happened"


def test_a_stalled_server_is_a_clear_error_within_the_deadline(local_dataset, remote_url, tmp_path, fault_proxy, s3_proxy_env):
    retry = RetryPolicy(attempt_timeout_s=0.5, deadline_s=2.0, backoff_s=0.05, max_backoff_s=0.2)
    dataset = _open(remote_url, tmp_path, retry=retry)
    fault_proxy.set_faults(stall_fraction=1.0)
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"could not read bytes .* of s3://.*shard.*attempts failed"):
        dataset.read_block(3)
    assert time.monotonic() - start < retry.deadline_s + 2 * retry.attempt_timeout_s + 5  # bounded, never a hang


def test_a_missing_shard_names_the_url_at_once(local_dataset, remote_url, tmp_path, s3_server, s3_bucket):
    dataset = _open(remote_url, tmp_path)
    shard = dataset.index.shards[-1].file
    s3_server.client().delete_object(Bucket=s3_bucket, Key=f"corpus/{shard}")
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"{shard} does not exist"):
        dataset.read_block(dataset.num_blocks - 1)
    assert time.monotonic() - start < 5, "a missing object is not retried"


def test_a_dataset_without_index_says_so(s3_env, s3_bucket, tmp_path):
    with pytest.raises(fastload.FormatError, match="index.json does not exist"):
        _open(f"s3://{s3_bucket}/nothing", tmp_path)


def _read_all(url, cache_dir, env, queue):
    os.environ.update(env)
    dataset = fastload.Dataset(url, cache_dir=cache_dir)
    for block_id in range(dataset.num_blocks):
        dataset.read_block(block_id)
    queue.put(dataset.cache_stats["downloads"])


def test_ranks_sharing_a_node_download_each_block_once(local_dataset, remote_url, tmp_path, s3_env):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    readers = [context.Process(target=_read_all, args=(remote_url, tmp_path / "shared", s3_env, queue)) for _ in range(3)]
    for reader in readers:
        reader.start()
    downloads = [queue.get(timeout=120) for _ in readers]
    for reader in readers:
        reader.join(timeout=30)
    assert sum(downloads) == fastload.Dataset(local_dataset).num_blocks


def test_a_cache_smaller_than_the_dataset_keeps_working_over_three_epochs_within_its_budget(local_dataset, remote_url, tmp_path):
    local = fastload.Dataset(local_dataset)
    block_bytes = np.concatenate([s.block_bytes for s in local.index.shards])
    budget = int(block_bytes.sum() * 0.4)
    remote = _open(remote_url, tmp_path, cache_bytes=budget)
    expected = _packed_batches(local, epochs=3)
    found = _packed_batches(remote, epochs=3)
    assert _same(found, expected)
    assert remote.remote.cache.used_bytes() <= budget
    stats = remote.cache_stats
    assert stats["evictions"] + stats["bypassed"] > 0
    # Eviction by next use: less than three full downloads of the dataset for three epochs.
    assert stats["bytes_downloaded"] < 3 * block_bytes.sum()


def test_a_partial_download_never_counts_as_a_block(local_dataset, remote_url, tmp_path):
    dataset = _open(remote_url, tmp_path)
    cache = dataset.remote.cache
    cache.folder.mkdir(parents=True, exist_ok=True)
    (cache.folder / "3.partial").write_bytes(b"half a block")  # what a download killed mid-way leaves
    assert cache.lookup(3) is None
    assert dataset.read_block(3).equals(fastload.Dataset(local_dataset).read_block(3))
    assert not (cache.folder / "3.partial").exists()


def test_a_corrupt_download_is_refused_before_it_enters_the_cache(local_dataset, remote_url, tmp_path, s3_server, s3_bucket):
    local = fastload.Dataset(local_dataset)
    shard = local.index.shards[0]
    data = bytearray((local_dataset / shard.file).read_bytes())
    data[int(shard.block_offsets[1]) + 20] ^= 0xFF  # one bit in block 1
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"corpus/{shard.file}", Body=bytes(data))
    dataset = _open(remote_url, tmp_path)
    with pytest.raises(fastload.FormatError, match="fails its checksum"):
        dataset.read_block(1)
    assert dataset.remote.cache.lookup(1) is None


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_mixture_of_a_remote_and_a_local_source_equals_the_all_local_one(local_dataset, remote_url, tmp_path, num_workers):
    other = tmp_path / "other"
    write_documents(other, distinct_documents(np.random.default_rng(9), 120, 40), block_rows=5)

    def batches(first):
        mix = fastload.Mixture({"a": (first, 0.75), "b": (str(other), 0.25)})
        loader = fastload.DataLoader(fastload.PackedDataset(mix, seq_len=SEQ_LEN, eos_id=0), batch_size=BATCH, shuffle=True, num_workers=num_workers)
        out = []
        for step, batch in enumerate(loader):
            out.append(torch.cat([batch["input_ids"], batch["source"][:, None]], 1))
            if step == 40:
                break
        return out

    remote = _open(remote_url, tmp_path)
    assert _same(batches(remote), batches(str(local_dataset)))


_READ_ONE_BLOCK = """
import sys, fastload
dataset = fastload.Dataset(sys.argv[1], cache_dir=sys.argv[2])
print("open", flush=True)
dataset.read_block(int(sys.argv[3]))
print("done", flush=True)
"""


def test_a_reader_killed_mid_download_leaves_nothing_that_passes_for_the_block(local_dataset, remote_url, tmp_path, fault_proxy, s3_proxy_env):
    import subprocess
    import sys

    local = fastload.Dataset(local_dataset)
    block = int(np.argmax(np.concatenate([s.block_bytes for s in local.index.shards])))
    reader = subprocess.Popen([sys.executable, "-c", _READ_ONE_BLOCK, remote_url, str(tmp_path / "cache"), str(block)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert reader.stdout.readline().strip() == "open"
        fault_proxy.set_faults(bandwidth_bytes_per_s=200)  # the block's bytes now take many seconds
        time.sleep(1.0)
        reader.kill()
        reader.communicate(timeout=30)
    finally:
        reader.kill()
    fault_proxy.set_faults(bandwidth_bytes_per_s=None)
    dataset = _open(remote_url, tmp_path)
    assert dataset.remote.cache.lookup(block) is None, "a killed download must not count as the block"
    assert dataset.read_block(block).equals(local.read_block(block))  # and the next reader is not blocked by a lock
