"""`BlockFiles`: the complete block files in a cache folder, with their sizes and ages, from one directory read.

The block cache (`block_cache.py`) lists its folder when it must evict: every
process on the node adds and removes files there, so no process's memory
says what is cached. On Linux a directory read gives each file's name and
inode but not its size or time (`os.DirEntry.stat()` is a system call per
file): stat()ing every block cost 90 ms of the 110 ms a listing of 50,000
blocks took. So each process remembers the size and time of the files it
has seen, by inode, and stat()s only the files new since its last listing.
A block file never changes once it has its final name (it is written under
another name and renamed), so a known inode's size and time still hold; a
new file under an old name (evicted, then downloaded again) has a new inode.

What is remembered is one process's: the first listing in a process stats
every file, the later ones only what other processes added meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["BlockFiles", "block_name"]

_SUFFIX = ".block"


def block_name(block_id: int) -> str:
    return f"{block_id}{_SUFFIX}"


class BlockFiles:
    """The block files of `folder`, listed on demand (`list`), remembering what was stat()ed before."""

    def __init__(self, folder: Path):
        self.folder = folder
        # The last listing, sorted by block id: what a file with the same id and inode still has.
        self._ids = np.zeros(0, np.int64)
        self._inodes = np.zeros(0, np.uint64)
        self._sizes = np.zeros(0, np.int64)
        self._written = np.zeros(0, np.float64)

    def list(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block ids, bytes, when written) of every complete block file now, sorted by block id."""
        names = []
        inodes = []
        cut = -len(_SUFFIX)
        with os.scandir(self.folder) as entries:
            for entry in entries:
                stem = entry.name[:cut]
                if stem.isdigit() and entry.name.endswith(_SUFFIX):
                    names.append(int(stem))
                    inodes.append(entry.inode())  # from the directory read: no system call
        ids = np.array(names, np.int64)
        inode = np.array(inodes, np.uint64)  # inode numbers are unsigned 64-bit
        by_id = np.argsort(ids, kind="stable")
        ids, inode = ids[by_id], inode[by_id]
        sizes = np.zeros(len(ids), np.int64)
        written = np.zeros(len(ids), np.float64)
        at = np.minimum(np.searchsorted(self._ids, ids), max(len(self._ids) - 1, 0))
        known = np.zeros(len(ids), bool) if len(self._ids) == 0 else (self._ids[at] == ids) & (self._inodes[at] == inode)
        sizes[known], written[known] = self._sizes[at[known]], self._written[at[known]]
        present = np.ones(len(ids), bool)
        folder = os.fspath(self.folder)
        for i in np.flatnonzero(~known).tolist():
            try:
                info = os.stat(os.path.join(folder, block_name(int(ids[i]))))
            except FileNotFoundError:
                present[i] = False  # evicted by another process just now
                continue
            if info.st_ino != inode[i]:  # replaced between the listing and now: take the new file
                inode[i] = info.st_ino
            sizes[i], written[i] = info.st_size, info.st_mtime
        ids, inode, sizes, written = ids[present], inode[present], sizes[present], written[present]
        self._ids, self._inodes, self._sizes, self._written = ids, inode, sizes, written
        return ids, sizes, written
