"""The `fastload` command line: convert | inspect | verify | demo | bench | train.

The only module that writes to stdout. Each subcommand is a thin layer over
the Python API with the same option names (`--shard-bytes` ↔ `shard_bytes`);
a `FastloadError` becomes a one-line message on stderr and exit status 1,
anything else keeps its traceback because it is a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastload.errors import ConfigError, FastloadError

__all__ = ["main"]


def _size(text: str) -> int:
    """'128MiB', '1MB', '65536' -> bytes."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            number = lowered[: -len(suffix)].strip()
            break
    else:
        number, factor = lowered, 1
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (examples: 65536, 1MiB, 128MB)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _add_convert(sub) -> None:
    from fastload.format.writer import WriteOptions

    p = sub.add_parser("convert", help="convert jsonl/parquet/csv/text/arrow files into a fastload dataset")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns (quote globs), local or URLs (s3://bucket/corpus/, 'gs://b/**/*.jsonl.gz', az://, https://)")
    p.add_argument("-o", "--out", required=True, help="output dataset folder, or a URL (s3://bucket/prefix, gs://, az://): shards are "
                                                     "staged in a temporary folder ($TMPDIR), uploaded one by one, index.json last")
    p.add_argument("--columns", help="comma-separated fields to keep (default: all)")
    p.add_argument("--text-field", default="text", help="the text field (tokenized with --tokenizer; named so for text files)")
    p.add_argument("--tokenizer", help="tokenize the text field into a `tokens` column: 'default', 'bytes', or a tokenizer.json / .tiktoken path; "
                                       "the text field itself is then dropped unless --keep-text")
    p.add_argument("--keep-text", action="store_true", help="with --tokenizer: keep the text field next to the tokens (by default it is dropped)")
    p.add_argument("--format", dest="input_format", help="input format when the file names do not say (jsonl, parquet, csv, text, arrow)")
    p.add_argument(
        "--text-lines",
        action="store_true",
        help="text files hold one document per line (default: one per file); rows from text files also get a "
        "'source_file' column naming their file, relative to the folder or glob given (drop it with --columns)",
    )
    p.add_argument("--shard-bytes", type=_size, default=WriteOptions.shard_bytes, help="target shard size (default 128MiB)")
    p.add_argument("--block-bytes", type=_size, default=WriteOptions.block_bytes, help="target block size (default 1MiB)")
    p.add_argument("--block-rows", type=int, help="exact rows per block (overrides --block-bytes)")
    p.add_argument("--compression", choices=["none", "lz4", "zstd"], default="none")
    p.add_argument("--partition-bytes", type=_size, help="input converted by one task into shards of its own (default 8 x --shard-bytes); "
                                                          "uncompressed JSON Lines and --text-lines files are cut at a line end")
    p.add_argument("--workers", type=int, help="parallel threads per partition (default: cores, at most 4; with --engine ray also the "
                                               "Ray CPUs each task asks for); output is identical for any value")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local: this process converts partition after "
                   "partition; ray: a Ray task per partition (pip install 'fastload[ray]'); both write the same bytes")
    p.add_argument("--ray-address", help="with --engine ray: the cluster to connect to (default: the one ray.init() finds, or a new local one)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail", help="bad input lines: stop (default) or skip and count")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in the output folder (for a URL, the old "
                                                               "dataset stops being readable when the conversion starts writing shards)")
    p.add_argument("--resume", action="store_true", help="rerun a conversion that was killed into the same folder: partitions it "
                                                          "finished whose shards still match their CRC-32 are not converted again")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def _run_convert(args) -> int:
    from fastload.convert import convert

    result = convert(
        args.inputs,
        args.out,
        columns=[c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None,
        text_field=args.text_field,
        tokenizer=args.tokenizer,
        keep_text=args.keep_text,
        input_format=args.input_format,
        text_lines=args.text_lines,
        shard_bytes=args.shard_bytes,
        block_bytes=args.block_bytes,
        block_rows=args.block_rows,
        compression=args.compression,
        partition_bytes=args.partition_bytes,
        workers=args.workers,
        engine=args.engine,
        ray_address=args.ray_address,
        on_error=args.on_error,
        overwrite=args.overwrite,
        resume=args.resume,
        quiet=args.quiet,
    )
    if not args.quiet:
        print(result)
    return 0


def _run_inspect(args) -> int:
    from fastload.format.reader import Dataset

    ds = Dataset(args.dataset)
    index = ds.index
    samples = [ds[i] for i in range(min(args.rows, len(ds)))]
    if args.json:
        out = index.to_json()
        out.pop("shards")
        out["shards"] = [{k: v for k, v in s.to_json().items() if k != "blocks"} | {"num_blocks": s.num_blocks} for s in index.shards]
        out["sample_rows"] = [{k: _jsonable(v) for k, v in row.items()} for row in samples]
        print(json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(f"dataset      {ds.path}")
    print(f"rows         {ds.num_rows:,}   blocks {ds.num_blocks:,}   shards {len(index.shards):,}")
    print(f"bytes        {index.num_bytes:,} ({index.compression})   created by {index.created_by or '?'}")
    if index.num_skipped_rows:
        print(f"skipped      {index.num_skipped_rows:,} input rows")
    if index.tokenizer:
        print(f"tokenizer    {index.tokenizer.get('fingerprint', '?')[:16]}  vocab {index.tokenizer.get('vocab_size')}")
    print("\ncolumns")
    for column in ds.schema:
        shape = f" {list(column.shape)}" if column.shape else ""
        print(f"  {column.name:<20} {column.kind:<8} {column.dtype}{shape}")
        stats = ds.stats.get(column.name, {})
        print(f"  {'':<20} {_stats_line(stats)}")
    print("\nshards")
    for info in index.shards[:10]:
        print(f"  {info.file}  {info.num_rows:>12,} rows  {info.num_blocks:>6,} blocks  {info.num_bytes:>14,} bytes")
    if len(index.shards) > 10:
        print(f"  ... {len(index.shards) - 10} more")
    print("\nsample rows")
    for i, row in enumerate(samples):
        shown = {k: _preview(v) for k, v in row.items()}
        print(f"  [{i}] {shown}")
    print(f"\nchecked      index.json, shard sizes and the {len(samples)} rows shown; "
          f"'fastload verify {args.dataset}' checks every block's checksum")
    return 0


def _stats_line(stats: dict) -> str:
    if "tokens" in stats or "bytes" in stats:
        unit = "tokens" if "tokens" in stats else "bytes"
        return (
            f"{stats.get('documents', 0):,} docs, {stats.get(unit, 0):,} {unit}, length "
            f"{stats.get('min_length')}..{stats.get('max_length')} (mean {_num(stats.get('mean_length'))})"
        )
    return (
        f"count {stats.get('count', 0):,}, mean {_num(stats.get('mean'))}, std {_num(stats.get('std'))}, "
        f"min {_num(stats.get('min'))}, max {_num(stats.get('max'))}, nulls {stats.get('null_count', 0):,}, NaN {stats.get('nan_count', 0):,}"
    )


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def _preview(value, limit: int = 60):
    import numpy as np

    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"... ({len(value):,} chars)"
    if isinstance(value, np.ndarray):
        head = np.array2string(value.reshape(-1)[:8], separator=",")
        return f"array{list(value.shape)} {value.dtype} {head}"
    if isinstance(value, bytes):
        return value[:limit] + (b"..." if len(value) > limit else b"")
    return value


def _jsonable(value):
    import math

    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, bytes):
        return value.hex()
    return value


def _run_verify(args) -> int:
    from fastload.format.verify import verify_dataset

    problems = verify_dataset(args.dataset)
    if problems:
        for problem in problems:
            print(f"BAD  {problem}")
        print(f"{len(problems)} problem(s) in {args.dataset}; re-create the dataset with 'fastload convert'.")
        return 1
    print(f"OK   {args.dataset}: every shard and block matches its checksum")
    return 0


def _run_demo(args) -> int:
    from fastload.convert import convert
    from fastload.demo import demo_corpus_path

    out = Path(args.out)
    print(f"converting the shipped demo corpus ({demo_corpus_path().name}) into {out} ...")
    tokenizer = None if args.tokenizer == "none" else args.tokenizer
    result = convert(demo_corpus_path(), out, overwrite=True, workers=args.workers, quiet=False, tokenizer=tokenizer, keep_text=True)
    print(result)
    return 0


def _add_train(sub) -> None:
    from fastload.train.flags import add_config_flags  # torch-free: the flags are read from TrainConfig's source

    p = sub.add_parser("train", help="train a small GPT on a tokenized dataset; report tokens/s and the time spent waiting for data",
                       description="Train a GPT on a fastload dataset (under torchrun: one process per rank). Flags are TrainConfig fields; "
                                   "one left out keeps TrainConfig's default (None in the help: what leaving it out means).")
    p.add_argument("dataset", nargs="?", help="a fastload dataset, or a mixture's .toml file ([sources.NAME] tables with path and weight)")
    p.add_argument("--mix", nargs="+", metavar="NAME=PATH:WEIGHT",
                   help="train on a mixture instead of one dataset, e.g. --mix web=data/web:0.6 code=data/code:0.3 books=data/books:0.1 "
                        "(append :stop to end the run when that source has been read whole)")
    add_config_flags(p)
    p.add_argument("--sweep", nargs="+", metavar="NAME=V1,V2", help="train every combination (e.g. lr=3e-4,1e-3 batch_size=8,16, or a .toml file) and rank by validation loss")


def _data_argument(args, what: str):
    """The dataset argument, a mixture's .toml file, or --mix words."""
    from fastload.sampler import Mixture

    if args.mix:
        if args.dataset is not None:
            raise ConfigError(f"give either a dataset ({args.dataset!r}) or --mix, not both")
        return Mixture.parse(args.mix)
    if args.dataset is None:
        raise ConfigError(f"name the dataset to {what} (a folder, or a mixture's .toml file), or a mixture with --mix NAME=PATH:WEIGHT ...")
    if args.dataset.endswith(".toml"):
        return Mixture.from_toml(args.dataset)
    return args.dataset


def _run_train(args) -> int:
    from fastload.train import parse_sweep, sweep, train
    from fastload.train.flags import config_from_flags

    data = _data_argument(args, "train on")
    if args.sweep:
        grid, fixed = parse_sweep(args.sweep)
        results = sweep(data, config_from_flags(args, fixed), grid, on_run=_print_sweep_run, on_record=_print_record)
        _print_sweep_table(results)
        return 0
    config = config_from_flags(args)
    result = train(data, config, on_record=_print_record)
    if result.out is not None and result.rank == 0:
        files = [result.out / name for name in ("metrics.jsonl", "metrics.png", "checkpoint.pt")]
        print("wrote " + ", ".join(str(f) for f in files if f.exists()))
    return 0


def _print_record(record: dict) -> None:
    from fastload.train.progress import format_record

    print(format_record(record), flush=True)


def _print_sweep_run(index: int, total: int, settings: dict) -> None:
    print(f"\n--- sweep run {index + 1}/{total}: " + " ".join(f"{k}={v}" for k, v in settings.items()), flush=True)


def _print_sweep_table(results) -> None:
    import math

    names = list(results[0].settings) if results else []
    header = ["rank", *names, "best val_loss", "ppl", "steps", "tok/s", "data wait %", "out"]
    rows = []
    for rank, r in enumerate(results, 1):
        train = [x for x in r.result.records if x["kind"] == "train"]
        tokens_per_s = sum(x["tokens_per_s"] for x in train) / len(train) if train else 0.0
        wait = sum(x["data_wait_pct"] for x in train) / len(train) if train else 0.0
        best = r.best_val_loss
        rows.append([str(rank), *(str(r.settings[n]) for n in names), _num(best), "-" if best is None else f"{math.exp(min(best, 700)):,.1f}",
                     str(r.result.steps), f"{tokens_per_s:,.0f}", f"{wait:.2f}", str(r.result.out or "-")])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    print("\nsweep results, best validation loss first")
    for i, line in enumerate([header, ["-" * w for w in widths], *rows]):
        print("  ".join(c.ljust(w) if j in (0, len(line) - 1) or j <= len(names) else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))).rstrip())


