"""Token loaders: shuffled, packed batches of 16 x 1025 token ids from a ~200 MB real-text corpus.

    python bench/loader_tokens.py [--repeats 3] [--batches 3000] [--quick] [--only memmap,litdata-2]
                                  [--workers 0,1,2] [--corpus-mb 200] [--json bench/results/loader_tokens.json]
                                  [--plot bench/results/loader_tokens.png]

The task every contender does: deliver shuffled batches of 16 rows of 1025
token ids (a 1024-token training window plus the next token for the labels),
as int64 tensors, from `bench/.cache/corpus-200mb.jsonl` (built by
`fastload/assets/build_demo_corpus.py` through `bench/convert.py`'s
`ensure_corpus`), with 0, 1 and 2 workers (`--workers`; by default also 4, 8
and 16 where the machine has that many cores). Every contender uses the same
vocabulary, fastload's shipped `fastload/assets/tokenizer/tokenizer.json`
(16,384 ids, `<|endoftext|>` = 0 after each document), so token counts match.

  naive      torch DataLoader over the JSON Lines: a map-style dataset of line
             offsets, `json.loads` + HF `tokenizers` `encode` in `__getitem__`,
             and a packing `collate_fn` (`fastload.benchmark.collate`, the one
             `fastload bench` uses) that concatenates documents + EOS into
             16 rows of 1025. The sampler gives it 3 documents per step (the
             mean document is ~5,200 tokens: 0.95 of a batch); it tops up
             with random documents when short, and the rest carries over to
             the next batch of the same worker.
  memmap     nanoGPT: the corpus tokenized once into a flat uint16 `.bin`;
             item i is `torch.from_numpy(data[s:s + 1025].astype(np.int64))`
             with s = 1025 * i (the same non-overlapping rows as every other
             contender; shuffle=True makes the windows random).
  litdata    `litdata.optimize` of the token stream into chunks,
             `StreamingDataset(item_loader=TokensLoader(block_size=1025),
             shuffle=True, transform=<uint16 -> int64>)` + `StreamingDataLoader`.
  hf         Hugging Face `datasets`: 1025-token rows (a fixed-size list of
             uint16) saved with `save_to_disk`, `load_from_disk(...)
             .with_format("torch")` (which gives int64), torch DataLoader.
  mds        MosaicML Streaming: MDS shards of `ndarray:uint16:1025` rows,
             a `StreamingDataset(shuffle=True)` whose `__getitem__` returns
             the row as int64, torch DataLoader.
  fastload   `fastload.convert(corpus, out, tokenizer=Tokenizer.default())`
             (uncompressed, and lz4), then
             `fastload.DataLoader(fastload.PackedDataset(out, seq_len=1024),
             batch_size=16, num_workers=W, shuffle=True)`; and on-the-fly:
             a text-only conversion packed with
             `PackedDataset(out, seq_len=1024, tokenizer=Tokenizer.default())`
             (its token counts come from fastload's cache after the warm-up
             run; the first run ever tokenizes the corpus once to count). Its batch is
             a dict; `input_ids` (16, 1024) and `labels` hold the same
             1025-token windows.
  write-ref  one core writing the same int64 batches from a uint16 stream in
             RAM: `out[r] = tokens[s:s + 1025]` into a preallocated (16, 1025)
             int64 buffer, 16 random rows per batch. An upper bound for any
             loader that hands over int64 batches.

Each contender is a module of `bench/token_loaders/` (its preparation and its
loader factory; `token_loaders/__init__.py` lists them); this script runs and
measures them.

Preparation (tokenizing, converting) is not timed and is cached in
`bench/.cache/` beside a `*.stamp.json` that records the corpus size and
mtime and the tokenizer file's hash; a changed corpus or vocabulary rebuilds
it. The token stream is made with fastload's tokenizer (HF-identical ids, ten
times faster than HF's for this one-off step); the naive contender tokenizes
with HF `tokenizers` at run time, as its users would.

What is measured, per contender, in a child process of its own
(`_harness.run_child`), after one untimed warm-up run (which also warms the
page cache), `--repeats` times; the table gives the median and min-max:
  - M tokens/s: `--batches` batches after the first (default 3000 of the
    epoch's 3961, so every loader reads most of the corpus and pays its
    once-per-block costs; the naive loader, whose cost is per document and
    steady, 200), 16 x 1025 tokens each (the window of every row, for
    fastload as for the others), over the wall-clock time of the `next()`
    calls that delivered them;
  - M tok/s with first batch (with `--budget-s S`): the timed batches also
    stop S seconds after the loader was made, and this column counts every
    batch delivered, the first included, over the time since then: what a
    short run (the issue's 10 s budget) or a restart actually gets;
  - first batch s: from constructing the dataset object and the loader to the
    first batch in hand (workers start, files open, shuffles are planned);
  - main CPU / wall ms per batch: the training loop's share, as in
    `loader_generic.py`: `time.thread_time` (CPU of the calling thread; waiting
    for workers is not counted) and wall time spent inside `next()`, per batch,
    over `--consumer-batches` batches while the consumer sleeps 20 ms after each
    batch (a stand-in for a GPU step: the main thread waits, the cores are free);
  - peak PSS and peak RSS, MB: summed over the child and all its descendants
    (workers, their helpers), sampled about every 0.1 s off the clock. PSS
    counts pages shared between processes (a memory map, shared memory) once;
    RSS counts them once per process, so RSS overstates what mapped files cost.

MosaicML Streaming imports torchvision, which cannot load against the CPU
torch 2.13 here; as in `bench/convert.py`, the mds child stands in an empty
torchvision (the row says so). `StreamingDataset` never touches it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

_BENCH = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH)
from _harness import PeakMemory, child_main, default_workers, format_table, machine_info, ratio, run_child, status, write_json  # noqa: E402
import _plots  # noqa: E402  (imports matplotlib only when drawing)
# a module per contender; importing them loads no peer library (and `convert` takes bench/ off sys.path)
from token_loaders import CONTENDERS, REFERENCE, WORKER_COUNTS, reference  # noqa: E402
from token_loaders.prepare import BATCH_SIZE, CACHE, ROW_LEN, SEQ_LEN, TOKENS_PER_BATCH  # noqa: E402
from convert import CORPUS_MB, REPO, ensure_corpus  # noqa: E402

# bench/ holds modules named like the packages the peers import (bench/tokenizers.py vs HF `tokenizers`)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]

CONSUMER_STEP_S = 0.020  # the issue: a consumer spending 20 ms per step
# Contenders whose cost is the same for every batch (per-document Python work) are timed over fewer
# batches; the others over most of an epoch, so that what a loader pays once per block or page
# (first touch of the file, checksums, tokenizing a block) is in the figure as it is in training.
STEADY_BATCHES = {"naive": 200}
CHILD_TIMEOUT_S = 1800  # preparation of a cold cache (tokenize, optimize) runs in the child too


# ---------------------------------------------------------------- measuring (in the child)


def _ids(batch):
    """The (B, T) int64 token tensor of a batch: the batch itself, or a dict's `input_ids` (fastload, HF datasets)."""
    return batch["input_ids"] if isinstance(batch, dict) else batch


