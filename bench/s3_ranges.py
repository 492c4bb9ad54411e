"""Ranged GETs a second from the local S3 servers `bench/remote.py` can use: why its default is the folder server.

    python bench/s3_ranges.py [--servers folder,moto] [--object-mb 64] [--range-kb 1024,16] [--threads 1,8] [--clients obstore,boto3] [--proxy]

Each server (`tests/remote/folder_s3.py`, moto's from `tests/remote/s3.py`) runs in a process of its own
(`bench/remote.py`'s `S3Process`) holding one random object of `--object-mb`; this process reads ranges of
`--range-kb` at random aligned offsets from `--threads` threads through one client (`obstore`, which
fastload's workers use, or `boto3`, which its main process and MosaicML use) for `--seconds` each time,
checks every range against the object's bytes, and reports GETs/s and MB/s, the median of `--repeats`
after one untimed warm-up (min-max beside). No proxy in between (this measures the server and client),
unless `--proxy`: then `tests/remote/fault_proxy.py`, without faults, in this process, as `bench/remote.py`
places it (it reads each whole answer before forwarding it, in Python).

A design measurement, not part of `run_all.py`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH))
from _harness import format_table  # noqa: E402
from remote import S3Process  # noqa: E402  (it puts the repository root on sys.path for tests.remote)

from tests.remote.fault_proxy import FaultProxy  # noqa: E402
from tests.remote.s3 import CREDENTIALS, REGION, s3_client  # noqa: E402

BUCKET, KEY = "ranges", "object.bin"


def _reader(client: str, endpoint: str, num_threads: int):
    """read(start, length) -> bytes through one client shared by the threads."""
    if client == "boto3":
        s3 = s3_client(endpoint, timeout_s=60.0)  # botocore's pool holds 10 connections: enough for the threads measured here
        return lambda start, length: s3.get_object(Bucket=BUCKET, Key=KEY, Range=f"bytes={start}-{start + length - 1}")["Body"].read()
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, region=REGION, access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], client_options={"allow_http": True, "timeout": timedelta(seconds=60)})
    return lambda start, length: obstore.get_range(store, KEY, start=start, length=length)


def _run(read, data: bytes, range_bytes: int, num_threads: int, seconds: float, seed: int) -> int:
    """Ranges read in `seconds` by `num_threads` threads, each range checked."""
    counts, stop, failures = [0] * num_threads, threading.Event(), []
    num_slots = len(data) // range_bytes

    def work(thread_id: int) -> None:
        rng = random.Random(seed * 1000 + thread_id)
        try:
            while not stop.is_set():
                start = rng.randrange(num_slots) * range_bytes
                if bytes(read(start, range_bytes)) != data[start : start + range_bytes]:
                    raise AssertionError(f"bytes {start}-{start + range_bytes} differ from the object's")
                counts[thread_id] += 1
        except Exception as exc:  # noqa: BLE001 - reported below, after the other threads stop
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(num_threads)]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="folder,moto")
    p.add_argument("--object-mb", type=int, default=64)
    p.add_argument("--range-kb", default="1024,16")
    p.add_argument("--threads", default="1,8")
    p.add_argument("--clients", default="obstore,boto3")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--proxy", action="store_true", help="read through the fault proxy (no faults), as bench/remote.py's contenders do")
    args = p.parse_args()
    data = random.Random(0).randbytes(args.object_mb << 20)
    rows = []
    for server_kind in args.servers.split(","):
        server = S3Process(server_kind)
        try:
            s3 = s3_client(server.endpoint, timeout_s=120.0)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)
            proxy = FaultProxy(server.endpoint).start() if args.proxy else None
            endpoint = proxy.endpoint if proxy else server.endpoint
            for client in args.clients.split(","):
                for range_kb in (int(x) for x in args.range_kb.split(",")):
                    for num_threads in (int(x) for x in args.threads.split(",")):
                        read = _reader(client, endpoint, num_threads)
                        _run(read, data, range_kb << 10, num_threads, 1.0, seed=0)  # warm-up: connections, caches
                        rates = [_run(read, data, range_kb << 10, num_threads, args.seconds, seed=r + 1) / args.seconds for r in range(args.repeats)]
                        median = statistics.median(rates)
                        rows.append([server_kind, client, f"{range_kb:,} KB", str(num_threads), f"{median:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
                                     f"{median * range_kb / 1024:,.0f}"])
                        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
            if proxy:
                proxy.stop()
        finally:
            server.stop()
    route = "through the fault proxy (no faults)" if args.proxy else "straight to the server"
    print(f"Ranged GETs from a {args.object_mb} MB object, {route}, {args.seconds:g} s per measurement, median of {args.repeats} (min-max)")
    print(format_table(["server", "client", "range", "threads", "GETs/s", "MiB/s"], rows, align="llrrrr"))


if __name__ == "__main__":
    main()
