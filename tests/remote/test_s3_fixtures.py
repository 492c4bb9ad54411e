"""The S3 test machinery itself: moto answers boto3 and obstore, and every FaultProxy knob shows at the client.

Timing checks assert lower bounds only (a fault must cost at least what it promises); upper bounds are
loose ceilings that only catch a hang, so a slow, shared machine cannot fail them.
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import threading
import time
from datetime import timedelta

import pytest

pytest.importorskip("moto.server", reason="the S3 tests need moto's server: pip install 'moto[server]'")
pytest.importorskip("boto3", reason="the S3 tests need boto3: pip install boto3")
obstore = pytest.importorskip("obstore", reason="the S3 tests need obstore: pip install obstore")

import botocore.exceptions  # noqa: E402
from obstore.store import S3Store  # noqa: E402

from tests.remote.fault_proxy import FaultProxy, Faults  # noqa: E402
from tests.remote.s3 import CREDENTIALS, REGION, s3_client  # noqa: E402

PAYLOAD = os.urandom(1 << 20)  # 1 MiB, random so a misplaced byte range cannot match by chance
KEY = "data/block.bin"
HANG_CEILING_S = 30.0  # far above any honest timing here: only a hang reaches it


def obstore_store(endpoint: str, bucket: str, *, timeout_s: float = 10.0) -> S3Store:
    """An obstore S3Store on `endpoint` with explicit settings and no retries, so faults reach the test."""
    return S3Store(
        bucket,
        endpoint=endpoint,
        region=REGION,
        access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        client_options={"allow_http": True, "timeout": timedelta(seconds=timeout_s)},
        retry_config={"max_retries": 0},
    )


def get_range(client: str, endpoint: str, bucket: str, start: int, end: int, *, timeout_s: float = 10.0) -> bytes:
    """Bytes [start, end) of KEY through `client` ("boto3" or "obstore")."""
    if client == "boto3":
        response = s3_client(endpoint, timeout_s=timeout_s).get_object(Bucket=bucket, Key=KEY, Range=f"bytes={start}-{end - 1}")
        return response["Body"].read()
    return bytes(obstore.get_range(obstore_store(endpoint, bucket, timeout_s=timeout_s), KEY, start=start, end=end))


CLIENT_ERRORS = {"boto3": (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError), "obstore": (obstore.exceptions.BaseError,)}
CLIENTS = pytest.mark.parametrize("client", ["boto3", "obstore"])


@pytest.fixture
def stored(s3_server, s3_bucket):
    """s3_bucket holding PAYLOAD at KEY."""
    s3_server.client().put_object(Bucket=s3_bucket, Key=KEY, Body=PAYLOAD)
    return s3_bucket


def timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


# -- the server, with and without the proxy in between


@CLIENTS
@pytest.mark.parametrize("route", ["server", "proxy"])
def test_a_ranged_get_returns_exactly_the_bytes_asked_for(client, route, s3_server, fault_proxy, stored):
    endpoint = s3_server.endpoint if route == "server" else fault_proxy.endpoint
    assert get_range(client, endpoint, stored, 123_457, 623_457) == PAYLOAD[123_457:623_457]
    assert get_range(client, endpoint, stored, 0, 1) == PAYLOAD[:1]
    if route == "proxy":
        assert fault_proxy.counts().num_requests == 2
        assert fault_proxy.counts().response_bytes > 500_001  # both bodies, plus heads


@CLIENTS
def test_puts_through_the_proxy_arrive_intact(client, s3_server, fault_proxy, s3_bucket):
    if client == "boto3":  # a file object: boto3 sends `Expect: 100-continue`, which the proxy answers
        import io

        s3_client(fault_proxy.endpoint).put_object(Bucket=s3_bucket, Key=KEY, Body=io.BytesIO(PAYLOAD))
    else:
        obstore.put(obstore_store(fault_proxy.endpoint, s3_bucket), KEY, PAYLOAD)
    assert s3_server.client().get_object(Bucket=s3_bucket, Key=KEY)["Body"].read() == PAYLOAD


def test_upload_folder_puts_every_file_under_the_prefix(s3_server, s3_bucket, tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "index.json").write_bytes(b"{}")
    (tmp_path / "shards" / "shard-00000.arrow").write_bytes(PAYLOAD[:1000])
    keys = s3_server.upload_folder(tmp_path, s3_bucket, "datasets/demo/")
    assert keys == ["datasets/demo/index.json", "datasets/demo/shards/shard-00000.arrow"]
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()
    assert body == PAYLOAD[:1000]


@pytest.mark.parametrize("env_fixture", ["s3_env", "s3_proxy_env"])
def test_clients_configured_only_by_the_environment_reach_the_bucket(env_fixture, request, fault_proxy, stored):
    env = request.getfixturevalue(env_fixture)
    assert os.environ["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"]
    import boto3

    # Neither client is told the endpoint, the credentials or that plain http is fine: the environment says so.
    boto3_body = boto3.client("s3").get_object(Bucket=stored, Key=KEY, Range="bytes=10-19")["Body"].read()
    obstore_body = bytes(obstore.get_range(S3Store(stored), KEY, start=10, end=20))
    assert boto3_body == obstore_body == PAYLOAD[10:20]
    assert fault_proxy.counts().num_requests == (2 if env_fixture == "s3_proxy_env" else 0)


# -- each fault, seen by both clients


@CLIENTS
def test_error_fraction_answers_503_slow_down_and_counts_it(client, fault_proxy, stored):
    fault_proxy.set_faults(error_fraction=1.0)
    with pytest.raises(CLIENT_ERRORS[client]) as raised:
        get_range(client, fault_proxy.endpoint, stored, 0, 100)
    assert "SlowDown" in str(raised.value) and ("503" in str(raised.value) or client == "boto3")
    if client == "boto3":
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert fault_proxy.counts().num_errors == fault_proxy.counts().num_requests == 1


@CLIENTS
@pytest.mark.parametrize("reset_after_bytes", [0, 2000], ids=["before-the-head", "mid-body"])
def test_a_reset_connection_is_a_client_error(client, reset_after_bytes, fault_proxy, stored):
    fault_proxy.set_faults(reset_after_bytes=reset_after_bytes)
    with pytest.raises(CLIENT_ERRORS[client]):
        get_range(client, fault_proxy.endpoint, stored, 0, 200_000)
    counts = fault_proxy.counts()
    assert counts.num_resets == counts.num_requests >= 1
    assert counts.response_bytes <= reset_after_bytes * counts.num_requests


@CLIENTS
def test_a_stalled_request_fails_a_client_with_a_short_timeout(client, fault_proxy, stored):
    fault_proxy.set_faults(stall_fraction=1.0)
    start = time.monotonic()
    with pytest.raises(CLIENT_ERRORS[client]):
        get_range(client, fault_proxy.endpoint, stored, 0, 100, timeout_s=1.0)
    assert 0.9 <= time.monotonic() - start < HANG_CEILING_S  # the client's own timeout ended it, not the proxy
    assert fault_proxy.counts().num_stalls == 1
    assert fault_proxy.counts().response_bytes == 0


@CLIENTS
def test_latency_delays_every_response_by_at_least_latency_s(client, fault_proxy, stored):
    fault_proxy.set_faults(latency_s=0.4)
    body, elapsed_s = timed(lambda: get_range(client, fault_proxy.endpoint, stored, 0, 100))
    assert body == PAYLOAD[:100]
    assert elapsed_s >= 0.4
    assert fault_proxy.counts().num_delayed == 1


@CLIENTS
def test_the_bandwidth_cap_slows_a_1_mib_transfer(client, fault_proxy, stored):
    fault_proxy.set_faults(bandwidth_bytes_per_s=2_000_000)
    body, elapsed_s = timed(lambda: get_range(client, fault_proxy.endpoint, stored, 0, len(PAYLOAD)))
    assert body == PAYLOAD
    assert elapsed_s >= len(PAYLOAD) / 2_000_000  # 0.52 s at least


def test_the_bandwidth_cap_is_shared_by_concurrent_connections(fault_proxy, stored):
    fault_proxy.set_faults(bandwidth_bytes_per_s=2_000_000)
    half = len(PAYLOAD) // 2
    bodies = {}

    def fetch(start):
        bodies[start] = get_range("boto3", fault_proxy.endpoint, stored, start, start + half)

    threads = [threading.Thread(target=fetch, args=(start,)) for start in (0, half)]
    start_time = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_CEILING_S)
    elapsed_s = time.monotonic() - start_time
    assert bodies == {0: PAYLOAD[:half], half: PAYLOAD[half:]}
    assert elapsed_s >= len(PAYLOAD) / 2_000_000  # each alone would take half as long


def test_faults_change_between_requests_on_one_connection(fault_proxy, stored):
    client = s3_client(fault_proxy.endpoint)  # one client, one kept-alive connection
    fault_proxy.set_faults(error_fraction=1.0)
    with pytest.raises(botocore.exceptions.ClientError):
        client.get_object(Bucket=stored, Key=KEY, Range="bytes=0-9")
    fault_proxy.set_faults(error_fraction=0.0)
    assert client.get_object(Bucket=stored, Key=KEY, Range="bytes=0-9")["Body"].read() == PAYLOAD[:10]
    assert fault_proxy.counts().num_errors == 1


# -- the proxy's own promises


def fault_pattern(upstream: str, seed: int, num_requests: int = 24) -> list[bool]:
    """Which of `num_requests` sequential requests a half-erroring proxy with `seed` answers with 503."""
    with FaultProxy(upstream, seed=seed, faults=Faults(error_fraction=0.5)) as proxy:
        client = s3_client(proxy.endpoint)
        pattern = []
        for _ in range(num_requests):
            try:
                client.list_buckets()
                pattern.append(False)
            except botocore.exceptions.ClientError as error:
                assert error.response["Error"]["Code"] == "SlowDown"
                pattern.append(True)
        return pattern


def test_the_seed_makes_the_faults_repeat(s3_server):
    first = fault_pattern(s3_server.endpoint, seed=7)
    assert fault_pattern(s3_server.endpoint, seed=7) == first
    assert any(first) and not all(first)
    assert fault_pattern(s3_server.endpoint, seed=8) != first  # 1 chance in 2**24 of a false failure


def test_stop_returns_promptly_with_a_stalled_connection_open(s3_server):
    proxy = FaultProxy(s3_server.endpoint, faults=Faults(stall_fraction=1.0)).start()
    client = socket.create_connection(("127.0.0.1", int(proxy.endpoint.rsplit(":", 1)[1])), timeout=HANG_CEILING_S)
    client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    deadline = time.monotonic() + HANG_CEILING_S
    while proxy.counts().num_stalls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.counts().num_stalls == 1
    _, elapsed_s = timed(lambda: proxy.stop(timeout_s=HANG_CEILING_S))
    assert elapsed_s < 5.0  # nothing to wait for: closing the sockets wakes every thread at once
    assert client.recv(100) == b""  # the stalled connection was closed, not left hanging
    assert not [t.name for t in threading.enumerate() if t.name.startswith(f"fault-proxy {proxy.endpoint}")]
    client.close()


def test_faults_reject_values_that_are_not_fractions():
    with pytest.raises(ValueError, match="error_fraction is 1.5"):
        Faults(error_fraction=1.5)
    with pytest.raises(ValueError, match="reset_after_bytes is -1"):
        Faults(reset_after_bytes=-1)


def test_a_chunked_upload_body_is_forwarded_whole(s3_server, fault_proxy, s3_bucket):
    connection = http.client.HTTPConnection("127.0.0.1", int(fault_proxy.endpoint.rsplit(":", 1)[1]), timeout=HANG_CEILING_S)
    pieces = [PAYLOAD[i : i + 100_000] for i in range(0, 300_000, 100_000)]
    connection.request("PUT", f"/{s3_bucket}/{KEY}", body=iter(pieces), encode_chunked=True)
    assert connection.getresponse().status == 200
    connection.close()
    assert s3_server.client().get_object(Bucket=s3_bucket, Key=KEY)["Body"].read() == PAYLOAD[:300_000]


class ClosesSilently(http.server.BaseHTTPRequestHandler):
    """Answers, then drops the connection without saying so: what a server does to an idle kept-alive one."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_the_proxy_reconnects_when_upstream_dropped_a_kept_alive_connection():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClosesSilently)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}") as proxy:
            connection = http.client.HTTPConnection("127.0.0.1", int(proxy.endpoint.rsplit(":", 1)[1]), timeout=HANG_CEILING_S)
            for _ in range(3):  # one client connection throughout
                connection.request("GET", "/")
                assert connection.getresponse().read() == b"ok"
            connection.close()
            assert proxy.counts().num_requests == 3
    finally:
        upstream.shutdown()
        upstream.server_close()
