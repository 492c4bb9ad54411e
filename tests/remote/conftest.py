"""Fixtures for the object-storage tests: a moto S3 server per session, a fresh bucket and a fault proxy per test.

`moto_endpoint` bundles them for tests that want one object: the server's URL, a fresh bucket, and the
environment pointing S3 clients at it.

Each fixture skips (naming the package to install) when moto or boto3 is missing; the README's test
command installs both, so CI runs these tests. The machinery itself lives in `tests/remote/s3.py`,
which `bench/remote.py` imports too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.remote.fault_proxy import FaultProxy
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
