"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for the object-storage tests and `bench/remote.py`.

`FaultProxy` sits in front of any plain-http endpoint (here, an S3 server: `tests/remote/s3.py`, `folder_s3.py`) and
adds latency, a bandwidth cap shared by all connections, connection resets, stalls and S3's 503
`SlowDown` errors, each switchable while clients are connected (`set_faults`), each counted (`counts`).
Only the standard library: one thread per client connection, each with its own upstream connection.

Deliberately not here: TLS, pipelining, and HTTP beyond what S3 clients send (bodies sized by
Content-Length or chunked; `Expect: 100-continue` answered by the proxy itself). Each whole message is
read before it is forwarded: simple and exact about what a fault cuts, at the cost of memory as large
as the largest object a test moves, and of streaming (the client's first byte waits for upstream's last).
"""

from __future__ import annotations

import dataclasses
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    """What the proxy does to each request; every fraction is a probability drawn per request."""

    latency_s: float = 0.0  # waited after upstream answers, before the client sees a byte (not added to 503s)
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
    """What the proxy has done since it started: a snapshot, from `FaultProxy.counts()`."""

    num_requests: int = 0  # requests read from clients, faulted or not
    response_bytes: int = 0  # bytes sent to clients (heads included)
    num_delayed: int = 0  # responses held back by latency_s
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
        self._upstream_address = (host, int(port or 80))
        self._upstream_timeout_s = upstream_timeout_s  # a dead upstream fails the request instead of hanging it
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
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        if self._stopped.is_set():  # stop() ran between accept/connect and here
            sock.close()
        return sock

    def _close(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            _no_delay(client)
            self._spawn(self._serve_connection, "connection", self._track(client))

    # -- one client connection

    def _serve_connection(self, client: socket.socket) -> None:
        upstream = None  # (socket, reader), opened on the first forwarded request and kept alive
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
                upstream, response, close_after = self._exchange(upstream, head + body, method)
                if faults.latency_s:
                    self._count(num_delayed=1)
                    if self._stopped.wait(faults.latency_s):
                        return
                if roll.reset:
                    self._count(num_resets=1)
                    self._send(client, response[: faults.reset_after_bytes], faults)
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
                    return
                self._send(client, response, faults)
                if close_after or b"\r\nconnection: close" in head.lower():
                    return
        except (OSError, ValueError):
            return  # a socket closed under us (the client left, upstream failed, stop() ran) or garbled HTTP
        finally:
            self._close(client)
            self._close(upstream and upstream[0])

    def _exchange(self, upstream, request: bytes, method: str):
        """Send `request` upstream and read the response: (the connection to reuse or None, response, close the client?)."""
        for attempt in (1, 2):
            if upstream is None:
                sock = self._track(_no_delay(socket.create_connection(self._upstream_address, timeout=self._upstream_timeout_s)))
                upstream = (sock, sock.makefile("rb"))
            try:
                upstream[0].sendall(request)
                response, close_after = _read_response(upstream[1], method)
                break
            except OSError:  # ConnectionError included: upstream closed mid-message
                self._close(upstream[0])
                upstream = None
                if attempt == 2:
                    raise  # a kept-alive connection may have gone stale; a fresh one failing is real
        if close_after:
            self._close(upstream[0])
            upstream = None
        return upstream, response, close_after

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


def _no_delay(sock: socket.socket) -> socket.socket:
    """Turn off Nagle's algorithm: a message's last, short segment must not wait for the ACK of the ones before,
    which the peer delays up to 40 ms (measured, 16 KB ranges from the folder S3 server on one thread: 24 GETs a second
    through the proxy with it, 2,700 without; bench/s3_ranges.py --proxy)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


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
