"""What may stand in a dataset folder where index.json or a shard is expected: a regular file, inside it.

Opening a FIFO blocks forever, a device can be endless, a directory is not
data, and a symbolic link may lead outside the folder the user trusted. So
every file a dataset is read from is looked at with `stat` first, without
opening it, and anything else is named for what it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["file_problem"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_problem(path: Path, folder: Path) -> str | None:
    """None when `path` is a regular file inside `folder` (after following links); else what it is instead."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    for test, kind in _KINDS:
        if test(mode):
            return f"{kind}, not a regular file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(os.path.realpath(folder)):
        return f"a symbolic link to {str(target)!r}, outside the dataset folder"
    return None
