"""The folder a dataset is written into, held by one writer at a time, which removes only what it created.

Two conversions into one folder must never mix. Without a lock, one renames
or deletes (`--overwrite`) the other's temporary shards, and can exit 0 over
a shard holding the other's bytes; and a run refused because the folder is
not empty could delete the folder the other is still writing. So a writer
first *holds* the folder with `OutputFolder`:

- it takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `.fastload-lock` inside the
  folder. A second writer is refused at once with a `ConfigError` naming the
  holder's pid (the lock file's only content), not queued behind it. The
  kernel drops a flock when its process dies, SIGKILL included, so a lock
  file left by a killed run never blocks a later one; nor does it make the
  folder count as non-empty. The file is removed when the writer is done; a
  writer that locked a file someone removed meanwhile notices (the path no
  longer names the file it locked) and tries again.
- it records every file it creates (`create`, `rename`) and the folders
  `mkdir` made for it. `discard` (a failed or interrupted run) removes
  exactly those, never anything it found there, and a folder only when it
  is empty again. Unlinking needs no disk space, so `discard` works on a full
  disk; it never writes.
- with `overwrite`, the previous dataset (`index.json` and shards) is removed
  at `commit`, once the new dataset is complete on disk: a failed overwrite
  keeps the old dataset. The trade-off is that both share the disk until
  then. Leftovers of a conversion that did not finish (`.tmp-*`) are removed
  at once: no dataset refers to them and the lock shows nobody writes them.

`commit` is the end of a write, in an order that keeps the folder either a
complete dataset or no dataset at every instant: the new `index.json` is
written to a temporary file and fsynced first (the last step that needs
space), then the old `index.json` is removed, the new shards are renamed into
place, old shards no longer named are removed, and the index is renamed
last.

Unix only (`fcntl`), like the rest of fastload. On a network file system,
`flock` is only as good as the server's locking.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import weakref
from pathlib import Path

from fastload.errors import ConfigError
from fastload.format.index import INDEX_FILE

__all__ = ["OutputFolder", "LOCK_FILE", "TMP_PREFIX", "written_by_fastload"]

log = logging.getLogger("fastload.format")

LOCK_FILE = ".fastload-lock"
TMP_PREFIX = ".tmp-"
_SHARD_NAME = re.compile(r"shard-\d{5,}(-\d{4,})?\.arrow")  # a writer's k-th shard, or partition p's k-th (shard-PPPPP-KKKK)
_LOCK_ATTEMPTS = 100  # each retry means another writer removed the lock file between our open and our flock


def written_by_fastload(name: str) -> bool:
    """Whether a file name in a dataset folder is one fastload writes (index, shards, temporaries, lock)."""
    return name in (INDEX_FILE, LOCK_FILE) or bool(_SHARD_NAME.fullmatch(name)) or name.startswith(TMP_PREFIX)


class CreatedFiles:
    """The files a writer created in the folder `self.path` (`self._created`, in order): what it
    removes when it fails, and how much disk they take. Shared by the dataset's folder and a
    partition's (`partition_output.PartitionFolder`)."""

    path: Path
    _created: dict[str, None]

    def create(self, name: str) -> Path:
        """The path of a new file `name`, recorded as ours: `discard` removes it."""
        self._created[name] = None
        return self.path / name

    def rename(self, old: str, new: str) -> None:
        """Rename a file we created (replacing `new`); it stays ours under its new name."""
        os.replace(self.path / old, self.path / new)
        self._created.pop(old, None)
        self._created[new] = None

    @property
    def num_bytes_created(self) -> int:
        """Bytes on disk in the files we created and have not removed."""
        total = 0
        for name in self._created:
            try:
                total += os.stat(self.path / name).st_size
            except OSError:  # already gone: it holds no bytes
                pass
        return total


