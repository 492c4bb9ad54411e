"""When each process on this node reads each block next, published where every other one can see it.

The node's block cache (`block_cache.py`) is shared by every rank and
worker on the node, and evicts by next use. A process knows only its own
order; ranking by it alone, a worker evicted the blocks it had read as
"never needed again" while the other worker was about to read them, and they
were downloaded twice. So each process that reads ahead publishes its
schedule, and the evicting process ranks a block by the soonest use of any
live process.

A schedule is a file `schedule-<slot>.i64` in the cache folder's
`schedules` subfolder (of its own, so that finding the schedules does not
read the names of every cached block: at 50,000 blocks that listing was
what an eviction with 31 schedules spent beyond one without): int64 words,
word 0 how many places of its order the process has read,
word 1 + b the place of block b's next unread use in that order, or -1 when
the process will not read it again. Its owner maps the file shared and
writes to the mapping (a store to memory per read, no system call); readers
map it read only. The file is whole from the moment it appears (written
under a temporary name, then renamed). A next use in another process,
place - places read, is counted in the same unit as in the evicting process's
own order: both move a window's blocks at a time as the same batches are
filled.

Liveness: the owner holds a record lock on a byte of the cache's lock file,
its *slot*: a random number whose byte no other process held when it was
taken (the cache picks it, `BlockCache.publish_schedule`). A reader that can
lock that byte itself knows the owner is gone (the kernel drops a dead
process's locks, whatever killed it) and removes its schedule, so a SIGKILL
leaves nothing that keeps blocks cached for long; and it removes a dead
owner's `.schedule-<slot>.i64.partial`, left by a process killed between
writing its schedule and renaming it (the slot is locked before the file
is written, so a partial whose slot nobody holds is no one's). Not the pid: processes of
two containers sharing the node's cache folder may have the same pid (each
its own PID namespace), and the second one could not take the first's lock
(it waited, then failed); nor can a reused pid be taken for the old process.
Reads race with writes without harm: a word is read whole, and a stale value
only ranks one block a little off for one eviction.
"""

from __future__ import annotations

import atexit
import mmap
import os
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["publish_schedule", "published_here", "Schedules", "NOT_NEEDED", "SUBFOLDER"]

NOT_NEEDED = -1  # a block's word when the process will not read it again
SUBFOLDER = "schedules"  # in the cache folder
_PREFIX, _SUFFIX, _PARTIAL = "schedule-", ".i64", ".partial"


# Slots this process published its schedules under: `others` skips them (the process's own needs
# come from its prefetcher, and its own lock would make its schedule look dead). A forked child has none.
_published_here: set[int] = set()
os.register_at_fork(after_in_child=_published_here.clear)


def published_here(slot: int) -> bool:
    """Whether this process published a schedule under `slot`."""
    return slot in _published_here


def _path(folder: Path, slot: int) -> Path:
    return folder / SUBFOLDER / f"{_PREFIX}{slot}{_SUFFIX}"


def _slot_of(name: str) -> tuple[int | None, bool]:
    """(the slot of a schedule's file name, whether it is a partial one); (None, False) for any other name."""
    partial = name.startswith(".") and name.endswith(_PARTIAL)
    if partial:
        name = name[1 : -len(_PARTIAL)]
    if name.startswith(_PREFIX) and name.endswith(_SUFFIX) and name[len(_PREFIX) : -len(_SUFFIX)].isdigit():
        return int(name[len(_PREFIX) : -len(_SUFFIX)]), partial
    return None, False


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # a forked child inherits the handler, not the schedule
        path.unlink(missing_ok=True)


def publish_schedule(folder: Path, num_blocks: int, slot: int) -> np.ndarray:
    """This process's schedule (word 0 the places read, then one word per block, all NOT_NEEDED), mapped
    shared: what the caller writes there, every process on the node reads. `slot`: the number whose
    lock this process holds (see the module docstring)."""
    _published_here.add(slot)
    path = _path(folder, slot)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(f".{path.name}{_PARTIAL}")
    words = np.full(1 + num_blocks, NOT_NEEDED, np.int64)
    words[0] = 0
    with open(partial, "wb") as f:
        f.write(words.tobytes())
    os.replace(partial, path)
    atexit.register(_remove, path, os.getpid())  # a process that exits otherwise (a worker's os._exit) leaves it to `Schedules.others`
    with open(path, "r+b") as f:
        mapping = mmap.mmap(f.fileno(), words.nbytes)  # the mapping outlives the descriptor
    return np.frombuffer(mapping, np.int64)


class Schedules:
    """The published schedules of the other live processes using `folder`, read when the cache evicts.

    is_alive(slot): whether the process that published a schedule still runs (the cache tests its lock).
    """

    def __init__(self, folder: Path, is_alive: Callable[[int], bool]):
        self.folder, self.is_alive = folder, is_alive
        self._mapped: dict[int, tuple[int, np.ndarray]] = {}  # slot -> (inode, words)

    def others(self) -> list[np.ndarray]:
        """The schedules of the other processes on the node that are still running (dead ones' files removed)."""
        found = []
        seen = set()
        try:
            entries = list(os.scandir(self.folder / SUBFOLDER))
        except FileNotFoundError:
            entries = []  # no process has published one yet
        for entry in entries:
            slot, partial = _slot_of(entry.name)
            if slot is None or slot in _published_here:
                continue
            if partial:
                if not self.is_alive(slot):
                    Path(entry.path).unlink(missing_ok=True)  # its writer was killed before renaming it
                continue
            if not self.is_alive(slot):
                Path(entry.path).unlink(missing_ok=True)
                self._mapped.pop(slot, None)
                continue
            seen.add(slot)
            words = self._map(slot, entry)
            if words is not None:
                found.append(words)
        # Schedules removed since the last look (their owners exited): unmap them, or each one's
        # num_blocks words stay mapped, and on disk, for as long as this process lives.
        for slot in self._mapped.keys() - seen:
            del self._mapped[slot]
        return found

    def _map(self, slot: int, entry: os.DirEntry) -> np.ndarray | None:
        try:
            inode = entry.inode()
            known = self._mapped.get(slot)
            if known is not None and known[0] == inode:
                return known[1]
            with open(entry.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 8 or size % 8:
                    return None  # not a schedule this module wrote
                words = np.frombuffer(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ), np.int64)
        except (FileNotFoundError, ValueError):
            return None  # removed meanwhile, or empty
        self._mapped[slot] = (inode, words)
        return words

    def next_uses(self, block_ids: np.ndarray, schedules: list[np.ndarray]) -> np.ndarray:
        """The soonest next use of each of `block_ids` among `schedules` (`others()`), in places after the
        places each one has read (0: due already; inf: none will read it again), as float64.

        One vectorised pass per schedule: the evicting process ranks every cached block against
        every other process's schedule (measured with 31 schedules and 10,000 cached blocks: 212 ms
        of CPU per eviction a word at a time, under the node's eviction lock).
        """
        block_ids = np.asarray(block_ids, np.int64)
        soonest = np.full(len(block_ids), np.inf)
        for words in schedules:
            inside = block_ids + 1 < len(words)
            places = np.full(len(block_ids), NOT_NEEDED, np.int64)
            places[inside] = words[block_ids[inside] + 1]  # each word read once: the owner may be writing it
            due = np.maximum(places - int(words[0]), 0).astype(np.float64)
            np.minimum(soonest, np.where(places == NOT_NEEDED, np.inf, due), out=soonest)
        return soonest
