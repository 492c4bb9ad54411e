"""`ObjectStore`: S3, GCS, Azure and HTTP through obstore (the `fastload[remote]` extra).

Why obstore: it is a thin binding of Rust's `object_store`, with one
connection pool serving many concurrent ranged GETs from threads without the
GIL, zero-copy response buffers, and each cloud's standard credential chain
(environment variables such as AWS_ACCESS_KEY_ID / AWS_ENDPOINT_URL /
AWS_REGION, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_NAME, and
instance metadata). `storage_options` passes anything else through as the
store's config keys (e.g. {"endpoint": ..., "region": ...}).

The client holds a tokio runtime and sockets, which must not cross `fork()`:
it is created on first use in each process (checked by pid), and pickling
carries only the URL and options. That is not enough: once a process has
made a request through obstore (0.12), a child it forks hangs on its first
HTTP request, even through a new client (the runtime's threads did not
survive the fork; a request in memory still works, so the pid check passes).
So `worker_start_method()` says 'spawn' then (fastload's worker pool and
`fastload bench`'s torch loader follow it), and a forked child that tries a
request anyway gets a `StoreError` saying so at once, not a hang.

obstore's own retries are turned off: `retry.with_retries` retries every
request the same way for every backend, with one deadline, and failures
that waiting cannot fix (missing object, denied, bad credentials) are raised
at once as `StoreError` naming the URL and what to check.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import timedelta
from pathlib import Path

from fastload.errors import ConfigError, StoreError
from fastload.store.base import NotFound, Store
from fastload.store.retry import RetryPolicy, with_retries

__all__ = ["ObjectStore", "import_obstore", "used_in_this_process", "worker_start_method"]

_INSTALL_HINT = "Reading object storage needs the remote extra: pip install 'fastload[remote]'"


_connected_in: set[int] = set()  # pids of the processes that made an obstore client


def used_in_this_process() -> bool:
    """Whether this process has made an obstore client: a child it forks could not make requests (see above)."""
    return os.getpid() in _connected_in


def worker_start_method() -> str | None:
    """'spawn' where worker processes would be forked from a process that made obstore requests; else None
    (the default start method). Spawned workers see this process's environment (credentials) as it is now."""
    if used_in_this_process() and multiprocessing.get_start_method() == "fork":
        return "spawn"
    return None


def _refuse_after_fork(url: str) -> None:
    if _connected_in and os.getpid() not in _connected_in:  # inherited: a parent made requests, then forked us
        raise StoreError(
            f"cannot read {url}: this process was forked from one that had made object-store requests, and "
            "obstore's requests hang in such a child. Start worker processes with the 'spawn' start method "
            "(fastload.DataLoader does so by itself; torch.utils.data.DataLoader takes multiprocessing_context='spawn')."
        )


def import_obstore():
    try:
        import obstore
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return obstore


