"""Mixtures: what mixing costs, how exact it is, and how cheap its state is.

    python bench/mixture.py [--corpus-mb 200] [--batches 1500] [--repeats 3] [--workers 2]

The ~200 MB real-text corpus of `bench/convert.py`, split by its `kind`
field into three sources (code, English prose — Debian docs and man pages —
and translations: other languages), each converted once with the default
tokenizer into `bench/.cache/mixture/` (and the whole corpus as one dataset,
for the single-dataset baseline). Weights 0.5 / 0.3 / 0.2, packed batches of
16 x 1025 tokens, `--workers` loader workers. Each contender runs in a child
process of its own, after a warm-up, as the median of `--repeats` runs.

1. Throughput, CPU per batch and time to first batch: fastload's mixture
   against fastload on the one combined dataset (the cost of mixing; goal:
   < 5%). CPU per batch is the user + system time of the loader's whole
   process tree (training process and workers, from /proc) over the timed
   batches: on a shared machine it resolves a few percent where tokens/s
   (wall clock) swings by tens.
2. Exactness over the first `--exact-batches` global batches of the order:
   the largest deviation of any source's row count from weight x rows, over
   every prefix of whole batches and over every prefix of rows (goal: ≤ 1 row
   at every prefix of batches), and the spread of rows per batch.
3. State: `state_dict()` size (JSON bytes) and `load_state_dict` + the first
   batch's plan at global batch 10^6 (goal: load < 10 ms).

The peers on the same three sources: LitData `CombinedStreamingDataset(
weights=...)` over `StreamingDataset(item_loader=TokensLoader(1025))` chunks,
and MosaicML `StreamingDataset(streams=[Stream(proportion=...)])` over MDS
rows (both built once from each kind's token stream, as in
`bench/loader_tokens.py`; rows of 1025 tokens, not packed documents with
EOS, as those libraries' recipes do). Each row is tagged with its source, so
every contender's deviation from the weights is measured on the batches it
delivered (`pip install -r bench/requirements.txt` for the peers; a peer
that is not installed is a row that says so).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH)
from _harness import PeakMemory, child_main, tree_cpu_seconds, format_table, machine_info, ratio, run_child, write_json  # noqa: E402
from token_loaders.litdata_chunks import litdata_chunks  # noqa: E402  (loads no peer library until called)
from token_loaders.mds_shards import import_streaming, mds_shards  # noqa: E402
from token_loaders.prepare import ROW_LEN, to_int64  # noqa: E402
from convert import CACHE, ensure_corpus  # noqa: E402

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]

WEIGHTS = {"code": 0.5, "prose": 0.3, "translation": 0.2}
BATCH_SIZE, SEQ_LEN = 16, 1024
CHILD_TIMEOUT_S = 1800
LITDATA, MOSAIC = "litdata CombinedStreamingDataset", "mosaicml Stream(proportion=)"


def _datasets(corpus: Path) -> dict[str, Path]:
    """Each kind of the corpus, and the whole corpus, as tokenized fastload datasets (built once)."""
    import fastload

    root = CACHE / "mixture" / corpus.stem
    paths = {kind: root / kind for kind in WEIGHTS} | {"all": root / "all"}
    if all((p / "index.json").exists() for p in paths.values()):
        return paths
    rows = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    for kind in WEIGHTS:
        fastload.convert((r for r in rows if r["kind"] == kind), paths[kind], tokenizer="default", overwrite=True, quiet=True)
    fastload.convert(corpus, paths["all"], tokenizer="default", overwrite=True, quiet=True)
    return paths


def _kind_corpora(corpus: Path) -> dict[str, Path]:
    """The corpus split by kind into JSON Lines files of their own (the peers' builders take a corpus file)."""
    paths = {kind: CACHE / f"{corpus.stem}-{kind}.jsonl" for kind in WEIGHTS}
    if not all(p.exists() for p in paths.values()):
        handles = {kind: open(paths[kind].with_suffix(".tmp"), "w", encoding="utf-8") for kind in WEIGHTS}
        with open(corpus, encoding="utf-8") as f:
            for line in f:
                handles[json.loads(line)["kind"]].write(line)
        for kind, handle in handles.items():
            handle.close()
            paths[kind].with_suffix(".tmp").rename(paths[kind])
    return paths


def _tagged(source: int, tokens):
    """A peer's row with the index of the source it came from (module-level: it pickles into workers)."""
    return {"input_ids": to_int64(tokens), "source": source}


def _litdata_loader(corpus: Path, workers: int):
    import functools

    from litdata import CombinedStreamingDataset, StreamingDataLoader, StreamingDataset, TokensLoader

    chunks = {kind: litdata_chunks(path) for kind, path in _kind_corpora(corpus).items()}  # built once, cached
    datasets = [StreamingDataset(str(chunks[kind]), item_loader=TokensLoader(block_size=ROW_LEN), shuffle=True, transform=functools.partial(_tagged, i))
                for i, kind in enumerate(WEIGHTS)]
    combined = CombinedStreamingDataset(datasets, weights=list(WEIGHTS.values()), seed=0, iterate_over_all=False)
    return StreamingDataLoader(combined, batch_size=BATCH_SIZE, num_workers=workers)


def _mosaic_loader(corpus: Path, workers: int):
    import torch
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    shards = {kind: mds_shards(path) for kind, path in _kind_corpora(corpus).items()}
    clean_stale_shared_memory()

    class Tagged(StreamingDataset):
        def __getitem__(self, idx):
            shard, _ = self.spanner[idx]
            return _tagged(int(self.stream_per_shard[shard]), super().__getitem__(idx)["input_ids"])

    streams = [Stream(local=str(shards[kind]), proportion=w) for kind, w in WEIGHTS.items()]
    dataset = Tagged(streams=streams, shuffle=True, batch_size=BATCH_SIZE)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)