def _check(batch, name: str) -> str:
    import torch

    ids = _ids(batch)
    shape = tuple(ids.shape)
    expected = (BATCH_SIZE, SEQ_LEN) if name.startswith("fastload") else (BATCH_SIZE, ROW_LEN)
    if shape != expected or ids.dtype != torch.int64:
        raise RuntimeError(f"{name}: a batch is {shape} {ids.dtype}, expected {expected} int64")
    if int(ids.min()) < 0 or int(ids.max()) >= 1 << 14:
        raise RuntimeError(f"{name}: token ids outside the 16,384-id vocabulary: [{int(ids.min())}, {int(ids.max())}]")
    return f"{tuple(shape)} {ids.dtype}"


def _one_run(make: Callable[[], object], name: str, *, batches: int, consumer_batches: int, budget_s: float | None = None) -> dict:
    peak = PeakMemory()
    started = constructed = time.perf_counter()
    loader = make()
    iterator = iter(loader)
    batch = next(iterator)
    first_batch_s = time.perf_counter() - started
    shape = _check(batch, name)
    del batch
    peak.sample(force=True)
    sampling_s = 0.0
    started = time.perf_counter()
    timed = 0
    for _ in range(batches):
        batch = next(iterator)
        del batch
        timed += 1
        sampling_s += peak.sample()
        if budget_s is not None and time.perf_counter() - constructed - sampling_s >= budget_s:
            break  # the budget counts from the loader's construction: the first batch's wait is in it
    elapsed = time.perf_counter() - started - sampling_s
    since_constructed = time.perf_counter() - constructed - sampling_s

    cpu_s = wall_s = 0.0
    for _ in range(consumer_batches):
        c0, w0 = time.thread_time(), time.perf_counter()
        batch = next(iterator)
        cpu_s += time.thread_time() - c0
        wall_s += time.perf_counter() - w0
        step_ends = time.perf_counter() + CONSUMER_STEP_S  # the training step: the main thread waits
        del batch
        peak.sample()
        time.sleep(max(0.0, step_ends - time.perf_counter()))
    peak.sample(force=True)
    del iterator, loader  # shuts the workers down before the next run
    return {
        "tokens_per_s": timed * TOKENS_PER_BATCH / elapsed,
        "budget_tokens_per_s": (timed + 1) * TOKENS_PER_BATCH / since_constructed,  # first batch included
        "first_batch_s": first_batch_s,
        "main_cpu_ms_per_batch": 1e3 * cpu_s / max(1, consumer_batches),
        "main_wall_ms_per_batch": 1e3 * wall_s / max(1, consumer_batches),
        "peak_pss_mb": peak.pss_mb,
        "peak_rss_mb": peak.rss_mb,
        "batch": shape,
    }


