"""`BlockCache`: verified blocks of one remote dataset on this node's disk, shared by every process on it.

One file per block (`<block id>.block`, exactly the block's byte range), in a
folder of its own per dataset version. What makes it safe to share between
ranks and workers that start, fork and die at any moment:

- A block enters the cache only after its CRC matched, written under a
  temporary name and renamed: a file with the final name is always whole
  and verified, whatever was killed when.
- One download per block per node: a downloader holds an exclusive POSIX
  record lock on byte 2·id of the folder's `locks` file; others wait
  for it, then find the file. The kernel drops a dead process's locks, so a
  SIGKILL leaves nothing that blocks (at most a `.partial` file, which
  never counts and the next downloader overwrites).
- Pins: a process holds a shared lock on byte 2·id + 1 while it still
  needs a block (fetched ahead, not yet read). Eviction takes both bytes'
  exclusive locks without waiting and skips what it cannot lock, so no
  process evicts a block another one still needs or is writing. (Separate
  bytes, so that two processes pinning a block never block its download.)
- Eviction by next use, not LRU: the evicting process ranks the unpinned
  blocks by when the node reads them next: the soonest of its own schedule
  and the schedules the node's other live processes publish
  (`schedules.py`); blocks no process will read again go first, oldest
  first among them. It evicts only blocks needed later than the one coming
  in. When nothing
  qualifies, the new block is used from memory without entering the cache:
  a cache that is too small costs downloads, never a deadlock.
- Eviction is paid for once per many downloads, not each: ranking means
  listing the folder (every process adds to it), in time that grows with
  the number of blocks, under the node-wide eviction lock. So an eviction
  frees the incoming block's bytes and a spare 2% of the capacity (in whole
  blocks of its size; none in a cache of fewer than 50 such blocks), and
  writes the room left in the node's account (`room.py`); the next
  downloads take their bytes from the account under the same lock and list
  nothing until it runs out. The listing stat()s only files new since this
  process's last one (`block_files.py`).
- Bounded disk: a block is written only after its bytes were taken from the
  account or counted free in a listing, so the complete block files stay
  within `capacity_bytes`, except for this race, as before the account:
  a listing sets the account from the files present, so blocks whose bytes
  were taken but which are still being written when another process lists
  are not counted (at most one block per downloading thread on the node).
  A process killed between taking bytes and renaming its block leaves them
  taken (the cache counts less room than it has) until the next listing.

POSIX record locks belong to a process, not a thread: within a process a
`threading.Lock` per block serialises downloads, and the process's own
pins are kept in memory, shared by every `BlockCache` of the folder in the
process (the lock file is opened once per process and folder and never
closed, since closing any descriptor of it would drop all its locks).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fastload.errors import ConfigError, StoreError
from fastload.store.block_files import BlockFiles, block_name
from fastload.store.room import ROOM_FILE, read_room, write_room
from fastload.store.schedules import Schedules, publish_schedule, published_here

__all__ = ["BlockCache"]

_LOCKS = "locks"
_EVICTION_BYTE = 1 << 42  # the byte of the locks file whose lock serialises eviction (past any block's bytes)
_LIVE_BYTES = 1 << 43  # byte _LIVE_BYTES + slot: held by a process while its schedule is published (`schedules.py`)
_SLOT_BITS = 40  # slots are drawn at random below 2**40: two processes drawing one slot is retried, not waited for
# An eviction frees this much of the capacity beyond the incoming block (in whole blocks of its size), so
# that the next downloads take room from the account without listing the folder: at 2%, a cache of
# 50,000 equal blocks lists it once per 1,000 downloads, and is on average 1% below its capacity.
_SPARE_FRACTION = 0.02


_process_setup = threading.Lock()


@dataclass
class _ProcessFolder:
    """This process's state for one cache folder (by real path), shared by every BlockCache of the folder
    in the process (two Datasets of one URL), since the record locks it stands for are the process's: one
    object's eviction would otherwise take, and then drop, the locks of the other's pins and downloads."""

    locks_fd: int  # the locks file, never closed (closing any descriptor of it drops all its locks)
    room_fd: int  # the node's account of free bytes (`room.py`)
    files: BlockFiles  # the folder's block files as last listed (`block_files.py`)
    guard: threading.Lock = field(default_factory=threading.Lock)  # of the two dicts
    downloading: dict[int, threading.Lock] = field(default_factory=dict)  # block id -> download lock
    pins: dict[int, int] = field(default_factory=dict)  # block id -> pin count
    evicting: threading.Lock = field(default_factory=threading.Lock)  # one thread of the process evicts at a time


_folders: dict[str, _ProcessFolder] = {}


def _new_setup_lock() -> None:
    global _process_setup
    _process_setup = threading.Lock()  # the parent's may have been held by a thread the child does not have
    _folders.clear()  # the child holds none of its parent's record locks: its state starts afresh


os.register_at_fork(after_in_child=_new_setup_lock)


def _writing(block_id: int) -> int:
    return 2 * block_id


def _pinned(block_id: int) -> int:
    return 2 * block_id + 1


class BlockCache:
    """Blocks by id in `folder`, at most `capacity_bytes` of them (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, capacity_bytes: int, *, wait_s: float = 120.0):
        self.folder = Path(folder)
        self.capacity_bytes = int(capacity_bytes)
        self.wait_s = wait_s
        self._pid = None
        self._fd = self._room_fd = -1
        self._files: BlockFiles | None = None  # this process's listing of the folder, set up with the locks
        self._guard = threading.Lock()
        self._downloading: dict[int, threading.Lock] = {}
        self._pins: dict[int, int] = {}  # block id -> pin count in this process
        self._schedules: Schedules | None = None  # the other processes' schedules, set up in each process
        self.next_use: Callable[[int], float] = lambda block_id: float("inf")  # set by the prefetcher
        self.stats = {"hits": 0, "downloads": 0, "bytes_downloaded": 0, "evictions": 0, "bypassed": 0}

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "capacity_bytes": self.capacity_bytes, "wait_s": self.wait_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["capacity_bytes"], wait_s=state["wait_s"])

    # -- locks ------------------------------------------------------------------------

    def _lock_fd(self) -> int:
        """This process's descriptor of the locks file, opened on first use in each process: a forked
        child owns none of its parent's record locks, and its copies of the parent's thread locks may
        have been held by a thread that does not exist in it, so its per-process state starts afresh.
        The state is the process's for the folder (`_folders`), whichever BlockCache of it asks."""
        if self._pid != os.getpid():
            with _process_setup:  # threads of this process arriving together set it up once
                if self._pid != os.getpid():
                    self.folder.mkdir(parents=True, exist_ok=True)
                    key = os.path.realpath(self.folder)
                    if key not in _folders:
                        _folders[key] = _ProcessFolder(
                            locks_fd=os.open(self.folder / _LOCKS, os.O_RDWR | os.O_CREAT, 0o644),
                            room_fd=os.open(self.folder / ROOM_FILE, os.O_RDWR | os.O_CREAT, 0o644),
                            files=BlockFiles(self.folder),
                        )
                    state = _folders[key]
                    self._fd, self._room_fd, self._files = state.locks_fd, state.room_fd, state.files
                    self._guard, self._downloading, self._pins, self._evicting = state.guard, state.downloading, state.pins, state.evicting
                    self._schedules = Schedules(self.folder, self._is_alive)
                    self._pid = os.getpid()
        return self._fd

    def _try_lock(self, byte: int, mode: int) -> bool:
        try:
            fcntl.lockf(self._lock_fd(), mode | fcntl.LOCK_NB, 1, byte)
            return True
        except (BlockingIOError, PermissionError):
            return False
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: the file system keeps no record locks
            raise ConfigError(
                f"the block cache folder {self.folder} is on a file system without POSIX record locks "
                f"({exc.strerror}), which the cache needs to share blocks between processes safely; choose a "
                "cache folder on a local disk (cache_dir=, --cache-dir or FASTLOAD_CACHE_DIR)"
            ) from None

    def _lock(self, byte: int, mode: int, what: str) -> None:
        """Take a lock on `byte`, polling up to `wait_s`: the holder is another process downloading under its own deadline."""
        give_up = time.monotonic() + self.wait_s
        pause = 0.001
        while not self._try_lock(byte, mode):
            if time.monotonic() > give_up:
                raise StoreError(
                    f"waited {self.wait_s:.0f} s for another process on this node to finish {what} in the cache "
                    f"{self.folder}; if no fastload process is running, remove the folder"
                )
            time.sleep(pause)
            pause = min(0.05, pause * 2)

    def _unlock(self, byte: int) -> None:
        fcntl.lockf(self._lock_fd(), fcntl.LOCK_UN, 1, byte)

    def publish_schedule(self, num_blocks: int):
        """This process's schedule, seen by every process evicting from this cache (`schedules.py`):
        word 0 the places it has read, word 1 + b the place of block b's next read (-1: none). The caller writes it."""
        for _ in range(100):
            slot = secrets.randbits(_SLOT_BITS)
            # (a byte this process locked already would lock again: its own slots are skipped by hand)
            if not published_here(slot) and self._try_lock(_LIVE_BYTES + slot, fcntl.LOCK_EX):
                return publish_schedule(self.folder, num_blocks, slot)
        raise StoreError(f"found no free slot to publish this process's schedule in the cache {self.folder} in 100 draws; remove the folder")

    def _is_alive(self, slot: int) -> bool:
        """Whether the process that published under `slot` still holds its lock."""
        if not self._try_lock(_LIVE_BYTES + slot, fcntl.LOCK_EX):
            return True
        self._unlock(_LIVE_BYTES + slot)
        return False

    # -- blocks -------------------------------------------------------------------------

    def path_of(self, block_id: int) -> Path:
        return self.folder / block_name(block_id)

    def lookup(self, block_id: int) -> Path | None:
        path = self.path_of(block_id)
        return path if path.exists() else None

    def pin(self, block_id: int) -> None:
        """Keep `block_id` from eviction by any process until `unpin` (counted within this process)."""
        self._lock_fd()
        with self._guard:
            count = self._pins.get(block_id, 0)
            if count == 0:
                self._lock(_pinned(block_id), fcntl.LOCK_SH, f"evicting block {block_id}")
            self._pins[block_id] = count + 1

    def unpin(self, block_id: int) -> None:
        self._lock_fd()
        with self._guard:
            count = self._pins.get(block_id, 0) - 1
            if count > 0:
                self._pins[block_id] = count
                return
            self._pins.pop(block_id, None)
            if count == 0:
                self._unlock(_pinned(block_id))

    def get(self, block_id: int, size: int, fetch: Callable[[], bytes | memoryview]) -> Path | memoryview:
        """The block: its cached file, or the verified bytes `fetch()` returns (stored when there is room).

        `fetch` downloads and verifies (raising when the bytes are wrong);
        it runs at most once per block per node at a time.
        """
        path = self.lookup(block_id)
        if path is not None:
            self.stats["hits"] += 1
            return path
        self._lock_fd()
        with self._guard:
            local = self._downloading.setdefault(block_id, threading.Lock())
        with local:
            path = self.lookup(block_id)  # another thread of this process fetched it meanwhile
            if path is not None:
                self.stats["hits"] += 1
                return path
            self._lock(_writing(block_id), fcntl.LOCK_EX, f"downloading block {block_id}")
            try:
                path = self.lookup(block_id)  # another process fetched it while this one waited
                if path is not None:
                    self.stats["hits"] += 1
                    return path
                data = memoryview(fetch())
                self.stats["downloads"] += 1
                self.stats["bytes_downloaded"] += len(data)
                if not self._make_room(block_id, len(data)):
                    self.stats["bypassed"] += 1
                    return data
                path = self.path_of(block_id)
                partial = path.with_suffix(".partial")
                with open(partial, "wb") as f:
                    f.write(data)
                os.replace(partial, path)
                return path
            finally:
                self._unlock(_writing(block_id))

    # -- room ---------------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of the complete block files in the folder now (other processes add to it)."""
        self._lock_fd()
        with self._evicting:  # the listing's memory is the process's (`block_files.py`)
            return int(self._files.list()[1].sum())

    def _spare_bytes(self, size: int) -> int:
        """What an eviction frees beyond the incoming block: whole blocks of its size, up to _SPARE_FRACTION of the capacity."""
        return int(self.capacity_bytes * _SPARE_FRACTION) // max(size, 1) * max(size, 1)

    def _make_room(self, incoming: int, size: int) -> bool:
        """Take `size` bytes of the node's account for `incoming`, evicting when it has too few; False when they cannot be had."""
        if size > self.capacity_bytes:
            return False
        self._lock_fd()
        # The record lock keeps other processes out, not this one's other threads (it is the process's:
        # they would all hold it, evict the same excess each, and the first done would unlock it).
        with self._evicting:
            self._lock(_EVICTION_BYTE, fcntl.LOCK_EX, "evicting")
            try:
                free = read_room(self._room_fd, self.capacity_bytes)
                if free < size:
                    free = self._evict(incoming, size)
                fits = free >= size
                write_room(self._room_fd, self.capacity_bytes, free - size if fits else free)
                return fits
            finally:
                self._unlock(_EVICTION_BYTE)

    def _evict(self, incoming: int, size: int) -> int:
        """Count the folder's blocks and evict down to the low watermark (`size` and the spare bytes free),
        blocks needed later than `incoming` only; the bytes free after. Under both eviction locks."""
        ids, sizes, written = self._files.list()
        used = int(sizes.sum())
        excess = used + size + self._spare_bytes(size) - self.capacity_bytes
        if excess <= 0:
            return self.capacity_bytes - used
        horizon = self.next_use(incoming)
        if horizon == float("inf"):
            horizon = 0.0  # a read outside the known order: the block is wanted now
        others = self._schedules.others()
        with self._guard:  # this process's own pins and downloads are known here, not by lock (POSIX locks are per process)
            busy = list(self._pins) + [b for b, lock in self._downloading.items() if lock.locked()]
            keep = ~np.isin(ids, np.array(busy, np.int64))
            ids, sizes, written = ids[keep], sizes[keep], written[keep]
            node = self._schedules.next_uses(ids, others)
            own = np.fromiter(map(self.next_use, ids.tolist()), np.float64, len(ids))
            when = np.minimum(own, node)
            # By the node's next use, needed furthest ahead first; among blocks no process will read
            # again, the oldest first (then the highest id, as a tie-break).
            for i in np.lexsort((-ids, written, -when)).tolist():
                if excess <= 0 or when[i] <= horizon:
                    break  # what is left is needed sooner than the incoming block: keep it
                block_id = int(ids[i])
                if not self._try_lock(_writing(block_id), fcntl.LOCK_EX):
                    continue  # being written by another process
                try:
                    if not self._try_lock(_pinned(block_id), fcntl.LOCK_EX):
                        continue  # another process still needs it
                    self._unlock(_pinned(block_id))
                    self.path_of(block_id).unlink(missing_ok=True)  # readers that mapped it keep their pages
                finally:
                    self._unlock(_writing(block_id))
                excess -= int(sizes[i])
                used -= int(sizes[i])
                self.stats["evictions"] += 1
        return self.capacity_bytes - used
