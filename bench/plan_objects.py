"""Planning the partitions of a JSON Lines object in a store: one GET per cut, or rounds of parallel GETs.

    python bench/plan_objects.py [--corpus bench/.cache/corpus-200mb.jsonl] [--latencies-ms 0,50] [--partitions-mb 4,1] [--repeats 3]

A partition of an uncompressed JSON Lines file ends at the first line end past
a target `partition_bytes` after the previous cut, so each cut waits for the
one before. `convert/partitions.plan_partitions` with `line_end_at_or_after` reads each
cut's 64 KB one GET after another; `plan_in_rounds` (what a conversion of
objects uses) goes through `convert/line_ends.py`, which fetches windows around guessed cuts in parallel
rounds. Both give the same plan (checked here every time). The corpus is one
object on the folder S3 server (`bench/remote.py`'s, a process of its own),
reached through `tests/remote/fault_proxy.py` adding `--latencies-ms` to every
answer, as a region away would. Reported: seconds to plan (median of
`--repeats`), rounds and GETs.

A design measurement, not part of `run_all.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH))
from _harness import format_table  # noqa: E402
from remote import BUCKET, S3Process, client_env, s3_client  # noqa: E402  (it puts the repository root on sys.path)

from tests.remote.fault_proxy import FaultProxy  # noqa: E402


def _plan_once(files, partition_bytes: int, rounds: bool) -> tuple[float, list, list[int]]:
    from fastload.convert import line_ends, partitions

    fetched: list[int] = []
    real = line_ends._Lookups.fetch
    line_ends._Lookups.fetch = lambda self, wanted: fetched.append(len(wanted)) or real(self, wanted)
    try:
        started = time.perf_counter()
        if rounds:
            plan = line_ends.plan_in_rounds(files, partition_bytes=partition_bytes, text_lines=False)
        else:
            plan = partitions.plan_partitions(files, partition_bytes=partition_bytes, text_lines=False, line_end=partitions.line_end_at_or_after)
        return time.perf_counter() - started, plan, fetched
    finally:
        line_ends._Lookups.fetch = real


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=_BENCH / ".cache" / "corpus-200mb.jsonl")
    p.add_argument("--latencies-ms", default="0,50")
    p.add_argument("--partitions-mb", default="4,1")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus} is missing: run bench/convert.py once to build it, or pass --corpus")
    server = S3Process("folder")
    try:
        client = s3_client(server.endpoint, timeout_s=120.0)
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(args.corpus), BUCKET, "plan/corpus.jsonl")
        rows = []
        with FaultProxy(server.endpoint) as proxy:
            os.environ.update(client_env(proxy.endpoint))
            from fastload.convert.sources import find_inputs

            files = find_inputs([f"s3://{BUCKET}/plan/corpus.jsonl"])
            for latency in (float(x) for x in args.latencies_ms.split(",")):
                proxy.set_faults(latency_s=latency / 1e3)
                for mb in (float(x) for x in args.partitions_mb.split(",")):
                    partition_bytes = int(mb * (1 << 20))
                    timings = {False: [], True: []}
                    for _ in range(args.repeats):
                        for rounds in (False, True):
                            seconds, plan, fetched = _plan_once(files, partition_bytes, rounds)
                            timings[rounds].append((seconds, plan, fetched))
                    chained, in_rounds = timings[False][0][1], timings[True][0][1]
                    if [[(x.start, x.end) for x in q.pieces] for q in chained] != [[(x.start, x.end) for x in q.pieces] for q in in_rounds]:
                        raise SystemExit(f"the plans differ at {mb} MiB partitions: a bug in convert/line_ends.py")
                    one = statistics.median(t[0] for t in timings[False])
                    many = statistics.median(t[0] for t in timings[True])
                    fetched = timings[True][0][2]
                    rows.append([f"{latency:.0f}", f"{mb:g}", str(len(chained) - 1), f"{one:.2f}", f"{many:.2f}", str(len(fetched)), str(sum(fetched)), f"{one / many:.1f}x"])
        print(f"planning {args.corpus.name} ({args.corpus.stat().st_size / 1e6:,.0f} MB) as one object; median of {args.repeats}\n")
        print(format_table(["latency ms", "partition MiB", "cuts", "one GET per cut s", "in rounds s", "rounds", "GETs", "faster"], rows))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