def _loader(name: str, paths: dict[str, Path], workers: int, corpus: Path):
    import fastload

    if name == LITDATA:
        return _litdata_loader(corpus, workers)
    if name == MOSAIC:
        return _mosaic_loader(corpus, workers)
    if name == "fastload one dataset":
        packed = fastload.PackedDataset(paths["all"], seq_len=SEQ_LEN)
    else:
        packed = fastload.PackedDataset(fastload.Mixture({kind: (paths[kind], w) for kind, w in WEIGHTS.items()}), seq_len=SEQ_LEN)
    return fastload.DataLoader(packed, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)


def child_throughput(name: str, corpus: Path, *, workers: int, batches: int, warmup: int, repeats: int) -> dict:
    note = import_streaming() if name == MOSAIC else None
    paths = _datasets(corpus)
    if name in (LITDATA, MOSAIC):  # the peer's files, built once from each kind's token stream (untimed)
        build = litdata_chunks if name == LITDATA else mds_shards
        for path in _kind_corpora(corpus).values():
            build(path)
    # The untimed warm-up runs (at least one) count each batch's rows per source; the timed runs only take
    # batches: counting there (three torch comparisons and sums, ~11 µs a batch) was charged to the mixture.
    untimed = max(warmup, 1)
    runs, counts = [], []
    for i in range(untimed + repeats):
        peak = PeakMemory()
        started = time.perf_counter()
        iterator = iter(_loader(name, paths, workers, corpus))
        batch = next(iterator)
        first = time.perf_counter() - started
        if i < untimed:
            counts = [_source_counts(batch)] + [_source_counts(next(iterator)) for _ in range(batches)]
            del iterator, batch
            gc.collect()
            continue
        cpu_before = tree_cpu_seconds()
        started = time.perf_counter()
        for _ in range(batches):
            batch = next(iterator)
        elapsed = time.perf_counter() - started
        cpu = None if cpu_before is None else tree_cpu_seconds() - cpu_before
        peak.sample(force=True)
        del iterator, batch
        gc.collect()  # MosaicML allows one StreamingDataset per local folder at a time: the last one must be gone
        runs.append({"tokens_per_s": batches * BATCH_SIZE * (SEQ_LEN + 1) / elapsed, "first_batch_s": first, "peak_pss_mb": peak.pss_mb,
                     "cpu_us_per_batch": None if cpu is None else 1e6 * cpu / batches})
    deviation = _deviation(counts) if counts and counts[0] is not None else None
    return {
        "note": note,
        "deviation": deviation,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "tokens_per_s_min": min(r["tokens_per_s"] for r in runs),
        "tokens_per_s_max": max(r["tokens_per_s"] for r in runs),
        "first_batch_s": statistics.median(r["first_batch_s"] for r in runs),
        "cpu_us_per_batch": statistics.median(r["cpu_us_per_batch"] for r in runs) if runs[0]["cpu_us_per_batch"] is not None else None,
        "peak_pss_mb": max((r["peak_pss_mb"] for r in runs if r["peak_pss_mb"] is not None), default=None),
    }


