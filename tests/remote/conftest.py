"""A moto S3 server on 127.0.0.1 for the object-storage tests (skipped when moto's server is not installed).

`moto_endpoint`: the server's URL, with the environment (credentials, region,
AWS_ENDPOINT_URL) pointing S3 clients at it and a fresh bucket per test in
`moto_endpoint.bucket`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class MotoEndpoint:
    url: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


@pytest.fixture(scope="session")
def _moto_server():
    server_module = pytest.importorskip("moto.server", reason="the S3 tests need moto's server: pip install 'moto[server]'")
    pytest.importorskip("boto3", reason="the S3 tests need boto3: pip install boto3")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_address[1]}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(_moto_server, monkeypatch) -> MotoEndpoint:
    from fastload.store import object_store

    # Each test starts as a fresh process: the requests it makes switch this process's workers to spawn
    # (store/object_store.py) for this test only, so the suite's later loader tests still fork.
    monkeypatch.setattr(object_store, "_connected_in", set())
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": _moto_server,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    endpoint = MotoEndpoint(_moto_server, f"fastload-{uuid.uuid4().hex[:12]}")
    endpoint.client().create_bucket(Bucket=endpoint.bucket)
    return endpoint
