"""Input files in object storage: what `fastload convert s3://bucket/corpus/ -o …` reads.

    s3://bucket/corpus/part-000.jsonl.gz      one object
    s3://bucket/corpus                        every object under the prefix, nested ones too (as a folder)
    's3://bucket/corpus/**/*.jsonl'           a pattern on the keys: * and ? within one level, ** across levels

Each object found becomes an `InputFile` as a local file does (`sources.find_inputs`
builds them): its `store` is rooted at the folder (the pattern's folder, the
object's parent), `name` is its key there, `path` its URL and `version` its
ETag. Partitions, chunks, resume keys and error messages are then the same code
for both, and the Ray engine's tasks read their byte ranges straight from the
store (`store.object_file`), so the corpus never passes through the driver.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fastload.errors import ConvertError
from fastload.store import NotFound, RetryPolicy, Store, open_store
from fastload.store.base import ObjectInfo

__all__ = ["RemoteMatch", "find_objects"]

_WILDCARDS = "*?["


class RemoteMatch(NamedTuple):
    """The objects one input URL names, under the store they were found in."""

    store: Store
    objects: list[ObjectInfo]  # sorted by key
    kind: str  # "file" (named itself), "folder" (a prefix) or "pattern"


def find_objects(url: str, *, storage_options: dict | None, retry: RetryPolicy | None, exclude: str | None = None) -> RemoteMatch:
    """The objects `url` names: itself, the objects under it (a prefix), or the keys its pattern matches.

    Objects under `exclude` (the output's URL) are left out, as a local output
    folder inside an input folder is.
    """
    scheme, rest = url.split("://", 1)
    bucket, _, key = rest.partition("/")
    parts = key.split("/")
    wild = next((i for i, part in enumerate(parts) if any(ch in part for ch in _WILDCARDS)), None)
    if wild is not None:
        folder = _join(scheme, bucket, "/".join(parts[:wild]))
        store = open_store(folder, storage_options, retry)
        pattern = _key_pattern("/".join(parts[wild:]))
        objects = [info for info in store.walk() if pattern.fullmatch(info.name)]
        return RemoteMatch(store, _outside(objects, store, exclude), "pattern")
    key = key.strip("/")
    if key and not url.endswith("/"):
        parent, _, name = key.rpartition("/")
        store = open_store(_join(scheme, bucket, parent), storage_options, retry)
        try:
            info = store.describe(name)
        except NotFound:
            pass  # not an object: a prefix, below
        else:
            if exclude is not None and _under(store.url_of(name), exclude):
                raise ConvertError(f"input {url!r} lies under the output {exclude!r}; choose another output")
            return RemoteMatch(store, [info], "file")
    store = open_store(_join(scheme, bucket, key), storage_options, retry)
    objects = [info for info in store.walk() if not info.name.rpartition("/")[2].startswith(".")]
    return RemoteMatch(store, _outside(objects, store, exclude), "folder")


def _join(scheme: str, bucket: str, key: str) -> str:
    return f"{scheme}://{bucket}" + (f"/{key}" if key else "")


def _under(url: str, folder: str) -> bool:
    return url == folder or url.startswith(folder.rstrip("/") + "/")


def _outside(objects: list[ObjectInfo], store: Store, exclude: str | None) -> list[ObjectInfo]:
    kept = objects if exclude is None else [info for info in objects if not _under(store.url_of(info.name), exclude)]
    return sorted(kept)


def _key_pattern(pattern: str) -> re.Pattern:
    """A glob over keys as `glob.glob(recursive=True)` reads one over paths: `*` and `?` stay within a level
    (between slashes), `**` spans levels (`a/**/b` matches `a/b` too), `[...]` is a class (`[!...]` negated),
    and a wildcard does not match a name's leading dot (hidden files stay out unless named)."""
    out = []
    parts = pattern.split("/")
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if part == "**":
            out.append(r"(?:(?!\.)[^/]*(?:/|\Z))*" if last else r"(?:(?!\.)[^/]*/)*")
            continue
        out.append(("" if part.startswith(".") else r"(?!\.)") + _level_pattern(part) + ("" if last else "/"))
    return re.compile("".join(out))


def _level_pattern(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        if part[i] == "*":
            out.append("[^/]*")
            i += 1
        elif part[i] == "?":
            out.append("[^/]")
            i += 1
        elif part[i] == "[" and (end := part.find("]", i + 2)) > 0:
            body = part[i + 1 : end]
            body = body.replace("\\", "\\\\").replace("[", "\\[")  # (literal inside a class, as glob reads them)
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(part[i]))
            i += 1
    return "".join(out)
