"""Resuming a conversion that was killed: partitions whose shards still validate by CRC-32 are not converted again.

A conversion that fails with an error removes everything it wrote. One that
is killed (SIGKILL, a lost driver machine, an out-of-memory kill; on Ray the
tasks die with their driver) leaves the temporaries of the partitions it
finished. Each partition, once its shards are fsynced, leaves its fragment
beside them as `.tmp-fragment-PPPPP.json` (not fsynced: `record_fragment`): the shards' sizes and CRC-32s,
its statistics (the accumulators exactly), columns, line and skip counts,
and a key of what it converted (its pieces with their files' sizes and
versions (modification times, ETags), and every option that changes the output). A rerun with
`resume=True` (`--resume`) reuses a partition only when its key matches and
every shard it lists is there with the recorded size and whole-file CRC-32:
the fragment file says what to expect, the shards themselves are checked. The
dataset is then byte-identical to one conversion from scratch.

Only local (or shared) folders: in object storage the shards are uploaded
under their final names and would have to be downloaded to be checked.
The fragment is JSON, never pickle: it lies in a folder others may write to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from fastload.convert.columns import KnownColumns
from fastload.convert.partition_work import BadLine, Fragment, PartitionJob, resolve_tokenizer
from fastload.convert.partitions import Partition
from fastload.format.checksum import crc32
from fastload.format.index import ShardInfo
from fastload.format.schema import Column, Schema
from fastload.format.stats import stats_from_state
from fastload.format.writer import WrittenShards, staged_name

__all__ = ["fragment_file_name", "record_fragment", "reusable_fragments", "partition_key"]

log = logging.getLogger("fastload.convert")

_FORMAT = 1  # of the fragment file; a file of another version is not reused
_READ_BYTES = 8 << 20


def fragment_file_name(partition_id: int) -> str:
    return f".tmp-fragment-{partition_id:05d}.json"


def partition_key(partition: Partition, job: PartitionJob) -> str:
    """What a partition's output depends on: its input bytes (as far as size and mtime tell) and the options."""
    tokenizer = resolve_tokenizer(job.tokenizer)
    described = {
        "pieces": [[str(p.file.path), p.file.fmt, p.file.compression, p.file.num_bytes, p.file.version, p.start, p.end] for p in partition.pieces],
        "write": job.write.to_json(),
        "options": [job.columns, job.text_field, job.keep_text, job.on_error, job.text_lines],
        "tokenizer": None if tokenizer is None else tokenizer.fingerprint,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def record_fragment(folder: Path, partition: Partition, job: PartitionJob, fragment: Fragment) -> str | None:
    """Write the partition's fragment file (after its shards); its name, or None when it could not be written.

    Not being able to write it (a full disk) costs only the chance to resume
    this partition, so it is a warning; the conversion itself goes on. It is
    not fsynced: a killed process's writes survive in the page cache, and
    after a power loss a fragment that did not reach the disk, whole or in
    part, fails to parse and its partition is converted again. What a reuse
    trusts is checked on every rerun (each shard's size and CRC-32, the key),
    so durability here would buy only a faster resume after a power loss,
    for 0.5-4 ms (measured) at the end of every partition.
    """
    name = fragment_file_name(partition.partition_id)
    partial = folder / (name + ".partial")
    data = json.dumps({"format": _FORMAT, "key": partition_key(partition, job), "fragment": _to_json(fragment)}).encode()
    try:
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, folder / name)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        log.warning("could not record partition %d for --resume (%s): a rerun would convert it again", partition.partition_id, exc.strerror or exc)
        return None
    return name


def reusable_fragments(folder: Path, partitions: list[Partition], job: PartitionJob) -> dict[int, Fragment]:
    """The fragments of partitions a killed run finished whose shards validate, by partition id."""
    found = {}
    for partition in partitions:
        path = folder / fragment_file_name(partition.partition_id)
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none, or cut short: the partition is converted again
            continue
        if not isinstance(recorded, dict) or recorded.get("format") != _FORMAT or recorded.get("key") != partition_key(partition, job):
            continue
        try:
            fragment = _from_json(recorded["fragment"])
        except (KeyError, TypeError, ValueError):
            continue
        if all(_shard_intact(folder, info) for info in (fragment.written.shards if fragment.written else ())):
            fragment.files[path.name] = path.stat().st_size
            found[partition.partition_id] = fragment
    return found


def _shard_intact(folder: Path, info: ShardInfo) -> bool:
    path = folder / staged_name(info.file)
    try:
        if path.stat().st_size != info.num_bytes:
            return False
        crc = 0
        with open(path, "rb") as f:
            while chunk := f.read(_READ_BYTES):
                crc = crc32(chunk, crc)
    except OSError:
        return False
    return crc == info.crc32


def _to_json(fragment: Fragment) -> dict:
    written = fragment.written
    known = fragment.known
    return {
        "partition_id": fragment.partition_id,
        "written": None if written is None else {
            "schema": written.schema.to_json(),
            "shards": [s.to_json() for s in written.shards],
            "stats": {name: stats.state() for name, stats in written.stats.items()},
        },
        "known": {
            "columns": [[name, None if c is None else c.to_json()] for name, c in known.columns.items()],
            "origin": known.origin,
            "first_source": known.first_source,
        },
        "files": fragment.files,
        "bytes_in": fragment.bytes_in,
        "num_skipped_rows": fragment.num_skipped_rows,
        "num_untyped_rows": fragment.num_untyped_rows,
        "lines": fragment.lines,
        "input_fields": list(fragment.input_fields),
        "bad_line": None if fragment.bad_line is None else vars(fragment.bad_line),
        "peak_memory_bytes": fragment.peak_memory_bytes,
    }


def _from_json(obj: dict) -> Fragment:
    known = KnownColumns()
    known.columns = {name: None if c is None else Column.from_json(c) for name, c in obj["known"]["columns"]}
    known.origin, known.first_source = dict(obj["known"]["origin"]), obj["known"]["first_source"]
    written = None
    if obj["written"] is not None:
        schema = Schema.from_json(obj["written"]["schema"])
        shards = tuple(ShardInfo.from_json(s, i) for i, s in enumerate(obj["written"]["shards"]))
        stats = {c.name: stats_from_state(c, obj["written"]["stats"][c.name]) for c in schema}
        written = WrittenShards(schema, shards, stats)
    return Fragment(
        obj["partition_id"], written, known, dict(obj["files"]), bytes_in=obj["bytes_in"],
        num_skipped_rows=obj["num_skipped_rows"], num_untyped_rows=obj["num_untyped_rows"], lines=list(obj["lines"]),
        input_fields=dict.fromkeys(obj["input_fields"]), bad_line=None if obj["bad_line"] is None else BadLine(**obj["bad_line"]),
        peak_memory_bytes=obj["peak_memory_bytes"],
    )
