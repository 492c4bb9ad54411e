"""A dataset written into object storage: shards staged on local disk, uploaded as each is finished, `index.json` last.

`open_output(location)` is what a writer holds: an `OutputFolder` for a local
path, a `RemoteOutput` for a URL (`s3://bucket/prefix`, ...). Both offer the
writer the same few calls (`create`, `rename`, `shard_finished`,
`local_shard`, `commit`, `discard`), so `DatasetWriter` and `fastload
convert` have one code path.

`ShardUploads` writes each shard into a local staging folder (an
`OutputFolder` in a fresh temporary folder) and, once the shard is finished,
uploads it under its final name in a background thread and deletes the
local copy; it is what each partition of `fastload convert` writes into, in
the driver's process or in a Ray task. `RemoteOutput`, the driver's, adds the
prefix check, adopts the partitions' uploads (so a failure deletes them) and
commits. At most `max_uploads_in_flight` finished shards wait on local
disk, so a conversion needs about (1 + that) shards of local space whatever
the dataset's size. `commit` waits for the uploads, deletes the old shards
the new index does not name, and uploads `index.json` last: object stores
replace a whole object atomically, so a reader sees either no dataset or a
complete one.

Failures: `discard` (any error, Ctrl-C) stops the uploads and deletes every
object this run uploaded, best effort (the store may be what failed). A run
killed outright (SIGKILL, a lost machine) leaves shards but never an
`index.json`, so nothing opens as a dataset; `--overwrite` clears them.

Overwrite (the choice, and why): object stores have no rename, so a new
shard is uploaded under its final name, which may be the name of an old
shard. An `index.json` naming shards of another run must never exist, so
the old `index.json` is deleted *before the first new shard is uploaded*
(by whichever partition's writer uploads first: `index_to_take_down`).
Until then (reading and converting the first shard: a bad input line fails
here) the old dataset stays whole; from then on the prefix
is no dataset until the new `index.json` lands. A reader that opened the old
dataset before keeps its index: its next block may come from a replaced
shard and then fails its CRC check with a `FormatError` (every block is
checked before use, and the block cache is keyed by the index's digest), so
it never reads mixed data, but it does stop. To replace a dataset that jobs
are reading, write a new prefix and point the jobs at it.

Not done: there is no lock across machines (object stores have none that
every S3-compatible server honours); two conversions into one prefix at once
are not detected. Only a prefix holding nothing but what fastload writes may
be overwritten; objects in sub-prefixes are not looked at.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from fastload.errors import ConfigError
from fastload.format.index import INDEX_FILE
from fastload.format.output import OutputFolder, written_by_fastload
from fastload.store import RetryPolicy, Store, is_remote, open_store

__all__ = ["RemoteOutput", "ShardUploads", "open_output"]

log = logging.getLogger("fastload.format")

MAX_UPLOADS_IN_FLIGHT = 2  # finished shards waiting for (or in) upload: bounds local disk to ~3 shards


def open_output(
    location: str | os.PathLike,
    *,
    overwrite: bool = False,
    storage_options: dict | None = None,
    retry: RetryPolicy | None = None,
    staging_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> "OutputFolder | RemoteOutput":
    """The output a writer holds: a local folder (locked) or a URL prefix (staged uploads).

    `resume` (a folder only): keep what a killed conversion left there (see `OutputFolder`)."""
    if is_remote(location):
        if resume:
            raise ConfigError(
                f"resuming a conversion works for a folder, not for {location}: shards in object storage would have "
                "to be downloaded to be checked; convert again with --overwrite"
            )
        return RemoteOutput(open_store(location, storage_options, retry), overwrite=overwrite, staging_dir=staging_dir)
    return OutputFolder(location, overwrite=overwrite, resume=resume)


class ShardUploads:
    """Shards written into a local staging folder and uploaded under their final names as each is finished.

    What one partition of a conversion writes into (see `partition_output`),
    and the upload machinery of `RemoteOutput`. `discard` deletes what it
    uploaded; `finish` waits for the uploads and removes the staging folder.
    """

    had_previous = False  # for the writer's messages: a part of a dataset replaces nothing itself
    previous_intact = True

    def __init__(
        self,
        store: Store,
        *,
        staging_dir: str | os.PathLike | None = None,
        max_uploads_in_flight: int = MAX_UPLOADS_IN_FLIGHT,
        take_down_index: bool = False,
    ):
        """`take_down_index`: delete the prefix's `index.json` before the first upload (the dataset being overwritten)."""
        self.store = store
        self.url = store.url
        self._take_down_index = take_down_index
        self._uploaded: dict[str, int] = {}  # final names uploaded (or being uploaded) -> bytes
        self._in_flight: list[tuple[str, Future]] = []
        self._max_in_flight = max(1, int(max_uploads_in_flight))
        self._pool: ThreadPoolExecutor | None = None
        self._staging_root = Path(tempfile.mkdtemp(prefix="fastload-upload-", dir=staging_dir))
        self.staging = OutputFolder(self._staging_root)
        self.path = self.staging.path  # where the writer creates its files

    # -- what the writer calls -------------------------------------------------------

    def create(self, name: str) -> Path:
        """A new local file `name` in the staging folder."""
        return self.staging.create(name)

    def rename(self, old: str, new: str) -> None:
        self.staging.rename(old, new)

    def shard_finished(self, staged: str, final: str) -> None:
        """The staged file `staged` is shard `final`, complete: upload it (in the background) and drop the local copy."""
        if self._take_down_index:  # no index.json may ever name a shard of another run
            self.store.delete(INDEX_FILE)
            self._take_down_index = False
        self._wait_for_uploads(keep=self._max_in_flight - 1)
        path = self.path / staged
        self._uploaded[final] = path.stat().st_size
        self._in_flight.append((staged, self._uploads().submit(self._upload, path, final)))

    def local_shard(self, staged: str, final: str) -> Path:
        """A finished shard on local disk again (to rewrite it after a schema promotion): downloaded when uploaded."""
        self._wait_for_uploads(keep=0)
        path = self.create(staged)
        if not path.exists():
            path.write_bytes(bytes(self.store.get(final)))
        return path

    def finish(self) -> dict[str, int]:
        """Wait for every upload; remove the staging folder. Returns {final name: bytes} of what was uploaded."""
        self._wait_for_uploads(keep=0)
        uploaded = dict(self._uploaded)
        self._uploaded.clear()  # the dataset's now (its driver's), not ours to remove
        self._close_staging()
        return uploaded

    def discard(self) -> None:
        """Stop uploading and delete what was uploaded (best effort); remove the staging folder. Safe twice."""
        for _, future in self._in_flight:
            future.cancel()
        for _, future in self._in_flight:
            try:
                future.result()
            except BaseException:  # the upload's failure is already being reported, or does not matter now
                pass
        self._in_flight = []
        self._delete(self._leftovers())
        self._uploaded.clear()
        self._close_staging()

    @property
    def num_bytes_created(self) -> int:
        """Bytes uploaded or staged and not removed."""
        return sum(self._uploaded.values()) + self.staging.num_bytes_created

    @property
    def held(self) -> bool:
        return self.staging.held

    # -- inside ------------------------------------------------------------------------

    def _leftovers(self) -> list[str]:
        return list(self._uploaded)

    def _delete(self, names: list[str]) -> None:
        for name in names:
            try:
                self.store.delete(name)
            except Exception as exc:  # keep deleting the rest; nothing opens without index.json anyway
                log.warning("could not delete %s after the conversion failed: %s", self.store.url_of(name), exc)

    def _uploads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="fastload-upload")
        return self._pool

    def _upload(self, path: Path, final: str) -> None:
        self.store.put(final, path)
        path.unlink()

    def _wait_for_uploads(self, keep: int) -> None:
        """Wait until at most `keep` uploads are in flight; an upload's failure is raised here."""
        while len(self._in_flight) > keep:
            self._in_flight[0][1].result()
            # Only now: a Ctrl-C in that wait leaves the upload listed, for `discard` to wait for before it
            # deletes what was uploaded (else the upload lands after the deletes and outlives the run).
            self._in_flight.pop(0)

    def _close_staging(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.staging.discard()
        shutil.rmtree(self._staging_root, ignore_errors=True)


class RemoteOutput(ShardUploads):
    """A dataset being written under a URL prefix. See the module docstring."""

    def __init__(self, store: Store, *, overwrite: bool = False, staging_dir: str | os.PathLike | None = None, max_uploads_in_flight: int = MAX_UPLOADS_IN_FLIGHT):
        self.store = store
        self.url = store.url
        self._previous = self._check_prefix(overwrite)
        self.had_previous = bool(self._previous)
        self.previous_intact = True  # False once the old index.json is deleted (before the first upload)
        self._sending_index = False  # index.json may be in the store though `put` did not return (commit)
        super().__init__(store, staging_dir=staging_dir, max_uploads_in_flight=max_uploads_in_flight)

    def _check_prefix(self, overwrite: bool) -> list[str]:
        found = self.store.list()
        if not found:
            return []
        if not overwrite:
            leftovers = INDEX_FILE not in found and all(written_by_fastload(name) for name in found)
            raise ConfigError(
                f"output {self.url} is not empty ({len(found):,} object(s), e.g. {found[0]!r})"
                + ("; they are shards without an index.json, left by a conversion that was killed" if leftovers else "")
                + "; pass --overwrite (overwrite=True) to replace them, or choose another prefix"
            )
        foreign = [name for name in found if not written_by_fastload(name)]
        if foreign:
            raise ConfigError(
                f"output {self.url} holds objects fastload did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); refusing to overwrite it. Choose an empty or new prefix."
            )
        return found

    @property
    def index_to_take_down(self) -> bool:
        """Whether a writer of a part of this dataset must delete the old `index.json` before its first upload."""
        return self.previous_intact and INDEX_FILE in self._previous

    def shard_finished(self, staged: str, final: str) -> None:
        self._take_down_previous()
        super().shard_finished(staged, final)

    def adopt(self, final: str, num_bytes: int) -> None:
        """Shard `final`, uploaded by another writer (a partition), is part of this dataset: `discard` deletes it.

        That writer deleted the old `index.json` before it uploaded (`index_to_take_down`)."""
        self._uploaded[final] = num_bytes
        self.previous_intact = False

    def remove_temporaries(self, keep: set[str]) -> None:
        """Nothing to remove: partitions upload under final names, and the staging folder goes at `commit`."""

    def adopt_leftovers(self, is_ours) -> None:
        """Adopt every object whose name `is_ours(name)` says a writer of this run made (one killed before it reported)."""
        self._notice_taken_down()
        for name in self.store.list():
            if is_ours(name) and name not in self._uploaded and name not in self._previous:  # old shards: `_leftovers`
                self._uploaded[name] = 0

    def commit(self, renames: list[tuple[str, str]], index_bytes: bytes) -> None:
        """Finish the uploads, delete old shards the new index does not name, upload `index.json` last."""
        for staged, final in renames:
            if final not in self._uploaded:  # a writer that never called shard_finished for it
                self.shard_finished(staged, final)
        self._take_down_previous()
        self._wait_for_uploads(keep=0)
        for name in self._previous:
            if name != INDEX_FILE and name not in self._uploaded:
                self.store.delete(name)
        self._previous = []
        self._sending_index = True
        self.store.put(INDEX_FILE, index_bytes)
        self._sending_index = False
        self._uploaded.clear()  # the dataset's now, not ours to remove
        self._close_staging()

    def discard(self) -> None:
        self._notice_taken_down()
        if self._sending_index:  # it may have landed (Ctrl-C or a timeout after the server stored it): it goes
            self._delete([INDEX_FILE])  # first, or it would name the shards deleted next
        super().discard()

    def _notice_taken_down(self) -> None:
        """A partition's writer may have deleted the old index.json and then failed before reporting."""
        if self.index_to_take_down and not self.store.exists(INDEX_FILE):
            self.previous_intact = False

    def _leftovers(self) -> list[str]:
        leftovers = list(self._uploaded)
        if not self.previous_intact:  # the old index is gone: its shards are no dataset's any more
            leftovers += [name for name in self._previous if name not in self._uploaded]
        return leftovers

    def _take_down_previous(self) -> None:
        """Delete the old index.json before the first new shard lands (see the module docstring)."""
        if self.previous_intact and INDEX_FILE in self._previous:
            self.store.delete(INDEX_FILE)
        self.previous_intact = False
