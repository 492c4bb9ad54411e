"""Datasets in object storage (#12): one corpus read from a local S3 server through a latency proxy.

    python bench/remote.py [--corpus-mb 100] [--batches 1500] [--repeats 3] [--latencies-ms 0,20,50] [--bandwidth-mb 400] [--server folder]

The token corpus of `bench/loader_tokens.py` (the `bench/convert.py` corpus,
tokenized once with the default tokenizer) in each contender's own format —
fastload's dataset, MosaicML MDS shards, LitData chunks, built by
`bench/token_loaders/` — uploaded to a local S3 server (`--server`, below)
running in a process of its own, and read through `tests/remote/fault_proxy.py`
(in this script's process, which does nothing else while a contender runs)
at each added latency, under a bandwidth cap meant to exceed consumption:

  fastload   `Dataset("s3://.../fastload", cache_dir=, cache_bytes=)` -> `PackedDataset(seq_len=1024)` -> `DataLoader`
  mosaicml   `StreamingDataset(remote="s3://.../mds", local=)` (endpoint from S3_ENDPOINT_URL) -> torch `DataLoader`
  litdata    `StreamingDataset("s3://.../litdata", cache_dir=, TokensLoader(1025), storage_options=)` -> `StreamingDataLoader`
  fastload-8mb-shards   fastload on the corpus converted with 8 MB shards (a diagnostic for `--server moto`: see "The server")

all with `--workers` workers, batches of 16 x 1025 tokens, shuffled. Each
measurement is a fresh child process: "cold" on an empty cache folder, then
"warm" in a new process on the folder the cold one left. Each row is the
median of `--repeats` such pairs (min-max beside tokens/s). Columns:

- tokens/s: steady state, over up to `--batches` batches once every
  worker has delivered (after the first 1 + 2 x workers batches), to the
  end of the epoch at most; downloads included when cold; 16 x 1025 tokens
  a batch for everyone;
- first batch s: from constructing the dataset to the first batch in hand
  (the index or shard list fetched, workers started);
- fetched/consumed: the bytes the proxy sent to the child (HTTP heads, the
  index and every shard or block range included) over the bytes of the
  tokens it delivered, 2 bytes a token as every contender stores them
  (uint16). Over a bounded run, read-ahead counts against it: what was
  fetched but not yet consumed when the child stopped. The epoch row below
  is the issue's goal: a whole epoch through a cache smaller than the data;
- peak cache MB: the largest total size of the files under the cache folder,
  sampled every 0.1 s from the child;
- peak RSS MB: summed over the child's process tree (workers included).

The server (`--server`). `folder`, the default, is `tests/remote/folder_s3.py`:
a small S3-compatible server over a temporary folder that answers a ranged
GET from the file (pread or sendfile), in time proportional to the range, as
a real object store does. `moto` is moto's server mode (`tests/remote/s3.py`,
what the tests' fixtures start), kept for comparison: it answers a ranged GET
by copying the whole object (`FakeKey.value`), so it serves about 15 ranged
GETs a second from a 64 MB object, 1 MB or 16 KB alike. Whole-shard readers
(the peers) pay that once per shard; fastload, which reads 1 MB blocks by
range from 128 MB shards (its default), pays it per block, so under moto the
server, not the loader, sets fastload's figures. Measured with
`bench/s3_ranges.py` (ranged GETs a second from a 64 MB object, each server
in a process of its own, no proxy; the figures are in bench/README.md's
"Object storage" section). The row "8 MB shards" (the same dataset converted
with `shard_bytes=8 MiB`) shows what fastload does when moto's per-request
cost is closer to a real store's; with `--server folder` it is only a
comparison of shard sizes, not a setting to use.

Also measured: fastload on the local folder (the ">= 90% of local" goal)
and fastload over one whole epoch at the largest latency with `cache_bytes`
= `--epoch-cache-fraction` of the dataset (the bytes goal): with the default
order, with read-ahead at half the cache, and with an order of 4 partitions
and windows of 2 blocks, whose live blocks (16 MB) fit in that cache (with
the defaults, every block of this small dataset is live). The peers'
epoch is not measured: at these corpus sizes an MDS shard or LitData chunk
is a large part of the dataset, so a cache smaller than it cannot hold one.

Set up: the bench environment of bench/README.md (`bench/requirements.txt`
holds the peers, obstore, boto3 and moto[server]). bench/README.md's section
"Object storage" has the measured table and which of the issue's goals it meets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH))
from _harness import PeakMemory, child_main, format_table, machine_info, ratio, run_child, status, write_json  # noqa: E402
from token_loaders.prepare import BATCH_SIZE, ROW_LEN, SEQ_LEN  # noqa: E402
from convert import CACHE, REPO, ensure_corpus  # noqa: E402

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(REPO))  # tests/remote: the S3 server and the fault proxy the tests use
from tests.remote.fault_proxy import FaultProxy  # noqa: E402
from tests.remote.s3 import client_env, s3_client  # noqa: E402

BUCKET = "fastload-bench"
CONTENDERS = ("fastload", "fastload-8mb-shards", "mosaicml", "litdata")
SMALL_SHARD_BYTES = 8 << 20  # see the docstring: moto's ranged GET costs in proportion to the whole object
LABELS = {"fastload": "fastload Dataset(s3://)", "fastload-8mb-shards": "fastload Dataset(s3://), 8 MB shards",
          "mosaicml": "MosaicML StreamingDataset (MDS)", "litdata": "LitData StreamingDataset",
          "local": "fastload, local disk", "epoch": "fastload, one epoch"}
CHILD_TIMEOUT_S = 900
TOKEN_BYTES = 2  # uint16, in every contender's files


# -- the children ----------------------------------------------------------------------------


# The epoch row's third run: 4 partitions of windows of 2 blocks, so 2 x 2 x 4 = 16 blocks (16 MB) are live
# at once, less than the 40% cache (25 MB) of the 63 MB dataset.
SMALL_WINDOWS = {"num_partitions": 4, "window_blocks": 2}
SMALL_WINDOWS_LABEL = "4 partitions, windows of 2 blocks"


def child_prepare(corpus: Path) -> dict:
    """Build (once, cached) each contender's files from the corpus; their folders and sizes, or the error per peer."""
    from token_loaders.fastload_packed import fastload_dataset
    from token_loaders.prepare import token_stream

    _, meta = token_stream(corpus)
    folders = {"fastload": fastload_dataset(corpus, tokenized=True),
               "fastload-8mb-shards": fastload_dataset(corpus, tokenized=True, shard_bytes=SMALL_SHARD_BYTES)}
    errors = {}
    for name in ("mosaicml", "litdata"):
        try:
            folders[name] = _peer_files(name, corpus)
        except Exception as exc:  # noqa: BLE001 - a missing peer is a row of its own
            errors[name] = f"{type(exc).__name__}: {exc}"
    return {"folders": {k: str(v) for k, v in folders.items()}, "errors": errors, "num_tokens": meta["num_tokens"],
            "bytes": {k: _folder_bytes(Path(v)) for k, v in folders.items()}}


