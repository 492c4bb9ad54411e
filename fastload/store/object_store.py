"""`ObjectStore`: S3, GCS, Azure and HTTP through obstore (the `fastload[remote]` extra).

Why obstore: it is a thin binding of Rust's `object_store`, with one
connection pool serving many concurrent ranged GETs from threads without the
GIL, zero-copy response buffers, and each cloud's standard credential chain
(environment variables such as AWS_ACCESS_KEY_ID / AWS_ENDPOINT_URL /
AWS_REGION, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_NAME, and
instance metadata). `storage_options` passes anything else through as the
store's config keys (e.g. {"endpoint": ..., "region": ...}).

obstore's runtime (tokio) is process-wide and does not survive `fork()`: a
child forked from a process that used it hangs on its first request, even
with a client of its own (measured). The main process of a training job
forks its DataLoader workers, so it must not start that runtime; workers
never fork. Hence two clients behind one `ObjectStore`:
- in DataLoader workers (`mark_leaf_process`; only when the parent never
  loaded obstore), and for gs:// and az://, obstore: the fast one, where
  the blocks are read;
- elsewhere, for s3://, boto3 (pure Python: a new client per process is
  fork-safe), and for http(s)://, the standard library.
Clients are created on first use in each process (checked by pid), and
pickling carries only the URL and options. Where the main process did
start obstore, `worker_start_method()` says 'spawn' (fastload's worker pool
and `fastload bench` follow it), and a forked child that tries a request
anyway gets a `StoreError` saying what to do, never a hang.

obstore's own retries are turned off: `retry.with_retries` retries every
request the same way for every backend, with one deadline, and failures
that waiting cannot fix (missing object, denied, bad credentials) are raised
at once as `StoreError` naming the URL and what to check.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path

from fastload.errors import ConfigError, StoreError
from fastload.store.base import NotFound, ObjectInfo, Store, object_version
from fastload.store.retry import RetryPolicy, with_retries

__all__ = ["ObjectStore", "import_obstore", "runtime_started", "mark_leaf_process", "worker_start_method"]

_runtime_pid: int | None = None  # the process that started obstore's runtime (inherited by forked children)
_leaf_pid: int | None = None  # a process that will never fork (a DataLoader worker)


def runtime_started() -> bool:
    """True when this process has used obstore: a plain fork() of it would give children that hang."""
    return _runtime_pid == os.getpid()


def worker_start_method() -> str | None:
    """'spawn' where worker processes would be plain forks of a process that started obstore (it read
    gs:// or az://, or s3:// without boto3); else None, the default. Spawned workers see this process's
    environment (credentials) as it is now."""
    import multiprocessing

    if runtime_started() and multiprocessing.get_start_method() == "fork":
        return "spawn"
    return None


def mark_leaf_process() -> None:
    """This process never forks (a DataLoader worker): it may use obstore, the fastest client, unless
    its parent had already loaded obstore (then the parent may have started the runtime it inherited)."""
    global _leaf_pid
    if "obstore" not in sys.modules:
        _leaf_pid = os.getpid()

_INSTALL_HINT = "Reading object storage needs the remote extra: pip install 'fastload[remote]'"


def import_obstore():
    try:
        import obstore
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return obstore


# Where each scheme's endpoint can be set: obstore's config keys (any case), then the environment variables
# obstore itself reads. fastload always passes obstore `client_options` (its timeouts), and those replace
# the ones obstore would take from the environment, `allow_http` included; so fastload finds the endpoint
# itself and allows plain http when the endpoint is plain http (a local server or emulator).
_ENDPOINT_KEYS = {
    "s3": ({"endpoint", "aws_endpoint", "aws_endpoint_url"}, ("AWS_ENDPOINT_URL",)),
    "gs": ({"base_url", "google_base_url"}, ("GOOGLE_BASE_URL",)),
    "az": ({"endpoint", "azure_endpoint", "azure_storage_endpoint"}, ("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT")),
}


def _configured_endpoint(scheme: str, storage_options: dict) -> str | None:
    """The endpoint (S3, Azure) or base URL (GCS) that `storage_options` or the environment sets for
    `scheme`, or None (the cloud's own)."""
    keys, env_vars = _ENDPOINT_KEYS.get(scheme, (set(), ()))
    for key, value in storage_options.items():
        if key.lower() in keys and value:
            return str(value)
    return next((os.environ[name] for name in env_vars if os.environ.get(name)), None)


def _credentials_hint(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    return {
        "s3": "Check the bucket and prefix, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_REGION, and AWS_ENDPOINT_URL for S3-compatible servers (or storage_options=).",
        "gs": "Check the bucket and prefix, GOOGLE_APPLICATION_CREDENTIALS, and GOOGLE_BASE_URL for a local emulator (or storage_options=).",
        "az": "Check the account, container and prefix, AZURE_STORAGE_ACCOUNT_NAME/AZURE_STORAGE_ACCOUNT_KEY, and AZURE_STORAGE_ENDPOINT, or AZURE_STORAGE_USE_EMULATOR with AZURITE_BLOB_STORAGE_URL, for a local one (or storage_options=).",
    }.get(scheme, "Check the URL and the credentials in the environment (or storage_options=).")


class ObjectStore(Store):
    """Objects under a URL prefix (`s3://bucket/prefix`, `gs://…`, `az://…`, `https://…`)."""

    def __init__(self, url: str, storage_options: dict | None = None, retry: RetryPolicy | None = None):
        self.url = url.rstrip("/")
        self.scheme = self.url.split("://", 1)[0].lower()
        self.storage_options = dict(storage_options or {})
        self.retry = retry or RetryPolicy()
        if self.scheme not in ("http", "https") and importlib.util.find_spec("obstore") is None:
            raise ConfigError(_INSTALL_HINT)  # at construction, in the user's process (without importing it: see above)
        self._client = None
        self._pid = None

    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "retry": self.retry}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["url"], state["storage_options"], state["retry"])

    @property
    def client(self):
        """This process's client (see the module docstring for which one)."""
        if self._client is None or self._pid != os.getpid():
            self._client, self._pid = self._connect(), os.getpid()
        return self._client

    def _connect(self):
        global _runtime_pid
        if self.scheme in ("http", "https") and _leaf_pid != os.getpid():
            from fastload.store.fork_safe import HTTPClient

            return HTTPClient(self.url, self.retry)
        if self.scheme == "s3" and _leaf_pid != os.getpid():
            from fastload.store.fork_safe import boto3_client

            client = boto3_client(self.url, self.storage_options, self.retry)
            if client is not None:
                return client
        if _runtime_pid not in (None, os.getpid()):
            raise StoreError(
                f"cannot read {self.url} in this process: it was forked from process {_runtime_pid}, which had "
                "already read object storage through obstore, whose runtime does not survive fork(). Start workers "
                "with multiprocessing_context='spawn' or 'forkserver', or install boto3 (s3:// then avoids obstore "
                "outside the workers)."
            )
        client = _ObstoreClient(self.url, self.storage_options, self.retry)
        _runtime_pid = os.getpid()
        return client

    def _request(self, what: str, name: str, call):
        """`call(client)` under the retry policy; permanent failures are StoreErrors naming the URL."""
        return with_retries(lambda: call(self.client), what=what, url=self.url_of(name), policy=self.retry)

    # -- the Store interface ---------------------------------------------------------

    def get_range(self, name: str, start: int, length: int) -> memoryview:
        if length == 0:
            return memoryview(b"")
        view = memoryview(self._request(f"read bytes {start:,}-{start + length:,} of", name, lambda client: client.get_range(name, start, length)))
        if len(view) != length:
            raise StoreError(
                f"{self.url_of(name)} returned {len(view):,} bytes for a range of {length:,} (bytes {start:,}-{start + length:,}): "
                "the object is shorter than index.json records. Run 'fastload verify' on the dataset."
            )
        return view

    def get(self, name: str) -> memoryview:
        return memoryview(self._request("read", name, lambda client: client.get(name)))

    def size(self, name: str) -> int:
        return int(self._request("look up", name, lambda client: client.size(name)))

    def list(self) -> list[str]:
        return sorted(self._request("list", "", lambda client: client.list()))

    def describe(self, name: str) -> ObjectInfo:
        return self._request("look up", name, lambda client: client.describe(name))

    def walk(self) -> list[ObjectInfo]:
        return sorted(self._request("list", "", lambda client: client.walk()))

    def put(self, name: str, data: bytes | Path) -> None:
        self._request("upload", name, lambda client: client.put(name, data))

    def delete(self, name: str) -> None:
        try:
            self._request("delete", name, lambda client: client.delete(name))
        except NotFound:
            pass


class _ObstoreClient:
    """The raw requests through obstore: one attempt each; permanent failures raised as StoreError."""

    def __init__(self, url: str, storage_options: dict, retry: RetryPolicy):
        obstore = import_obstore()
        from obstore.store import from_url

        self.url = url
        options = dict(storage_options)
        client_options = {
            "timeout": timedelta(seconds=retry.attempt_timeout_s),
            "connect_timeout": timedelta(seconds=min(5.0, retry.attempt_timeout_s)),
            **options.pop("client_options", {}),
        }
        scheme = url.split("://", 1)[0].lower()
        endpoint = _configured_endpoint(scheme, options)
        if scheme == "http" or (endpoint or "").startswith("http://"):
            client_options.setdefault("allow_http", True)  # a local server or emulator; TLS is the default elsewhere
        if scheme == "s3":
            if endpoint and not _ENDPOINT_KEYS["s3"][0] & {key.lower() for key in options}:
                options["endpoint"] = endpoint
            if os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID") and "credential_provider" not in options:
                options["credential_provider"] = _profile_credentials()
        try:
            self.store = from_url(url + "/" if scheme in ("http", "https") else url, client_options=client_options, retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=1)}, **options)
        except obstore.exceptions.BaseError as exc:
            raise ConfigError(f"cannot open {url}: {exc}. {_credentials_hint(url)}") from None
        except TypeError as exc:
            raise ConfigError(f"storage_options for {url}: {exc}") from None
        self.obstore = obstore

    def _call(self, name: str, fn, *args, **kwargs):
        errors = self.obstore.exceptions
        where = self.url + "/" + name
        try:
            return fn(self.store, *args, **kwargs)
        except (errors.NotFoundError, FileNotFoundError):  # obstore raises the builtin for a 404
            raise NotFound(f"{where} does not exist. {_credentials_hint(self.url)}") from None
        except (errors.PermissionDeniedError, errors.UnauthenticatedError, PermissionError) as exc:
            raise StoreError(f"access to {where} was refused ({type(exc).__name__}). {_credentials_hint(self.url)}") from None
        except (errors.InvalidPathError, errors.UnknownConfigurationKeyError, errors.NotSupportedError) as exc:
            raise StoreError(f"{where}: {str(exc).splitlines()[0]}") from None

    def get_range(self, name: str, start: int, length: int):
        return self._call(name, self.obstore.get_range, name, start=start, length=length)

    def get(self, name: str):
        return self._call(name, lambda store: self.obstore.get(store, name).bytes())

    def size(self, name: str) -> int:
        return self._call(name, self.obstore.head, name)["size"]

    def list(self) -> list[str]:
        paths = self._call("", lambda store: [meta["path"] for chunk in self.obstore.list(store, None) for meta in chunk])
        return [p for p in paths if "/" not in p.strip("/")]

    def describe(self, name: str) -> ObjectInfo:
        return _object_info(self._call(name, self.obstore.head, name), name)

    def walk(self) -> list[ObjectInfo]:
        return self._call("", lambda store: [_object_info(meta) for chunk in self.obstore.list(store, None) for meta in chunk])

    def put(self, name: str, data) -> None:
        self._call(name, self.obstore.put, name, data)

    def delete(self, name: str) -> None:
        self._call(name, self.obstore.delete, name)


def _profile_credentials():
    """AWS_PROFILE (a profile of ~/.aws/config) through boto3's credential chain, when boto3 is installed."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise ConfigError("AWS_PROFILE is set: reading a profile needs boto3 (pip install boto3), or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    return Boto3CredentialProvider()


def _object_info(meta: dict, name: str | None = None) -> ObjectInfo:
    """obstore's ObjectMeta as an ObjectInfo: the ETag as version, or the modification time where a store gives none."""
    return ObjectInfo(meta["path"] if name is None else name, int(meta["size"]), object_version(meta.get("e_tag") or meta.get("version"), meta.get("last_modified")))