def _credentials_hint(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    return {
        "s3": "Check the bucket and prefix, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_REGION, and AWS_ENDPOINT_URL for S3-compatible servers (or storage_options=).",
        "gs": "Check the bucket and prefix and GOOGLE_APPLICATION_CREDENTIALS (or storage_options=).",
    }.get(scheme, "Check the URL and the credentials in the environment (or storage_options=).")


class ObjectStore(Store):
    """Objects under a URL prefix (`s3://bucket/prefix`, `gs://…`, `az://…`, `https://…`)."""

    def __init__(self, url: str, storage_options: dict | None = None, retry: RetryPolicy | None = None):
        import_obstore()  # fail at construction, in the user's process, if the extra is missing
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.retry = retry or RetryPolicy()
        self._client = None
        self._pid = None

    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "retry": self.retry}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["url"], state["storage_options"], state["retry"])

    # -- the client, one per process ------------------------------------------------

    @property
    def client(self):
        if self._client is None or self._pid != os.getpid():
            _refuse_after_fork(self.url)
            self._client, self._pid = self._connect(), os.getpid()
        return self._client

    def _connect(self):
        obstore = import_obstore()
        from obstore.store import from_url

        options = dict(self.storage_options)
        client_options = {
            "timeout": timedelta(seconds=self.retry.attempt_timeout_s),
            "connect_timeout": timedelta(seconds=min(5.0, self.retry.attempt_timeout_s)),
            **options.pop("client_options", {}),
        }
        scheme = self.url.split("://", 1)[0].lower()
        endpoint = options.get("endpoint") or (os.environ.get("AWS_ENDPOINT_URL") if scheme == "s3" else None)
        if scheme in ("http",) or (endpoint or "").startswith("http://"):
            client_options.setdefault("allow_http", True)  # a local S3-compatible server; TLS is the default elsewhere
        if scheme == "s3":
            if endpoint:
                options.setdefault("endpoint", endpoint)
            if os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID") and "credential_provider" not in options:
                options["credential_provider"] = _profile_credentials()
        url = self.url + "/" if scheme in ("http", "https") else self.url
        _connected_in.add(os.getpid())
        try:
            return from_url(url, client_options=client_options, retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=1)}, **options)
        except obstore.exceptions.BaseError as exc:
            raise ConfigError(f"cannot open {self.url}: {exc}. {_credentials_hint(self.url)}") from None
        except TypeError as exc:
            raise ConfigError(f"storage_options for {self.url}: {exc}") from None

    def _request(self, what: str, name: str, call):
        """Run `call(client)` with retries; map obstore's permanent failures to StoreError."""
        obstore = import_obstore()
        errors = obstore.exceptions
        url = self.url_of(name)

        def attempt():
            try:
                return call(self.client)
            except (errors.NotFoundError, FileNotFoundError):  # obstore raises the builtin for a 404
                raise NotFound(f"{url} does not exist. {_credentials_hint(self.url)}") from None
            except (errors.PermissionDeniedError, errors.UnauthenticatedError, PermissionError) as exc:
                raise StoreError(f"access to {url} was refused ({type(exc).__name__}). {_credentials_hint(self.url)}") from None
            except (errors.InvalidPathError, errors.UnknownConfigurationKeyError, errors.NotSupportedError) as exc:
                raise StoreError(f"could not {what} {url}: {str(exc).splitlines()[0]}") from None

        return with_retries(attempt, what=what, url=url, policy=self.retry)

    # -- the Store interface ---------------------------------------------------------

    def get_range(self, name: str, start: int, length: int) -> memoryview:
        if length == 0:
            return memoryview(b"")
        obstore = import_obstore()
        data = self._request(
            f"read bytes {start:,}-{start + length:,} of", name,
            lambda client: obstore.get_range(client, name, start=start, length=length),
        )
        view = memoryview(data)
        if len(view) != length:
            raise StoreError(
                f"{self.url_of(name)} returned {len(view):,} bytes for a range of {length:,} (bytes {start:,}-{start + length:,}): "
                "the object is shorter than index.json records. Run 'fastload verify' on the dataset."
            )
        return view

    def get(self, name: str) -> memoryview:
        obstore = import_obstore()
        return memoryview(self._request("read", name, lambda client: obstore.get(client, name).bytes()))

    def size(self, name: str) -> int:
        obstore = import_obstore()
        return int(self._request("look up", name, lambda client: obstore.head(client, name))["size"])

    def list(self) -> list[str]:
        obstore = import_obstore()

        def names(client):
            return [meta["path"] for chunk in obstore.list(client, None) for meta in chunk]

        return sorted(p.rsplit("/", 1)[-1] for p in self._request("list", "", names) if "/" not in p.strip("/"))

    def put(self, name: str, data: bytes | Path) -> None:
        obstore = import_obstore()
        self._request("upload", name, lambda client: obstore.put(client, name, data))

    def delete(self, name: str) -> None:
        obstore = import_obstore()
        try:
            self._request("delete", name, lambda client: obstore.delete(client, name))
        except NotFound:
            pass


def _profile_credentials():
    """AWS_PROFILE (a profile of ~/.aws/config) through boto3's credential chain, when boto3 is installed."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise ConfigError("AWS_PROFILE is set: reading a profile needs boto3 (pip install boto3), or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    return Boto3CredentialProvider()
