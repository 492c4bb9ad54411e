"""Fixtures for the object-storage tests: a moto S3 server per session, a fresh bucket and a fault proxy per test.

`moto_endpoint` bundles them for tests that want one object: the server's URL, a fresh bucket, and the
environment pointing S3 clients at it.

Each fixture skips (naming the package to install) when moto or boto3 is missing; the README's test
command installs both, so CI runs these tests. The machinery itself lives in `tests/remote/s3.py`,
which `bench/remote.py` imports too.

`gcs_endpoint` is gs:// on 127.0.0.1: a fresh bucket on `tests/remote/folder_s3.py`'s server, which
obstore's GCS client talks to as it talks to Google's XML API (the same wire format as S3's: object
paths, Range, ListObjects V2 XML, multipart uploads), found through GOOGLE_BASE_URL or `base_url` and
given a bearer token the server does not check. Why not `gcp-storage-emulator` (a Python GCS emulator):
it serves the JSON API, and its XML API answers a PUT without an ETag and a GET without Last-Modified
(obstore refuses both), and has no HEAD, DELETE, listing or multipart upload (measured with obstore
0.12). Not covered here: Google's authentication (OAuth tokens, service accounts) and its error bodies.

`azure_endpoint` is az:// on 127.0.0.1: a fresh container on the same folder server, answering obstore's
Azure client in Azure Blob's REST dialect (`tests/remote/folder_azure.py`: ranged Get Blob, properties,
List Blobs, Put Blob / Block / Block List, Delete Blob and blob batches, Create Container) at a
path-style account URL, as Azurite does. A user reaches it as any local Azure emulator: `storage_options`
with `endpoint`, `account_name` and `access_key`, or AZURE_STORAGE_USE_EMULATOR with
AZURITE_BLOB_STORAGE_URL. Why not Azurite itself: it is an npm package, and CI's test command needs no
npm. Not covered here: Azure's authentication (signatures are not checked, Entra ID tokens never asked
for) and hierarchical-namespace (ADLS Gen2, abfs://) accounts.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.remote.fault_proxy import FaultProxy
from tests.remote.folder_azure import ACCOUNT as AZURE_ACCOUNT
from tests.remote.folder_azure import ACCOUNT_KEY as AZURE_ACCOUNT_KEY
from tests.remote.folder_azure import create_container
from tests.remote.folder_s3 import FolderS3Server
from tests.remote.s3 import OVERRIDING_ENV_VARS, S3Server


def require_s3_packages() -> None:
    pytest.importorskip("moto.server", reason="the S3 tests need moto's server: pip install 'moto[server]'")
    pytest.importorskip("boto3", reason="the S3 tests need boto3: pip install boto3")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 on 127.0.0.1, shared by the session; tests isolate themselves with `s3_bucket`."""
    require_s3_packages()
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server):
    """The name of a new, empty bucket on `s3_server`, emptied and deleted after the test."""
    name = f"fastload-test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    yield name
    client = s3_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=entry["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def fault_proxy(s3_server):
    """A `FaultProxy` in front of `s3_server`, with no faults until the test sets some; stopped after."""
    with FaultProxy(s3_server.endpoint) as proxy:
        yield proxy


def _patch_env(monkeypatch, env: dict[str, str]) -> dict[str, str]:
    for name in OVERRIDING_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """os.environ pointing S3 clients (boto3, obstore) straight at `s3_server`; yields the variables set."""
    return _patch_env(monkeypatch, s3_server.env())


@pytest.fixture
def s3_proxy_env(monkeypatch, s3_server, fault_proxy):
    """Like `s3_env`, but AWS_ENDPOINT_URL is `fault_proxy`'s endpoint."""
    return _patch_env(monkeypatch, s3_server.env(fault_proxy.endpoint))


@dataclass(frozen=True)
class MotoEndpoint:
    url: str
    bucket: str
    server: S3Server

    def client(self):
        return self.server.client()

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


@pytest.fixture
def moto_endpoint(s3_server, s3_bucket, s3_env, monkeypatch) -> MotoEndpoint:
    from fastload.store import object_store

    # Each test starts as a process that has not started obstore, whatever an earlier test did
    # (store/object_store.py: a process that did spawns its workers).
    monkeypatch.setattr(object_store, "_runtime_pid", None)
    return MotoEndpoint(s3_server.endpoint, s3_bucket, s3_server)


# Any token: the server does not check it, and with one obstore asks no metadata server for credentials
# (`skip_signature` would not do: obstore 0.12 skips signing reads only, and fetches a token for a PUT).
GCS_BEARER_TOKEN = "local-test-token"


@dataclass(frozen=True)
class GCSEndpoint:
    """A bucket on a local server that obstore's gs:// client reaches with `storage_options` or `env`."""

    base_url: str
    bucket: str
    server: FolderS3Server  # its folder: object `k/e/y` of the bucket is the file `server.root/bucket/k/e/y`

    scheme = "gs"
    hint = "GOOGLE_BASE_URL"  # what a NotFound error from gs:// tells the user to check

    @property
    def storage_options(self) -> dict[str, str]:
        return {"base_url": self.base_url, "bearer_token": GCS_BEARER_TOKEN}

    @property
    def env(self) -> dict[str, str]:
        return {"GOOGLE_BASE_URL": self.base_url, "GOOGLE_BEARER_TOKEN": GCS_BEARER_TOKEN}

    def url(self, key: str, *, bucket: str | None = None) -> str:
        return f"gs://{bucket or self.bucket}/{key}"

    def object_file(self, key: str) -> Path:
        return self.server.root / self.bucket / key


@pytest.fixture(scope="session")
def cloud_server():
    """The folder server on 127.0.0.1 standing in for GCS's XML API and Azure Blob's REST API (see the
    module docstring), shared by the session; each test gets a bucket or container of its own."""
    pytest.importorskip("obstore", reason="gs:// and az:// datasets need the remote extra: pip install 'fastload[remote]'")
    with FolderS3Server() as server:
        yield server


def _fresh_client_environment(monkeypatch, prefixes: tuple[str, ...]) -> None:
    """No variable starting with `prefixes` (which could point obstore elsewhere or make it look for real
    credentials), and obstore as if this process had not started it (as in `moto_endpoint`)."""
    from fastload.store import object_store

    for name in [name for name in os.environ if name.startswith(prefixes)]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(object_store, "_runtime_pid", None)


@pytest.fixture
def gcs_endpoint(cloud_server, monkeypatch) -> GCSEndpoint:
    """A new, empty bucket on `cloud_server` (removed after the test), and no GOOGLE_* variable."""
    _fresh_client_environment(monkeypatch, ("GOOGLE_",))
    bucket = f"fastload-test-{uuid.uuid4().hex[:16]}"
    (cloud_server.root / bucket).mkdir()  # a bucket is a folder of the server's (creating one is not a GCS XML request)
    yield GCSEndpoint(cloud_server.endpoint, bucket, cloud_server)
    shutil.rmtree(cloud_server.root / bucket, ignore_errors=True)


@dataclass(frozen=True)
class AzureEndpoint:
    """A container on a local server that obstore's az:// client reaches with `storage_options` or `env`."""

    server_url: str  # http://127.0.0.1:PORT; the account's URL is `account_url`
    container: str
    server: FolderS3Server  # its folder: blob `k/e/y` of the container is the file `server.root/container/k/e/y`

    scheme = "az"
    hint = "AZURE_STORAGE_ENDPOINT"  # what a NotFound error from az:// tells the user to check

    @property
    def account_url(self) -> str:
        return f"{self.server_url}/{AZURE_ACCOUNT}"

    @property
    def storage_options(self) -> dict[str, str]:
        return {"endpoint": self.account_url, "account_name": AZURE_ACCOUNT, "access_key": AZURE_ACCOUNT_KEY}

    @property
    def env(self) -> dict[str, str]:
        """The emulator's settings (obstore then assumes Azurite's account and key, and allows plain http)."""
        return {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.server_url}

    def url(self, key: str, *, bucket: str | None = None) -> str:
        return f"az://{bucket or self.container}/{key}"

    def object_file(self, name: str) -> Path:
        return self.server.root / self.container / name


@pytest.fixture
def azure_endpoint(cloud_server, monkeypatch) -> AzureEndpoint:
    """A new, empty container on `cloud_server` (removed after the test), and no AZURE_*/AZURITE_* variable."""
    _fresh_client_environment(monkeypatch, ("AZURE_", "AZURITE_"))
    container = f"fastload-test-{uuid.uuid4().hex[:16]}"
    create_container(cloud_server.endpoint, container)
    yield AzureEndpoint(cloud_server.endpoint, container, cloud_server)
    shutil.rmtree(cloud_server.root / container, ignore_errors=True)


@pytest.fixture(params=["gs", "az"])
def cloud_endpoint(request):
    """`gcs_endpoint` and `azure_endpoint` in turn: a fresh bucket (container) that obstore's own client for
    that cloud reaches, for the tests every cloud must pass alike."""
    return request.getfixturevalue({"gs": "gcs_endpoint", "az": "azure_endpoint"}[request.param])
