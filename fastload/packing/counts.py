"""Every document's token count for a text column packed on the fly: counted once, in parallel, and cached.

A packing plan needs the length of every document before the first batch,
so a text dataset is tokenized once, whole, to count. That is the one
multi-second step of on-the-fly packing (about 30 MB of text a second on 2
cores with the shipped vocabulary), so it shows a progress bar (tqdm, on
stderr, only when stderr is a terminal and the caller has not asked for
quiet) and the counts are cached under `fastload.environment.cache_dir()`,
named by the dataset's index (which holds every block's CRC: changed data
gets a new name), the column and the tokenizer's fingerprint.

Parallelism: whole blocks go to a pool of threads, one per core; the
tokenizer's kernels release the GIL (`nogil=True`), so the threads run at
once. Blocks are read and checked in the calling thread, in order (a
`Dataset` opens its shards lazily and is not shared between threads), and
at most two blocks per thread are in flight, which bounds memory. (The
earlier way split each block's documents over threads: a thread pool per
block, and each block waited for its longest part.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fastload.environment import cache_dir
from fastload.format.reader import Dataset

__all__ = ["cached_counts_path", "load_cached_counts", "save_counts", "tokenize_to_count"]

_log = logging.getLogger(__name__)


def tokenize_to_count(dataset: Dataset, column: str, tokenizer, *, num_threads: int | None = None, quiet: bool = False) -> np.ndarray:
    """Tokens of every document of `column` (storage order), tokenizing block by block in `num_threads` threads (default: one per core)."""
    lengths = np.empty(dataset.num_rows, np.int64)
    threads = max(1, num_threads or os.cpu_count() or 1)
    tokenizer.encode_arrow(_empty_text())  # builds the tokenizer's tables once, here, before the threads want them
    starts = dataset.block_starts
    _log.info("counting the tokens of %s documents of %s in %d threads (once: the counts are cached)", f"{dataset.num_rows:,}", dataset.path, threads)
    started = time.perf_counter()

    def count(block_id: int, text) -> int:
        _, offsets = tokenizer.encode_arrow(text)
        np.subtract(offsets[1:], offsets[:-1], out=lengths[starts[block_id] : starts[block_id + 1]])
        return len(offsets) - 1

    with _progress(dataset.num_rows, quiet) as bar, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastload-count") as pool:
        pending: deque = deque()
        for block_id in range(dataset.num_blocks):
            if len(pending) >= 2 * threads:
                bar.update(pending.popleft().result())
            pending.append(pool.submit(count, block_id, dataset.read_block(block_id).column(column)))
        while pending:
            bar.update(pending.popleft().result())
    _log.info("counted %s tokens in %.1f s", f"{int(lengths.sum()):,}", time.perf_counter() - started)
    return lengths


def _empty_text():
    import pyarrow as pa

    return pa.array([], pa.string())


def _progress(total: int, quiet: bool):
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, unit=" documents", unit_scale=True, desc="counting tokens (once; cached)", disable=disable)


def cached_counts_path(dataset: Dataset, column: str, tokenizer) -> Path | None:
    """The cache file of a column's token counts, or None when there is no cache."""
    root = cache_dir()
    if root is None:
        return None
    try:  # a remote dataset's index was read at open: its digest names it just as well
        index = dataset.remote.digest.encode() if dataset.remote is not None else (dataset.path / "index.json").read_bytes()
    except OSError:
        return None
    key = hashlib.sha256(index + b"\0" + column.encode() + b"\0" + tokenizer.fingerprint.encode()).hexdigest()[:32]
    return root / "token-counts" / f"{key}.npy"


def load_cached_counts(path: Path | None) -> np.ndarray | None:
    """The counts saved at `path`, or None when there are none or they cannot be read (then they are counted again)."""
    if path is None or not path.is_file():
        return None
    try:
        return np.load(path)
    except (OSError, ValueError):
        return None


def save_counts(path: Path, lengths: np.ndarray) -> None:
    """Write atomically; a cache that cannot be written (read-only home) only costs a recount next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, lengths.astype(np.int64))
        os.replace(tmp, path)
    except OSError:
        pass