def _add_bench(sub) -> None:
    from fastload.benchmark import BenchOptions

    p = sub.add_parser("bench", help="fastload vs a naive per-sample loader on your dataset: tokens/s, first batch, main-process time, memory, I/O")
    p.add_argument("dataset", nargs="?", help="a fastload dataset with a tokens column (or text, tokenized on the fly), or a mixture's .toml file")
    p.add_argument("--mix", nargs="+", metavar="NAME=PATH:WEIGHT",
                   help="measure a mixture instead of one dataset (fastload's PackedMixture against documents drawn by weight)")
    p.add_argument("--batch-size", type=int, default=BenchOptions.batch_size, help="rows per batch (default 16)")
    p.add_argument("--seq-len", type=int, default=BenchOptions.seq_len, help="tokens per row (default 1024)")
    p.add_argument("--workers", default=",".join(map(str, BenchOptions.workers)), help="comma-separated worker counts (default 0,2)")
    p.add_argument("--steps", type=int, default=BenchOptions.steps, help="timed batches per run (default 100, at most an epoch)")
    p.add_argument("--repeats", type=int, default=BenchOptions.repeats, help="timed runs per loader; the median is shown (default 3)")
    p.add_argument("--warmup", type=int, default=BenchOptions.warmup, help="untimed runs first (default 1)")
    p.add_argument("--tokenizer", help="for a text-only dataset: 'default' (the default), 'bytes', or a tokenizer.json / .tiktoken path")
    p.add_argument("--eos-id", type=int, help="token after each document (default: the tokenizer's or the one recorded at conversion)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_cache_flags(p)


def _add_cache_flags(p) -> None:
    """The block cache of a dataset in object storage (s3://, gs://, az://, https://); a local dataset ignores them."""
    p.add_argument("--cache-dir", help="for a dataset in object storage: the node's block cache folder (default: blocks/ in FASTLOAD_CACHE_DIR, or ~/.cache/fastload/blocks)")
    p.add_argument("--cache-bytes", type=_size, help="for a dataset in object storage: the block cache's size, e.g. 50GiB (default: half its disk's free space)")


def _run_bench(args) -> int:
    from fastload.benchmark import BenchOptions, parse_workers, run_benchmark

    options = BenchOptions(
        batch_size=args.batch_size, seq_len=args.seq_len, workers=parse_workers(args.workers), steps=args.steps,
        repeats=args.repeats, warmup=args.warmup, tokenizer=args.tokenizer, eos_id=args.eos_id,
        cache_dir=args.cache_dir, cache_bytes=args.cache_bytes,
    )
    data = _data_argument(args, "measure")
    print(f"fastload bench {args.dataset or 'mixture'}: the naive loader and fastload, workers {args.workers} ...", file=sys.stderr, flush=True)
    report = run_benchmark(data, options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastload", description="fast data loading for transformer training")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_convert(sub)
    p = sub.add_parser("inspect", help="print a dataset's schema, sizes, statistics and a few rows")
    p.add_argument("dataset")
    p.add_argument("--rows", type=int, default=3, help="sample rows to show")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("verify", help="re-check every checksum; exit 1 naming each bad shard/block")
    p.add_argument("dataset")
    p = sub.add_parser("demo", help="convert the shipped demo corpus (the README's first command)")
    p.add_argument("--out", default="demo/corpus", help="where to write the demo dataset")
    p.add_argument("--workers", type=int)
    p.add_argument("--tokenizer", default="default", help="tokenizer for the `tokens` column ('default', a path, or 'none'); the text is kept too")
    _add_bench(sub)
    _add_train(sub)
    args = parser.parse_args(argv)
    runners = {"convert": _run_convert, "inspect": _run_inspect, "verify": _run_verify, "demo": _run_demo, "bench": _run_bench, "train": _run_train}
    try:
        return runners[args.command](args)
    except FastloadError as exc:
        print(f"fastload {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastload {args.command}: interrupted", file=sys.stderr)
        if args.command == "convert":  # it has removed its files; skip the ~1 s of tearing down Numba's kernels at exit
            import gc

            gc.freeze()
        return 130


if __name__ == "__main__":
    sys.exit(main())
