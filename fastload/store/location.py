"""Where a dataset lives: a local folder or an object-store URL, told apart in one place.

    data/web, /mnt/ds, file:///mnt/ds     local folder (memory-mapped)
    s3://bucket/prefix                    Amazon S3 and S3-compatible servers
    gs://bucket/prefix                    Google Cloud Storage
    az://container/prefix (abfs://, azure://)   Azure Blob Storage
    http(s)://host/path                   any HTTP server that answers Range requests

A URL is kept as text (never a `Path`, which would fold `s3://a` into
`s3:/a`); everything that takes a dataset path calls `is_remote` before
treating it as a file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fastload.errors import ConfigError

__all__ = ["REMOTE_SCHEMES", "is_remote", "local_path"]

REMOTE_SCHEMES = ("s3", "gs", "az", "abfs", "abfss", "azure", "http", "https")


def _scheme(location) -> str | None:
    if not isinstance(location, str) or "://" not in location:
        return None
    return location.split("://", 1)[0].lower()


def is_remote(location) -> bool:
    """True for an object-store or HTTP URL; False for a local path (or a `file://` URL)."""
    scheme = _scheme(location)
    if scheme is None or scheme == "file":
        return False
    if scheme not in REMOTE_SCHEMES:
        raise ConfigError(
            f"{location!r}: unknown storage scheme {scheme + '://'!r}; fastload reads local folders, file://, "
            "s3://, gs://, az://, http:// and https://"
        )
    return True


def local_path(location: str | os.PathLike) -> Path:
    """The local folder of a path or `file://` URL (a remote URL is a ConfigError: call `is_remote` first)."""
    if is_remote(location):
        raise ConfigError(f"{location!r} is a remote URL, not a local folder")
    if _scheme(location) == "file":
        parts = urlsplit(str(location))
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{location!r}: a file:// URL names a local path (file:///abs/path), not host {parts.netloc!r}")
        return Path(unquote(parts.path))
    return Path(location)
