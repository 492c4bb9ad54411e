"""Where one partition of a conversion writes its shards: a folder or prefix that the conversion's driver holds.

`fastload convert` cuts its input into partitions, each converted by a
`DatasetWriter` of its own, in the driver's process or in a Ray task on
another machine. The driver holds the dataset (`OutputFolder`: the lock;
`RemoteOutput`: the prefix check) and commits it; a partition only writes its
shards, under names that come from the partition, and reports them:

- into a local (or shared) folder, `PartitionFolder` writes `.tmp-<shard>`
  files next to the driver's; the driver renames them at commit, as it does
  its own. A retried task writes the same names again, replacing what a
  killed attempt left.
- into object storage, `remote_output.ShardUploads` stages each shard on the
  task's local disk and uploads it under its final name; the driver deletes
  them if the conversion fails.

No lock is taken here: the driver's lock covers the folder, and names that
come from the partition never collide between partitions.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastload.format.output import CreatedFiles
from fastload.format.remote_output import ShardUploads
from fastload.store import RetryPolicy, is_remote, open_store

__all__ = ["PartitionFolder", "open_partition_output"]


def open_partition_output(
    location: str | os.PathLike,
    *,
    storage_options: dict | None = None,
    retry: RetryPolicy | None = None,
    staging_dir: str | os.PathLike | None = None,
    take_down_index: bool = False,
) -> "PartitionFolder | ShardUploads":
    """The output one partition's writer writes into; the driver already holds `location`.

    `take_down_index` (a URL whose old dataset is being overwritten): delete
    its `index.json` before the first upload, as `RemoteOutput` does.
    """
    if is_remote(location):
        return ShardUploads(open_store(location, storage_options, retry), staging_dir=staging_dir, take_down_index=take_down_index)
    return PartitionFolder(location)


class PartitionFolder(CreatedFiles):
    """A partition's files in a dataset folder the driver holds. See the module docstring."""

    had_previous = False  # for the writer's messages: a partition replaces nothing itself
    previous_intact = True
    held = True

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._created: dict[str, None] = {}

    def shard_finished(self, staged: str, final: str) -> None:
        """Nothing to do: the driver renames the shard at commit."""

    def local_shard(self, staged: str, final: str) -> Path:
        return self.path / staged

    def finish(self) -> dict[str, int]:
        """The files written, {name: bytes}; from now on the driver's to commit or remove."""
        written = {name: (self.path / name).stat().st_size for name in self._created}
        self._created.clear()
        return written

    def discard(self) -> None:
        """Remove every file this partition created; safe twice."""
        for name in reversed(list(self._created)):
            (self.path / name).unlink(missing_ok=True)
        self._created.clear()

