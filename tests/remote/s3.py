"""A local S3 server and a fault-injecting proxy, for the object-storage tests and `bench/remote.py`.

`S3Server` runs moto's S3 in a thread on 127.0.0.1 (a free port); `FaultProxy` sits in front of any
HTTP endpoint and adds latency, a bandwidth cap, connection resets, stalls and 503 `SlowDown` errors,
each switchable while clients are connected. Both only ever listen on 127.0.0.1 and every wait here
is bounded, so a broken test fails instead of hanging.

Deliberately not here: anything fastload-specific (the store and reader are tested elsewhere, through
these), TLS, and HTTP beyond what S3 clients send (one request at a time per connection, bodies sized
by Content-Length or chunked). The proxy buffers each whole message in memory before forwarding it:
simple and exact, at the cost of memory proportional to the largest object a test moves.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
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


class S3Server:
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

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """What an S3 client (boto3, obstore) needs in its environment to reach this server, or `endpoint` in front of it."""
        return {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ALLOW_HTTP": "true",  # obstore refuses plain-http endpoints without it
        }

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


@dataclass(frozen=True)
class Faults:
    """What the proxy does to each request; every fraction is a probability drawn per request."""

    latency_s: float = 0.0  # waited after the upstream answers, before the client sees a byte
    bandwidth_bytes_per_s: float | None = None  # shared by all connections; None: unlimited
    reset_after_bytes: int | None = None  # abort the connection after this many bytes of a response (head included)
    reset_fraction: float = 1.0  # of responses, once reset_after_bytes is set
    stall_fraction: float = 0.0  # read the request, never answer (until stop())
    error_fraction: float = 0.0  # answer 503 SlowDown without forwarding

    def __post_init__(self):
        for name in ("reset_fraction", "stall_fraction", "error_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Faults.{name} is {getattr(self, name)}; expected a fraction in [0, 1]")
        if self.latency_s < 0 or (self.bandwidth_bytes_per_s is not None and self.bandwidth_bytes_per_s <= 0):
            raise ValueError(f"latency_s must be >= 0 and bandwidth_bytes_per_s > 0 or None; got {self}")
        if self.reset_after_bytes is not None and self.reset_after_bytes < 0:
            raise ValueError(f"reset_after_bytes is {self.reset_after_bytes}; expected >= 0 or None")


@dataclass(frozen=True)
class ProxyCounts:
    num_requests: int = 0  # requests read from clients, faulted or not
    response_bytes: int = 0  # bytes sent to clients (heads included)
    num_delayed: int = 0
    num_resets: int = 0
    num_stalls: int = 0
    num_errors: int = 0


SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + SLOW_DOWN_BODY
)
SEND_CHUNK_BYTES = 16 * 1024  # small enough that the bandwidth cap paces smoothly


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` ("http://host:port") that injects `Faults`.

    One thread per client connection, each with its own upstream connection. `set_faults(...)` changes
    the knobs for the following requests; `counts()` reads the counters; `stop()` closes every socket.
    """

    def __init__(self, upstream: str, *, faults: Faults | None = None, seed: int = 0, upstream_timeout_s: float = 30.0):
        host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self._upstream = (host, int(port or 80))
        self._upstream_timeout_s = upstream_timeout_s
        self._faults = faults or Faults()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counts = ProxyCounts()
        self._next_send_time = 0.0  # the bandwidth cap's clock: when the next byte may leave
        self._stopped = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    # -- knobs and counters

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes) -> Faults:
        with self._lock:
            self._faults = dataclasses.replace(self._faults, **changes)
            return self._faults

    def counts(self) -> ProxyCounts:
        with self._lock:
            return self._counts

    def _count(self, **increments) -> None:
        with self._lock:
            self._counts = dataclasses.replace(self._counts, **{k: getattr(self._counts, k) + v for k, v in increments.items()})

    # -- life cycle

    def start(self) -> FaultProxy:
        self._spawn(self._accept_loop, "accept")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopped.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:  # shutdown wakes threads blocked in accept() or recv()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"fault-proxy {self.endpoint} {name}")
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        if self._stopped.is_set():  # stop() ran between accept/connect and here
            sock.close()
        return sock

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            self._spawn(self._serve_connection, "connection", self._track(client))

    # -- one client connection

    def _serve_connection(self, client: socket.socket) -> None:
        upstream = None
        try:
            reader = client.makefile("rb")
            while not self._stopped.is_set():
                request = _read_request(reader, client)
                if request is None:
                    return  # the client closed its connection
                head, body, method = request
                faults, roll = self._draw()
                self._count(num_requests=1)
                if roll.stall:
                    self._count(num_stalls=1)
                    self._stopped.wait()
                    return
                if roll.error:
                    self._count(num_errors=1)
                    self._send(client, SLOW_DOWN, faults)
                    continue
                if upstream is None:
                    upstream = self._track(socket.create_connection(self._upstream, timeout=self._upstream_timeout_s))
                    upstream_reader = upstream.makefile("rb")
                upstream.sendall(head + body)
                response, close_after = _read_response(upstream_reader, method)
                if close_after:
                    upstream.close()
                    upstream = None
                if faults.latency_s:
                    self._count(num_delayed=1)
                    if self._stopped.wait(faults.latency_s):
                        return
                if roll.reset:
                    self._count(num_resets=1)
                    self._send(client, response[: faults.reset_after_bytes], faults)
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
                    return
                self._send(client, response, faults)
                if close_after or b"connection: close" in head.lower():
                    return
        except OSError:
            return  # a socket closed under us: the client left, upstream failed, or stop() ran
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    @dataclass(frozen=True)
    class _Roll:
        stall: bool
        error: bool
        reset: bool

    def _draw(self) -> tuple[Faults, FaultProxy._Roll]:
        """This request's faults: three draws per request, always, so the stream depends only on the seed and request order."""
        with self._lock:
            faults, draws = self._faults, [self._random.random() for _ in range(3)]
        reset = faults.reset_after_bytes is not None and draws[2] < faults.reset_fraction
        return faults, FaultProxy._Roll(draws[0] < faults.stall_fraction, draws[1] < faults.error_fraction, reset)

    def _send(self, client: socket.socket, data: bytes, faults: Faults) -> None:
        for start in range(0, len(data), SEND_CHUNK_BYTES):
            chunk = data[start : start + SEND_CHUNK_BYTES]
            if faults.bandwidth_bytes_per_s and self._stopped.wait(self._pace(len(chunk), faults.bandwidth_bytes_per_s)):
                return
            client.sendall(chunk)
            self._count(response_bytes=len(chunk))

    def _pace(self, num_bytes: int, bytes_per_s: float) -> float:
        """Seconds to wait before sending `num_bytes`: one clock for all connections, so the cap is shared."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_send_time)
            self._next_send_time = start + num_bytes / bytes_per_s
            return self._next_send_time - now


# -- reading HTTP/1.1 messages (head and body, as raw bytes) ---------------------------------


def _read_head(reader) -> tuple[bytes, dict[str, str]] | None:
    lines = []
    while True:
        line = reader.readline(65536)
        if not line:
            if lines:
                raise ConnectionError("connection closed mid-head")
            return None
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue  # tolerate stray blank lines between messages
            break
        lines.append(line)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return b"".join(lines), headers


def _read_body(reader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = reader.readline(65536)
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            parts.append(reader.read(size + 2))  # the chunk and its CRLF
        while True:  # trailer lines, up to a blank one
            line = reader.readline(65536)
            parts.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)
    length = int(headers.get("content-length", "0"))
    body = reader.read(length)
    if len(body) != length:
        raise ConnectionError(f"connection closed after {len(body)} of {length} body bytes")
    return body


def _read_request(reader, client: socket.socket) -> tuple[bytes, bytes, str] | None:
    read = _read_head(reader)
    if read is None:
        return None
    head, headers = read
    if headers.get("expect", "").lower() == "100-continue":
        # Answer the client's wait ourselves and drop the header, so upstream never sends a 100.
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = b"".join(line + b"\r\n" for line in head.split(b"\r\n") if line and not line.lower().startswith(b"expect:"))
    method = head.split(b" ", 1)[0].decode("latin-1").upper()
    return head + b"\r\n", _read_body(reader, headers), method


def _read_response(reader, method: str) -> tuple[bytes, bool]:
    """The raw response, and whether the upstream connection ends with it."""
    read = _read_head(reader)
    if read is None:
        raise ConnectionError("upstream closed the connection without answering")
    head, headers = read
    status = int(head.split(b" ", 2)[1])
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (head.startswith(b"HTTP/1.0") and connection != "keep-alive")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return head + b"\r\n", close
    if "transfer-encoding" in headers or "content-length" in headers:
        return head + b"\r\n" + _read_body(reader, headers), close
    return head + b"\r\n" + reader.read(), True  # the body runs until upstream closes
