"""`RemoteBlocks` across fork: a child starts afresh instead of waiting on its parent's reads ahead.

The store here is a local folder (`LocalStore`): what is tested is the
per-process state of the reader, not a network client.
"""

from __future__ import annotations

import os
import signal
import threading

import pyarrow as pa
import pytest

from fastload.errors import FormatError
from fastload.format import Column, DatasetWriter, Schema, WriteOptions
from fastload.format.remote import RemoteBlocks

_SCHEMA = Schema((Column("i", "scalar", "int64"),))


def _blocks(tmp_path) -> RemoteBlocks:
    with DatasetWriter(tmp_path / "ds", _SCHEMA, options=WriteOptions(block_rows=10)) as writer:
        writer.write(pa.record_batch([pa.array(range(100), pa.int64())], schema=_SCHEMA.arrow_schema()))
    return RemoteBlocks(str(tmp_path / "ds"), storage_options=None, cache_dir=tmp_path / "cache", cache_bytes=1 << 20, retry=None)


def test_a_child_forked_while_its_parent_reads_ahead_reads_a_block_itself_and_leaves_the_parents_schedule_alone(tmp_path):
    blocks = _blocks(tmp_path)
    download, gate = blocks._download, threading.Event()

    def parent_download(block_id, cause):  # the parent's reads ahead are still under way when it forks
        if cause == "ahead" and os.getpid() == parent:
            gate.wait(30)
        return download(block_id, cause)

    parent = os.getpid()
    blocks._download = parent_download
    blocks.expect(list(range(10)))
    published = blocks._prefetcher.published
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what reading did, and leave without running pytest's cleanup
        signal.alarm(20)  # a hang (waiting for the parent's fetch, which never ends here) ends the child
        try:
            answer = b"read" if bytes(blocks.block_bytes_of(0)) == blocks.cache.path_of(0).read_bytes() else b"wrong bytes"
        except BaseException as exc:
            answer = repr(exc).encode()
        os.write(write, answer[:4000])
        os._exit(0)
    gate.set()  # the parent's fetches end (in the parent: the child's copies of them never do)
    os.close(write)
    with os.fdopen(read, "rb") as answers:
        answer = answers.read()
    os.waitpid(pid, 0)
    assert answer == b"read", answer or "the child hung"
    assert published[0] == 0, "the child counted its read into the parent's published schedule"


def test_a_shard_whose_head_claims_a_schema_longer_than_the_shard_is_a_format_error_naming_it(tmp_path):
    blocks = _blocks(tmp_path)
    shard = tmp_path / "ds" / blocks.index.shards[0].file
    data = bytearray(shard.read_bytes())
    data[8:16] = b"\xff\xff\xff\xff" + (1 << 30).to_bytes(4, "little")  # a 1 GiB schema message in a shard of a few KB
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"shard .*shard-00000\.arrow does not start like an Arrow IPC file .*fastload verify"):
        blocks.shard_head(0, blocks.index.schema)
