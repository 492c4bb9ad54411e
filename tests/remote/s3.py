"""A local S3 server for the object-storage tests and `bench/remote.py`: moto, boto3 clients, the environment.

`S3Server` runs moto's S3 in a thread on 127.0.0.1 (a free port); `LocalS3`, its base (and that of
`tests/remote/folder_s3.py`'s `FolderS3Server`), creates buckets and uploads folders, and its `env()`
is what a client (boto3, obstore, fastload's store) needs in its environment to find the server. Every
wait is bounded, so a broken server fails a test instead of hanging it. moto and boto3 are imported
when used, so importing this module needs neither (the fixtures skip, naming what to install).

Deliberately not here: faults (`tests/remote/fault_proxy.py` goes in front of this server) and anything
fastload-specific (the store and reader are tested through these, elsewhere).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

# Fake credentials: moto accepts any, and "testing" is what its documentation uses.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
# Variables that would take precedence over (or add to) the ones `env()` sets: clear them too.
OVERRIDING_ENV_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def s3_client(endpoint: str, *, timeout_s: float = 10.0, max_attempts: int = 1):
    """A boto3 S3 client for `endpoint` with fake credentials, path-style addressing and bounded waits.

    `max_attempts` counts every try, the first included (1: no retries), so faults reach the test.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},  # botocore's "max_attempts" counts retries only
        s3={"addressing_style": "path"},  # virtual-hosted buckets need DNS names, not 127.0.0.1
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=config,
    )


def client_env(endpoint: str) -> dict[str, str]:
    """What an S3 client (boto3, obstore) needs in its environment to reach a moto server (or a proxy) at `endpoint`."""
    return {
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",  # obstore refuses plain-http endpoints without it
    }


class LocalS3:
    """What tests and benchmarks do with a local S3 server at `self.endpoint`, whichever it is
    (moto's `S3Server` here, `FolderS3Server` in `tests/remote/folder_s3.py`)."""

    endpoint: str | None = None

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """What an S3 client (boto3, obstore) needs in its environment to reach this server, or `endpoint` in front of it."""
        return client_env(endpoint or self.endpoint)

    def client(self, **options):
        return s3_client(self.endpoint, **options)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def upload_folder(self, local_folder: str | Path, bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under `local_folder` to `bucket` at `prefix/<relative path>`; returns the keys."""
        client, root, keys = self.client(timeout_s=60.0), Path(local_folder), []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = "/".join(part for part in (prefix.strip("/"), path.relative_to(root).as_posix()) if part)
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys


class S3Server(LocalS3):
    """moto's S3 in server mode on 127.0.0.1; `with S3Server() as server:` starts and stops it."""

    def __init__(self, *, start_timeout_s: float = 30.0):
        self.start_timeout_s = start_timeout_s
        self._moto = None
        self.endpoint: str | None = None

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns a benchmark's output

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free one
        # moto's start() waits without a timeout for its thread; wait for it from a thread of our own.
        starter = threading.Thread(target=self._moto.start, daemon=True, name="s3-server-start")
        starter.start()
        starter.join(self.start_timeout_s)
        if starter.is_alive():
            raise RuntimeError(f"moto's S3 server did not start within {self.start_timeout_s} s; is werkzeug installed?")
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        deadline = time.monotonic() + self.start_timeout_s
        while True:  # the socket is bound; wait until the app answers
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # any HTTP answer means it is serving
            except OSError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server at {self.endpoint} did not answer within {self.start_timeout_s} s: {error}") from error
                time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._moto is None:
            return
        stopper = threading.Thread(target=self._moto.stop, daemon=True, name="s3-server-stop")
        stopper.start()
        stopper.join(timeout_s)
        self._moto = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