def _summary(runs: list[dict]) -> dict:
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0] if isinstance(runs[0][key], float)}
    out["tokens_per_s_min"] = min(r["tokens_per_s"] for r in runs)
    out["tokens_per_s_max"] = max(r["tokens_per_s"] for r in runs)
    for key in ("peak_pss_mb", "peak_rss_mb"):  # None without /proc
        out[key] = max((r[key] for r in runs if r[key] is not None), default=None)
    out["batch"] = runs[0]["batch"]
    out["runs"] = runs
    return out


def child(name: str, corpus: Path, *, warmup: int, repeats: int, batches: int, consumer_batches: int, budget_s: float | None = None) -> dict:
    import gc
    import warnings

    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    if name == REFERENCE:
        return reference.write_reference(corpus, repeats=repeats)
    contender = CONTENDERS[name]
    note = contender.setup() if contender.setup else None  # what it had to do to run (a stubbed import)
    make = contender.build(corpus, contender.workers)  # preparation, untimed
    batches = min(batches, STEADY_BATCHES.get(contender.family, batches))
    runs = []
    for i in range(warmup + repeats):
        run = _one_run(make, name, batches=batches, consumer_batches=consumer_batches, budget_s=budget_s)
        gc.collect()
        if i >= warmup:
            runs.append(run)
    return {**_summary(runs), "note": note, "versions": _versions()}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("fastload", "torch", "numpy", "tokenizers", "litdata", "datasets", "mosaicml-streaming"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


# ---------------------------------------------------------------- the parent


def _select(only: str | None, workers: list[int]) -> list[str]:
    names = [n for n, c in CONTENDERS.items() if c.workers in workers] + [REFERENCE]
    if not only:
        return names
    chosen = []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        matches = [n for n in names if n == item or (n in CONTENDERS and CONTENDERS[n].family == item)]
        if not matches:
            families = sorted({c.family for c in CONTENDERS.values()})
            raise SystemExit(f"--only: unknown name {item!r}; valid: {', '.join(names)} (or a family: {', '.join(families)})")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _table(results: list[dict]) -> str:
    memmap = {r["workers"]: r["tokens_per_s"] for r in results if r["name"].startswith("memmap-") and "tokens_per_s" in r}
    notes: list[str] = []

    def mark(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    rows = []
    for r in results:
        workers = "" if r["workers"] is None else str(r["workers"])
        if "error" in r:  # a peer that is not installed or failed stays in the table; the error goes to a footnote
            rows.append([r["label"], workers, status(r), "", "", "", "", "", "", "", mark(_one_line(r["error"]))])
            continue
        mtok = f"{r['tokens_per_s'] / 1e6:.2f} ({r['tokens_per_s_min'] / 1e6:.2f}-{r['tokens_per_s_max'] / 1e6:.2f})"
        note = mark(r["note"]) if r.get("note") else ""
        if r["name"] == REFERENCE:
            rows.append([r["label"], "", mtok, "", "", "", "", "", "", "", note])
            continue
        rows.append(
            [
                r["label"],
                workers,
                mtok,
                ratio(r["tokens_per_s"], memmap.get(r["workers"])),
                f"{r['budget_tokens_per_s'] / 1e6:.2f}" if "budget_tokens_per_s" in r else "",
                f"{r['first_batch_s']:.2f}",
                f"{r['main_cpu_ms_per_batch']:.2f}",
                f"{r['main_wall_ms_per_batch']:.2f}",
                "" if r["peak_pss_mb"] is None else f"{r['peak_pss_mb']:.0f}",
                "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}",
                note,
            ]
        )
    header = ["contender", "workers", "M tok/s (min-max)", "vs memmap", "M tok/s with first batch", "first batch s", "main CPU ms/batch", "main wall ms/batch", "peak PSS MB", "peak RSS MB", "note"]
    table = format_table(header, rows, align="lrrrrrrrrrl")
    if notes:
        table += "\n\n" + "\n".join(f"[{i + 1}] {n}" for i, n in enumerate(notes))
    return table


def _one_line(text: str, limit: int = 200) -> str:
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender, after a warm-up run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batches", type=int, default=3000, help="batches timed for M tok/s, after the first (most of an epoch)")
    parser.add_argument("--consumer-batches", type=int, default=50, help="batches with a 20 ms consumer step, for main ms/batch")
    parser.add_argument("--quick", action="store_true", help="300 batches (three quarters of the epoch of a 20 MB corpus), 20 consumer batches, 1 repeat")
    parser.add_argument("--workers", default=",".join(map(str, default_workers())),
                        help=f"comma-separated worker counts, from {', '.join(map(str, WORKER_COUNTS))} (default: 0,1,2 and up to the cores here)")
    parser.add_argument("--plot", type=Path, default=None, help="also draw throughput per contender and a scaling plot over num_workers into this PNG")
    parser.add_argument("--only", default=None, help=f"comma-separated names or families: {', '.join(list(CONTENDERS) + [REFERENCE])}")
    parser.add_argument("--corpus", type=Path, default=None, help=f"JSON Lines with a 'text' field (default: build bench/.cache/corpus-{CORPUS_MB}mb.jsonl)")
    parser.add_argument("--corpus-mb", type=float, default=CORPUS_MB, help="size of the corpus to build when --corpus is not given")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results (default: bench/results/loader_tokens[-quick].json)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop each run's timed batches this many seconds after the loader was made (the first batch's wait counts); adds the column 'M tok/s in budget'")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batches, args.consumer_batches, args.repeats = 300, 20, 1
    if args.repeats < 1 or args.warmup < 0 or args.batches < 1 or args.consumer_batches < 0:
        parser.error("need --repeats >= 1, --warmup >= 0, --batches >= 1, --consumer-batches >= 0")
    corpus = args.corpus or CACHE / f"corpus-{args.corpus_mb:g}mb.jsonl"

    if args.child:
        child_main(lambda: child(args.child, corpus, warmup=args.warmup, repeats=args.repeats, batches=args.batches, consumer_batches=args.consumer_batches, budget_s=args.budget_s))
        return

    try:
        workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        workers = []
    if not workers or not set(workers) <= set(WORKER_COUNTS):
        parser.error(f"--workers takes comma-separated counts from {', '.join(map(str, WORKER_COUNTS))}; found {args.workers!r}")
    names = _select(args.only, workers)
    if args.corpus is None:
        ensure_corpus(corpus, args.corpus_mb)
    env = {
        **os.environ,
        "LITDATA_DISABLE_VERSION_CHECK": "1",  # no network call in a timing
        "TOKENIZERS_PARALLELISM": "false",  # HF tokenizers in forked workers: one thread each, no warning
        "HF_HOME": str(CACHE / "hf-home"),
        "HF_DATASETS_OFFLINE": "1",
    }
    machine = machine_info()
    print(f"corpus {corpus} ({corpus.stat().st_size / 1e6:.1f} MB); batches {BATCH_SIZE} x {ROW_LEN}; warm-up {args.warmup}, "
          f"repeats {args.repeats}, {args.batches} batches timed, {args.consumer_batches} with a 20 ms consumer; "
          f"{machine['cpus']} CPUs, load average {machine['load_average_1m']}", file=sys.stderr, flush=True)
    results = []
    for name in names:
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--corpus", str(corpus), "--warmup", str(args.warmup),
                "--repeats", str(args.repeats), "--batches", str(args.batches), "--consumer-batches", str(args.consumer_batches)]
        if args.budget_s is not None:
            argv += ["--budget-s", str(args.budget_s)]
        started = time.perf_counter()
        result = run_child(argv, timeout_s=CHILD_TIMEOUT_S, env=env)
        contender = CONTENDERS.get(name)
        label = contender.label if contender else reference.LABEL
        results.append({"name": name, "label": label, "workers": contender.workers if contender else None, "status": status(result), **result})
        shown = status(result) if "error" in result else f"{result['tokens_per_s'] / 1e6:.2f} M tok/s"
        print(f"  {name:<16} {shown} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    stamp = CACHE / f"{corpus.stem}.tokens-u16.bin.stamp.json"
    meta = json.loads(stamp.read_text()) if stamp.exists() else {}
    print(f"\nloader_tokens: shuffled (16, 1025) int64 batches from {corpus.name}"
          + (f" ({meta['num_tokens']:,} tokens, {meta['num_docs']:,} documents)" if meta.get("num_tokens") else "")
          + f"; median of {args.repeats} after {args.warmup} warm-up; M tok/s over {args.batches} batches after the first; "
          f"main ms/batch over {args.consumer_batches} batches with a 20 ms consumer step; peak memory summed over the process tree\n")
    print(_table(results))
    print(f"\nload average (1 min) {machine['load_average_1m']} at the start, {machine['load_average_1m_at_end']} at the end on {machine['cpus']} CPUs")
    out = args.json or REPO / "bench" / "results" / ("loader_tokens-quick.json" if args.quick else "loader_tokens.json")
    write_json(out, {"benchmark": "loader_tokens", "machine": machine, "corpus": str(corpus), "tokens": meta, "repeats": args.repeats,
                     "warmup": args.warmup, "batches": args.batches, "consumer_batches": args.consumer_batches, "results": results})
    print(f"\nwrote {out}", file=sys.stderr)
    if args.plot:
        _plots.loader_tokens(json.loads(out.read_text()), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
