"""How big should a block be? The measurement behind `WriteOptions`' defaults.

    python bench/block_size.py [--tokens 64000000] [--repeats 3]

Writes the same token dataset (uint16 token lists with log-normal document
lengths, ~2 bytes per token) with several `block_bytes` values and each
compression, then reads every block once in a random order, as a shuffled
epoch would, through `fastload.Dataset.block` (CRC check + Arrow validation +
numpy views) and sums the token ids (so every byte is touched). Prints, per
block size: blocks, write MB/s, read MB/s and the fixed cost per block.

What it does not measure: a cold page cache (the files are read back right
after writing, so they are in memory; on a real disk, larger blocks matter
more) and shuffle quality (smaller blocks shuffle better for the same
window of memory; see the sampler's benchmark).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from fastload.format import Column, Dataset, DatasetWriter, Schema, WriteOptions

SCHEMA = Schema((Column("tokens", "tokens", "uint16"),))


def make_documents(num_tokens: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=6.0, sigma=1.0, size=num_tokens // 200), 1, 50_000).astype(np.int64)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), num_tokens) + 1]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(0, 50_000, size=int(offsets[-1]), dtype=np.uint16)
    return pa.table({"tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))}, schema=SCHEMA.arrow_schema())


def write(table: pa.Table, folder: Path, block_bytes: int, compression: str) -> float:
    started = time.perf_counter()
    with DatasetWriter(folder, SCHEMA, options=WriteOptions(block_bytes=block_bytes, compression=compression), overwrite=True) as writer:
        for batch in table.to_batches(max_chunksize=20_000):
            writer.write(batch)
    return time.perf_counter() - started


def read_shuffled(folder: Path, seed: int) -> tuple[float, int]:
    started = time.perf_counter()
    ds = Dataset(folder, cache_blocks=1)
    total = 0
    for block_id in np.random.default_rng(seed).permutation(ds.num_blocks):
        tokens = ds.block(int(block_id)).columns["tokens"]
        total += int(tokens.values.sum(dtype=np.uint64))
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes-kib", default="64,256,1024,4096,16384")
    args = parser.parse_args()
    table = make_documents(args.tokens)
    raw_mb = table.nbytes / 1e6
    print(f"dataset: {table.num_rows:,} documents, {args.tokens / 1e6:.0f}M tokens, {raw_mb:.0f} MB raw; median of {args.repeats}")
    print(f"{'compression':<11} {'block':>8} {'blocks':>7} {'write MB/s':>11} {'read MB/s':>10} {'µs/block':>9}")
    root = Path(tempfile.mkdtemp(prefix="fastload-block-size-"))
    try:
        for compression in ("none", "lz4", "zstd"):
            for kib in (int(k) for k in args.sizes_kib.split(",")):
                folder = root / f"{compression}-{kib}"
                writes = [write(table, folder, kib << 10, compression) for _ in range(args.repeats)]
                reads = [read_shuffled(folder, seed)[0] for seed in range(args.repeats)]
                blocks = Dataset(folder).num_blocks
                read_s = statistics.median(reads)
                # fixed cost per block: time beyond what the largest block size needs per byte
                print(
                    f"{compression:<11} {kib:>6}Ki {blocks:>7,} {raw_mb / statistics.median(writes):>11,.0f} "
                    f"{raw_mb / read_s:>10,.0f} {1e6 * read_s / blocks:>9,.0f}"
                )
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