class OutputFolder(CreatedFiles):
    """A dataset folder held exclusively by this process until `commit` or `discard`. See the module docstring."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False):
        """`resume`: keep the `.tmp-*` files a killed conversion left (its finished partitions, for
        `convert.resume`) instead of refusing or removing them."""
        self.path = Path(path)
        self._resume = resume
        self._made_dirs: list[Path] = []  # folders mkdir created for us, outermost first
        self._created: dict[str, None] = {}  # names of the files we created, in order
        self._previous: list[str] = []  # the old dataset's files, replaced at commit
        self._lock_fd: int | None = None
        self._close_lock = None  # closes the lock's descriptor if we are dropped without commit or discard
        self.had_previous = False  # an old dataset was there (overwrite)
        self.previous_intact = True  # False once commit starts replacing it
        try:
            self._make_dirs()
            self._lock()
            self._check_contents(overwrite)
        except BaseException:
            self.discard()
            raise

    # -- holding -------------------------------------------------------------

    def _make_dirs(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output {str(self.path)!r} exists and is not a folder; choose another output path")
        missing = []
        folder = self.path
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # made by someone else meanwhile: not ours to remove
                continue
            except OSError as exc:
                raise ConfigError(f"cannot create the output folder {str(folder)!r}: {exc.strerror}; choose another output path") from None
            self._made_dirs.append(folder)

    def _lock(self) -> None:
        lock_path = self.path / LOCK_FILE
        for _ in range(_LOCK_ATTEMPTS):
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # the writer that made the folder removed it as it gave up
                self._make_dirs()
                continue
            except OSError as exc:
                raise ConfigError(f"cannot write to the output folder {str(self.path)!r}: {exc.strerror}; choose another output path") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise ConfigError(
                    f"another conversion{f' (pid {holder})' if holder else ''} is writing to the output folder "
                    f"{str(self.path)!r} right now; wait for it to finish, or choose another output folder"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise ConfigError(f"cannot lock the output folder {str(self.path)!r} ({exc.strerror}); choose a folder on a local disk") from None
            if _names_file(lock_path, fd):
                self._lock_fd = fd
                self._close_lock = weakref.finalize(self, os.close, fd)
                _write_pid(fd)
                return
            os.close(fd)  # we locked a lock file its last holder had just removed
        raise ConfigError(f"could not lock the output folder {str(self.path)!r}: other writers keep replacing its lock file")

    def _check_contents(self, overwrite: bool) -> None:
        entries = [p for p in self.path.iterdir() if p.name != LOCK_FILE]
        if self._resume:
            entries = [p for p in entries if not p.name.startswith(TMP_PREFIX)]
        if not entries:
            return
        if not overwrite:
            if all(p.name.startswith(TMP_PREFIX) for p in entries):
                raise ConfigError(
                    f"output folder {str(self.path)!r} holds the temporary files of a conversion that did not finish; "
                    "pass --resume (resume=True) to reuse the partitions it finished, or --overwrite to start over"
                )
            raise ConfigError(
                f"output folder {str(self.path)!r} is not empty; pass --overwrite (overwrite=True) to "
                "replace the dataset in it, or choose another folder"
            )
        # Only a folder that holds nothing but what fastload writes may be overwritten:
        # a user's own files (their raw .arrow input, notes) are never deleted.
        foreign = sorted(p.name for p in entries if not written_by_fastload(p.name) or (p.is_dir() and not p.is_symlink()))
        if foreign:
            raise ConfigError(
                f"output folder {str(self.path)!r} holds files fastload did not write "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); refusing to "
                "overwrite it. Choose an empty or new folder."
            )
        for path in entries:
            if path.name.startswith(TMP_PREFIX):  # (never with resume: they were left out of `entries`)
                path.unlink(missing_ok=True)
            else:
                self._previous.append(path.name)
        self.had_previous = bool(self._previous)

    # -- files ---------------------------------------------------------------

    def adopt(self, name: str, num_bytes: int = 0) -> None:
        """File `name`, written by another writer (a partition) into this folder, is ours: `discard` removes it."""
        self._created[name] = None

    index_to_take_down = False  # partitions write temporaries; the old dataset is replaced at `commit`

    def adopt_leftovers(self, is_ours) -> None:
        """Adopt every temporary file whose name, without its `.tmp-` prefix, `is_ours(name)` says a writer of
        this run made (one killed before it reported). Only temporaries: the lock says nobody else writes them."""
        for path in self.path.iterdir():
            if path.name.startswith(TMP_PREFIX) and is_ours(path.name[len(TMP_PREFIX) :]):
                self._created.setdefault(path.name, None)

    def remove_temporaries(self, keep: set[str]) -> None:
        """Remove every `.tmp-*` file but `keep` (a killed run's leftovers a resumed one did not use, fragment files)."""
        for path in self.path.iterdir():
            if path.name.startswith(TMP_PREFIX) and path.name not in keep:
                path.unlink(missing_ok=True)
                self._created.pop(path.name, None)

    def shard_finished(self, staged: str, final: str) -> None:
        """The writer finished shard `final` (still at `staged`): nothing to do until `commit` renames it.

        (`remote_output.RemoteOutput` uploads it here; the writer calls both the same way.)
        """

    def local_shard(self, staged: str, final: str) -> Path:
        """A finished shard's local file, to rewrite it after a schema promotion."""
        return self.path / staged

    def commit(self, renames: list[tuple[str, str]], index_bytes: bytes) -> None:
        """Turn our temporaries into the dataset: (temporary, final) shard names and the new index.json's bytes."""
        tmp_index = TMP_PREFIX + INDEX_FILE
        _write_durably(self.create(tmp_index), index_bytes)
        finals = {final for _, final in renames}
        self.previous_intact = False
        if INDEX_FILE in self._previous:  # first: from here until the rename below the folder is no dataset
            (self.path / INDEX_FILE).unlink(missing_ok=True)
        for tmp, final in renames:
            self.rename(tmp, final)
        for name in self._previous:
            if name != INDEX_FILE and name not in finals:
                (self.path / name).unlink(missing_ok=True)
        self._previous = []
        self.rename(tmp_index, INDEX_FILE)
        _fsync_dir(self.path)
        self._created.clear()  # the dataset's now, not ours to remove
        self._release()

    def discard(self) -> None:
        """Remove every file we created and each folder made for us that is empty again; let go of the folder.

        Never writes, so it works on a full disk; safe to call more than once.
        """
        for name in reversed(list(self._created)):
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s", self.path / name, exc.strerror)
        self._created.clear()
        self._release()
        for folder in reversed(self._made_dirs):
            try:
                folder.rmdir()
            except OSError as exc:  # not empty: someone else's files are in it now
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    log.warning("could not remove the folder %s: %s", folder, exc.strerror)
                break
        self._made_dirs = []

    def _release(self) -> None:
        if self._lock_fd is None:
            return
        try:  # removed while still locked, so nobody can take a lock on it that we then remove
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", self.path / LOCK_FILE, exc.strerror)
        self._close_lock()  # closes the descriptor, which releases the lock
        self._lock_fd = None

    @property
    def held(self) -> bool:
        return self._lock_fd is not None



def _names_file(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _write_pid(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # the pid only makes another writer's message clearer
        log.debug("could not record the pid in the lock file: %s", exc.strerror)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _write_durably(path: Path, data: bytes) -> None:
    """Write `data` to a new file and fsync it, unbuffered, so a failure leaves nothing to flush later."""
    try:
        with open(path, "wb", buffering=0) as f:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
            os.fsync(f.fileno())
    except OSError as exc:
        exc.filename = exc.filename or str(path)  # a failed write does not say which file it was
        raise


def _fsync_dir(folder: Path) -> None:
    """Make renames durable (best effort on file systems that refuse O_RDONLY on folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