def _cpu(us: float | None) -> str:
    return "" if us is None else f"{us:.0f}"


def _source_counts(batch) -> list[int] | None:
    source = batch.get("source") if isinstance(batch, dict) else None
    if source is None:
        return None
    return [int((source == s).sum()) for s in range(len(WEIGHTS))]


def _deviation(counts: list[list[int]]) -> dict:
    """The largest |rows of a source − weight × rows| over every prefix of whole batches, and the spread of rows per batch."""
    import numpy as np

    per_batch = np.array(counts)
    weights = np.array(list(WEIGHTS.values()))
    delivered = np.cumsum(per_batch, axis=0)
    n = np.arange(1, len(per_batch) + 1)[:, None] * BATCH_SIZE
    return {
        "max_deviation_batch_prefix_rows": float(np.abs(delivered - n * weights).max()),
        "rows_per_batch": {k: [int(per_batch[:, i].min()), int(per_batch[:, i].max())] for i, k in enumerate(WEIGHTS)},
        "batches": len(per_batch),
    }


def child_exactness(corpus: Path, *, exact_batches: int) -> dict:
    """Deviation of every source's count from its share over prefixes of the order (computed from the plan: no data read)."""
    import numpy as np

    import fastload

    paths = _datasets(corpus)
    mix = fastload.Mixture({kind: (paths[kind], w) for kind, w in WEIGHTS.items()})
    packed = fastload.PackedDataset(mix, seq_len=SEQ_LEN)
    sampler = packed.batch_sampler(BATCH_SIZE)
    layout = sampler.plan.layout
    weights = np.array([float(mix.weights[k]) for k in mix.names])
    delivered = np.zeros(len(weights))
    worst_batches = worst_rows = 0.0
    per_batch = []
    for t in range(exact_batches):
        source, _, _ = layout.columns(t)
        counts = np.bincount(source, minlength=len(weights))
        per_batch.append(counts)
        inside = delivered[None, :] + np.cumsum(np.eye(len(weights))[source], axis=0)
        n = t * BATCH_SIZE + np.arange(1, BATCH_SIZE + 1)
        worst_rows = max(worst_rows, float(np.abs(inside - n[:, None] * weights).max()))
        delivered += counts
        worst_batches = max(worst_batches, float(np.abs(delivered - (t + 1) * BATCH_SIZE * weights).max()))
    per_batch = np.array(per_batch)

    # the state at global batch 10^6, and loading it
    sampler.samples_consumed = 10**6 * BATCH_SIZE - sampler.epoch_batches * BATCH_SIZE * (10**6 // sampler.epoch_batches)
    sampler.epoch = 10**6 // sampler.epoch_batches
    state = sampler.state_dict()
    size = len(json.dumps(state).encode())
    fresh = packed.batch_sampler(BATCH_SIZE)
    loads = []
    for _ in range(20):
        started = time.perf_counter()
        fresh.load_state_dict(state)
        key = next(iter(fresh))
        fresh.plan.pieces(key.batch, 0, BATCH_SIZE)
        loads.append(time.perf_counter() - started)
    return {
        "max_deviation_batch_prefix_rows": worst_batches,
        "max_deviation_row_prefix_rows": worst_rows,
        "rows_per_batch": {k: [int(per_batch[:, i].min()), int(per_batch[:, i].max())] for i, k in enumerate(mix.names)},
        "state_bytes": size,
        "load_state_ms_at_1e6": 1e3 * statistics.median(loads),
        "period_batches": layout.period,
        "batches_checked": exact_batches,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus-mb", type=float, default=200)
    p.add_argument("--batches", type=int, default=1500, help="timed batches per run (the 200 MB corpus packs ~3,960)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (at least one: it counts the rows of each source)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--exact-batches", type=int, default=20_000)
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here (bench/run_all.py reads it)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    corpus = CACHE / f"corpus-{args.corpus_mb:g}mb.jsonl"
    if args.child == "exactness":
        child_main(lambda: child_exactness(corpus, exact_batches=args.exact_batches))
        return
    if args.child:
        child_main(lambda: child_throughput(args.child, corpus, workers=args.workers, batches=args.batches, warmup=args.warmup, repeats=args.repeats))
        return

    ensure_corpus(corpus, args.corpus_mb)
    base = [sys.executable, __file__, "--corpus-mb", f"{args.corpus_mb:g}", "--batches", str(args.batches), "--warmup", str(args.warmup),
            "--repeats", str(args.repeats), "--workers", str(args.workers), "--exact-batches", str(args.exact_batches)]
    run_child([*base, "--child", "exactness"], timeout_s=CHILD_TIMEOUT_S)  # builds the datasets, untimed
    results = {}
    for name in ("fastload one dataset", "fastload mixture", LITDATA, MOSAIC):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results[name] = run_child([*base, "--child", name], timeout_s=CHILD_TIMEOUT_S)
    exact = run_child([*base, "--child", "exactness"], timeout_s=CHILD_TIMEOUT_S)

    baseline = results["fastload one dataset"].get("tokens_per_s")
    cpu_baseline = results["fastload one dataset"].get("cpu_us_per_batch")
    rows = []
    for name, r in results.items():
        if "error" in r:
            status = "not installed" if "No module named" in r["error"] else "FAILED"
            rows.append([name, status, "", "", "", "", "", "", "", r["error"][:80]])
            continue
        dev = r.get("deviation") or {}
        rows.append([name, f"{r['tokens_per_s'] / 1e6:.1f} ({r['tokens_per_s_min'] / 1e6:.1f}-{r['tokens_per_s_max'] / 1e6:.1f})",
                     ratio(r["tokens_per_s"], baseline), _cpu(r.get("cpu_us_per_batch")), ratio(r.get("cpu_us_per_batch"), cpu_baseline) if r.get("cpu_us_per_batch") else "",
                     f"{r['first_batch_s']:.2f}", f"{r['peak_pss_mb'] or 0:.0f}",
                     f"{dev['max_deviation_batch_prefix_rows']:.1f}" if dev else "-",
                     " ".join(f"{lo}-{hi}" for lo, hi in dev["rows_per_batch"].values()) if dev else "-", (r.get("note") or "")[:60]])
    print(f"Mixture {WEIGHTS} of the {args.corpus_mb:g} MB corpus, {BATCH_SIZE} x {SEQ_LEN + 1} packed batches, {args.workers} workers, "
          f"median of {args.repeats} (min-max); deviation: the largest |rows of a source - weight x rows| over the prefixes of the "
          f"{args.batches + 1} batches of the (untimed) warm-up run")
    print(format_table(["contender", "M tokens/s", "vs one dataset", "CPU µs/batch", "vs one dataset", "first batch s", "peak PSS MB", "max deviation", "rows/batch", "note"], rows))
    if "error" in exact:
        print(f"exactness: FAILED: {exact['error']}")
    else:
        print(f"\nexactness over {exact['batches_checked']:,} batches (the order's period: {exact['period_batches']} batches): "
              f"largest deviation {exact['max_deviation_batch_prefix_rows']:.3f} rows at prefixes of whole batches, "
              f"{exact['max_deviation_row_prefix_rows']:.3f} at prefixes of rows; rows per batch {exact['rows_per_batch']}")
        print(f"state at global batch 10^6: {exact['state_bytes']:,} bytes of JSON; load_state_dict + the first batch's plan "
              f"{exact['load_state_ms_at_1e6']:.2f} ms")
    if args.json:
        rows = [{"name": name, "value": r["tokens_per_s"] / 1e6 if "tokens_per_s" in r else None, "unit": "M tokens/s", "workers": args.workers,
                 "baseline": name == "fastload one dataset", **r} for name, r in results.items()]
        write_json(args.json, {"machine": machine_info(), "results": rows, "exactness": exact, "args": vars(args) | {"json": str(args.json)}})


if __name__ == "__main__":
    main()