def _peer_files(name: str, corpus: Path) -> Path:
    if name == "mosaicml":
        from token_loaders.mds_shards import import_streaming, mds_shards

        import_streaming()
        return mds_shards(corpus)
    from token_loaders.litdata_chunks import litdata_chunks

    return litdata_chunks(corpus)


def _make_loader(name: str, source: str, cache: Path, workers: int, cache_bytes: int | None, read_ahead_bytes: int | None,
                 small_windows: bool = False):
    if name in ("fastload", "fastload-8mb-shards", "local", "epoch"):
        import fastload

        remote = {"cache_dir": cache, "cache_bytes": cache_bytes} | ({"read_ahead_bytes": read_ahead_bytes} if read_ahead_bytes else {})
        dataset = fastload.Dataset(source, **remote) if source.startswith("s3://") else fastload.Dataset(source)
        sampling = fastload.SamplerOptions(**SMALL_WINDOWS) if small_windows else None
        packed = fastload.PackedDataset(dataset, seq_len=SEQ_LEN, sampling=sampling)
        return fastload.DataLoader(packed, batch_size=BATCH_SIZE, num_workers=workers, shuffle=True)
    if name == "mosaicml":
        import torch
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory
        from token_loaders.prepare import to_int64

        clean_stale_shared_memory()

        class TokenRows(StreamingDataset):
            def __getitem__(self, idx):
                return to_int64(super().__getitem__(idx)["input_ids"])  # (1025,)

        dataset = TokenRows(remote=source, local=str(cache), shuffle=True, batch_size=BATCH_SIZE)
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader
    from token_loaders.prepare import to_int64

    dataset = StreamingDataset(source, cache_dir=str(cache), item_loader=TokensLoader(block_size=ROW_LEN), shuffle=True,
                               transform=to_int64, storage_options={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    return StreamingDataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)


def _tokens_in(batch) -> int:
    """Tokens a batch delivered, as 1025-token rows: fastload's dict holds (B, 1024) inputs whose labels add the 1025th."""
    if isinstance(batch, dict):
        rows = batch["input_ids"]
        return int(rows.shape[0]) * (int(rows.shape[1]) + 1)
    return int(batch.numel())


class _Sampler:
    """Peak tree memory and peak bytes under the cache folder, sampled every 0.1 s on a thread of its own."""

    def __init__(self, cache: Path):
        self.cache, self.memory, self.cache_bytes = cache, PeakMemory(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.memory.sample(force=True)
            self.cache_bytes = max(self.cache_bytes, _folder_bytes(self.cache))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.memory.sample(force=True)
        self.cache_bytes = max(self.cache_bytes, _folder_bytes(self.cache))


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # renamed or evicted while walking
    return total


def child_measure(name: str, source: str, cache: Path, *, workers: int, batches: int | None, cache_bytes: int | None,
                  read_ahead_bytes: int | None, small_windows: bool = False) -> dict:
    """Time to the first batch, then tokens/s over `batches` more (None: to the end of the epoch)."""
    note = None
    if name == "mosaicml":
        from token_loaders.mds_shards import import_streaming

        note = import_streaming()
    if name == "litdata":  # its obstore client options lack allow_http, so it refuses this http:// endpoint ("BadScheme")
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # inherited by its forked workers
        note = "obstore client patched with allow_http"
    import torch  # noqa: F401  (imported before the clock starts, by everyone)

    cache.mkdir(parents=True, exist_ok=True)
    sampler = _Sampler(cache)
    started = time.perf_counter()
    iterator = iter(_make_loader(name, source, cache, workers, cache_bytes, read_ahead_bytes, small_windows))
    untimed = _tokens_in(next(iterator))
    first = time.perf_counter() - started
    for _, batch in zip(range(2 * workers), iterator):  # until every worker has delivered: its own start-up is not steady state
        untimed += _tokens_in(batch)
    tokens, count, started = 0, 0, time.perf_counter()
    for batch in iterator:
        tokens += _tokens_in(batch)
        count += 1
        if batches is not None and count >= batches:
            break
    elapsed = time.perf_counter() - started
    sampler.stop()
    del iterator
    return {"note": note, "tokens_per_s": tokens / elapsed, "first_batch_s": first, "tokens": untimed + tokens, "batches": count + 1 + 2 * workers,
            "peak_rss_mb": sampler.memory.rss_mb, "peak_cache_bytes": sampler.cache_bytes}


SERVERS = ("folder", "moto")


def child_s3_server(kind: str) -> None:
    """The S3 server `kind` (see "The server") in this process, not the loader's, whose GIL it would share: prints its
    endpoint, serves until stdin closes. The folder server keeps its objects in a temporary folder, removed on exit."""
    if kind == "folder":
        from tests.remote.folder_s3 import FolderS3Server as Server
    else:
        from tests.remote.s3 import S3Server as Server

    with Server() as server:
        print(json.dumps({"endpoint": server.endpoint}), flush=True)
        sys.stdin.read()


# -- the parent ------------------------------------------------------------------------------


class S3Process:
    """`child_s3_server(kind)` in a process of its own (bench/s3_ranges.py uses it too); `stop()` ends it."""

    def __init__(self, kind: str):
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", "s3-server", "--server", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)
        line = self.proc.stdout.readline()  # both servers bound their own start-up wait
        if not line:
            hint = "is 'moto[server]' installed? (pip install 'moto[server]')" if kind == "moto" else "see its error above"
            raise RuntimeError(f"the {kind} S3 server process exited before serving: {hint}")
        self.endpoint = json.loads(line)["endpoint"]

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _upload(endpoint: str, folders: dict[str, str]) -> None:
    client = s3_client(endpoint, timeout_s=120.0)
    client.create_bucket(Bucket=BUCKET)
    for name, folder in folders.items():
        root = Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            client.upload_file(str(path), BUCKET, f"{name}/{path.relative_to(root).as_posix()}")


def _measure(argv: list[str], name: str, source: str, cache: Path, proxy: FaultProxy | None, env: dict, *, batches: int | None,
             cache_bytes: int | None = None, read_ahead_bytes: int | None = None, small_windows: bool = False) -> dict:
    before = proxy.counts() if proxy else None
    args = [*argv, "--child", name, "--source", source, "--cache", str(cache)]
    args += ["--batches", str(batches) if batches is not None else "epoch"]
    args += ["--cache-bytes", str(cache_bytes)] if cache_bytes else []
    args += ["--read-ahead-bytes", str(read_ahead_bytes)] if read_ahead_bytes else []
    args += ["--small-windows"] if small_windows else []
    result = run_child(args, timeout_s=CHILD_TIMEOUT_S, env=env)
    if proxy and "error" not in result:
        after = proxy.counts()
        result["fetched_bytes"] = after.response_bytes - before.response_bytes
        result["requests"] = after.num_requests - before.num_requests
        result["fetched_per_consumed"] = result["fetched_bytes"] / (result["tokens"] * TOKEN_BYTES)
    return result


def _median(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = {k: statistics.median(r[k] for r in ok) for k in ("tokens_per_s", "first_batch_s", "fetched_per_consumed", "fetched_bytes") if k in ok[0]}
    out.update({"requests": statistics.median(r.get("requests", 0) for r in ok),
                "tokens_per_s_min": min(r["tokens_per_s"] for r in ok), "tokens_per_s_max": max(r["tokens_per_s"] for r in ok),
                "peak_rss_mb": max(r["peak_rss_mb"] or 0 for r in ok), "peak_cache_bytes": max(r["peak_cache_bytes"] for r in ok),
                "note": ok[0].get("note"), "runs": runs})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus-mb", type=float, default=100)
    p.add_argument("--batches", default="1500", help="timed batches once every worker has delivered, at most to the end of the epoch (a child: a number or 'epoch')")
    p.add_argument("--repeats", type=int, default=3, help="cold+warm pairs per contender and latency")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--latencies-ms", default="0,20,50")
    p.add_argument("--bandwidth-mb", type=float, default=400.0, help="the proxy's cap, MB/s shared by all connections")
    p.add_argument("--epoch-cache-fraction", type=float, default=0.4, help="the epoch row's cache_bytes, as a fraction of the dataset")
    p.add_argument("--only", default=",".join(CONTENDERS), help=f"contenders, from: {', '.join(CONTENDERS)}")
    p.add_argument("--server", default="folder", choices=SERVERS, help="the local S3 server: folder (serves ranges from files), or moto (copies "
                   "the whole object per ranged GET; for comparison); see the docstring's \"The server\"")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here (bench/run_all.py reads it)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache-bytes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--read-ahead-bytes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--small-windows", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    corpus = CACHE / f"corpus-{args.corpus_mb:g}mb.jsonl"
    if args.child == "s3-server":
        child_s3_server(args.server)
        return
    if args.child == "prepare":
        child_main(lambda: child_prepare(corpus))
        return
    if args.child:
        batches = None if args.batches == "epoch" else int(args.batches)
        child_main(lambda: child_measure(args.child, args.source, args.cache, workers=args.workers, batches=batches, cache_bytes=args.cache_bytes,
                                                 read_ahead_bytes=args.read_ahead_bytes, small_windows=args.small_windows))
        return

    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contender(s) {', '.join(sorted(unknown))}; valid: {', '.join(CONTENDERS)}")
    latencies = [float(x) for x in args.latencies_ms.split(",")]
    ensure_corpus(corpus, args.corpus_mb)
    base = [sys.executable, __file__, "--corpus-mb", f"{args.corpus_mb:g}", "--workers", str(args.workers)]
    prepared = run_child([*base, "--child", "prepare"], timeout_s=CHILD_TIMEOUT_S)
    if "error" in prepared:
        raise SystemExit(f"preparing the datasets failed: {prepared['error']}")
    folders = {k: v for k, v in prepared["folders"].items() if k in names or k == "fastload"}
    dataset_bytes = prepared["bytes"]["fastload"]
    print(f"corpus {corpus.name}: {prepared['num_tokens']:,} tokens; files: "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in prepared["bytes"].items()), file=sys.stderr, flush=True)

    server = S3Process(args.server)
    work = Path(tempfile.mkdtemp(prefix="fastload-bench-remote-"))
    results: list[dict] = []
    try:
        started = time.perf_counter()
        _upload(server.endpoint, folders)
        print(f"uploaded to {server.endpoint} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        with FaultProxy(server.endpoint) as proxy:
            env = {**os.environ, **client_env(proxy.endpoint), "S3_ENDPOINT_URL": proxy.endpoint}
            # untimed: Numba's compiled kernels reach their disk cache, the page cache holds the files
            _measure(base, "local", prepared["folders"]["fastload"], work / "unused", None, env, batches=int(args.batches))
            local = [_measure(base, "local", prepared["folders"]["fastload"], work / "unused", None, env, batches=int(args.batches))
                     for _ in range(args.repeats)]
            results.append({"name": "local", "latency_ms": None, "cache": "local", **_median(local)})
            for latency in latencies:
                proxy.set_faults(latency_s=latency / 1e3, bandwidth_bytes_per_s=args.bandwidth_mb * 1e6)
                runs = {(n, c): [] for n in names for c in ("cold", "warm")}
                for repeat in range(args.repeats):
                    for name in names:
                        if name in prepared["errors"]:
                            continue
                        print(f"measuring {name} at {latency:g} ms, repeat {repeat + 1} ...", file=sys.stderr, flush=True)
                        cache = work / f"{name}-{latency:g}-{repeat}"
                        source = f"s3://{BUCKET}/{name}"
                        for state in ("cold", "warm"):
                            runs[(name, state)].append(_measure(base, name, source, cache, proxy, env, batches=int(args.batches)))
                        shutil.rmtree(cache, ignore_errors=True)
                for (name, state), found in runs.items():
                    result = _median(found) if found else {"error": prepared["errors"][name]}
                    results.append({"name": name, "latency_ms": latency, "cache": state, **result})
            # the bytes goal: one epoch through a cache smaller than the dataset, with the default read-ahead (256 MB, more than
            # this cache) and, to show what that costs, with read_ahead_bytes at half the cache
            epoch_cache = int(dataset_bytes * args.epoch_cache_fraction)
            # and, third, with an order whose live windows (2 x window_blocks x partitions blocks) fit in that cache,
            # which this small dataset needs for the goal to be reachable at all: with the defaults, every block is live
            epoch_runs = ((None, "default read-ahead", False), (epoch_cache // 2, "read-ahead cache/2", False), (None, SMALL_WINDOWS_LABEL, True))
            for read_ahead, label, small_windows in epoch_runs:
                print(f"measuring fastload over one epoch at {latencies[-1]:g} ms, cache_bytes {epoch_cache:,}, {label} ...", file=sys.stderr, flush=True)
                epoch = _measure(base, "epoch", f"s3://{BUCKET}/fastload", work / f"epoch-{read_ahead}-{small_windows}", proxy, env, batches=None,
                                 cache_bytes=epoch_cache, read_ahead_bytes=read_ahead, small_windows=small_windows)
                if "error" not in epoch:
                    epoch["fetched_per_dataset_byte"] = epoch["fetched_bytes"] / dataset_bytes
                results.append({"name": "epoch", "latency_ms": latencies[-1], "cache": f"{args.epoch_cache_fraction:.0%}, {label}", **epoch})
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    _report(results, args, prepared, dataset_bytes)
    if args.json:
        local_tps = results[0].get("tokens_per_s")
        rows = [{**{k: v for k, v in r.items() if k not in ("runs", "name")}, "contender": r["name"],
                 "name": LABELS[r["name"]] + ("" if r["latency_ms"] is None else f", {r['latency_ms']:g} ms, {r['cache']}"),
                 "value": r["tokens_per_s"] / 1e6 if "tokens_per_s" in r else None, "unit": "M tokens/s", "workers": args.workers,
                 "baseline": r["name"] == "local"} for r in results]
        write_json(args.json, {"machine": machine_info(), "results": rows, "prepared": prepared, "local_tokens_per_s": local_tps,
                               "args": vars(args) | {"json": str(args.json)}})


def _report(results: list[dict], args, prepared: dict, dataset_bytes: int) -> None:
    local = results[0].get("tokens_per_s")
    fastload_at = {(r["latency_ms"], r["cache"]): r.get("tokens_per_s") for r in results if r["name"] == "fastload"}
    rows = []
    for r in results:
        latency = "" if r["latency_ms"] is None else f"{r['latency_ms']:g}"
        if "error" in r:
            rows.append([LABELS[r["name"]], latency, r["cache"], status(r), "", "", "", "", "", "", r["error"].splitlines()[-1][:70]])
            continue
        tps = r["tokens_per_s"]
        spread = f" ({r['tokens_per_s_min'] / 1e6:.1f}-{r['tokens_per_s_max'] / 1e6:.1f})" if "tokens_per_s_min" in r and args.repeats > 1 else ""
        versus = ratio(fastload_at.get((r["latency_ms"], r["cache"])), tps) if r["name"] in ("mosaicml", "litdata") else ""
        fetched = r.get("fetched_per_consumed")
        rows.append([LABELS[r["name"]], latency, r["cache"], f"{tps / 1e6:.2f}{spread}", ratio(tps, local), versus, f"{r['first_batch_s']:.2f}",
                     "" if fetched is None else f"{fetched:.3f}", f"{r['peak_cache_bytes'] / 1e6:.1f}", f"{r['peak_rss_mb'] or 0:.0f}",
                     (r.get("note") or "")[:50]])
    print(f"Remote reads from the {args.server} S3 server, {args.corpus_mb:g} MB corpus ({prepared['num_tokens']:,} tokens; fastload dataset {dataset_bytes / 1e6:.1f} MB), "
          f"{BATCH_SIZE} x {ROW_LEN} token batches, {args.workers} workers, up to {args.batches} timed batches after the first 1 + 2 x workers, "
          f"proxy cap {args.bandwidth_mb:g} MB/s; median of {args.repeats}")
    print(format_table(["contender", "ms", "cache", "M tokens/s", "vs local", "fastload x", "first batch s", "fetched/consumed",
                        "peak cache MB", "peak RSS MB", "note"], rows, align="lrlrrrrrrrl"))
    print()
    for epoch in (r for r in results if r["name"] == "epoch" and "error" not in r):
        print(f"epoch ({epoch['cache']}): fastload read {epoch['tokens']:,} tokens in {epoch['batches']} batches through a cache of {args.epoch_cache_fraction:.0%} "
              f"of its {dataset_bytes / 1e6:.1f} MB dataset; fetched {epoch['fetched_bytes'] / 1e6:.1f} MB in {epoch['requests']} requests = "
              f"{epoch['fetched_per_dataset_byte']:.3f}x the dataset's bytes, {epoch['fetched_per_consumed']:.3f}x the token bytes delivered")


if __name__ == "__main__":
    main()
