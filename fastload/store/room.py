"""The node's account of how many more bytes its block cache may take before it must evict: the `room` file.

Counting what the cache holds means listing its folder, in time that grows
with the number of blocks, under the node-wide eviction lock
(`block_cache.py`); once per download, at 50,000 cached blocks that was
133 ms a download (7 downloads a second for the whole node). So the process
that counts also evicts down to a low watermark and writes down the room
left; every download then takes its bytes from that account under the same
lock (a 24-byte read and write) and lists the folder only when it runs out.

The file: three int64 words, little-endian: the format version, the
capacity the account was counted for, the bytes still free. It is read
and written only under the eviction lock. The account errs one way only:
a process killed after taking bytes and before its block appears leaves
them taken, so the cache may count less room than it has, never more, and
the next listing sets the account to what is there. An account that cannot
be trusted (no file yet, another format version, a torn write, counted for
another capacity by a process configured otherwise) reads as empty, which
makes the reader count.
"""

from __future__ import annotations

import os
import struct

__all__ = ["ROOM_FILE", "read_room", "write_room"]

ROOM_FILE = "room"
_VERSION = 1
_LAYOUT = struct.Struct("<qqq")  # version, capacity bytes, free bytes


def read_room(fd: int, capacity_bytes: int) -> int:
    """The bytes the account says are free for a cache of `capacity_bytes`; 0 when it cannot be trusted."""
    raw = os.pread(fd, _LAYOUT.size, 0)
    if len(raw) != _LAYOUT.size:
        return 0
    version, capacity, free = _LAYOUT.unpack(raw)
    if version != _VERSION or capacity != capacity_bytes or not 0 <= free <= capacity:
        return 0
    return free


def write_room(fd: int, capacity_bytes: int, free_bytes: int) -> None:
    os.pwrite(fd, _LAYOUT.pack(_VERSION, capacity_bytes, max(0, free_bytes)), 0)
