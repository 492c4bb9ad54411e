"""The write reference: one core writing the same int64 batches from the uint16 stream held in RAM.

`out[r] = tokens[s:s + 1025]` into a preallocated (16, 1025) int64 buffer,
16 random rows per batch, no loader, no workers: an upper bound for any
loader that hands over int64 batches, measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from .prepare import BATCH_SIZE, ROW_LEN, TOKENS_PER_BATCH, token_stream

__all__ = ["LABEL", "write_reference"]

LABEL = "one core: int64 batches from uint16 in RAM"


def write_reference(corpus: Path, *, repeats: int, num_batches: int = 20_000) -> dict:
    """Tokens/s of `num_batches` batches written from random rows: the median of `repeats` passes after one warm-up."""
    import numpy as np

    tokens_bin, meta = token_stream(corpus)
    data = np.fromfile(tokens_bin, dtype=np.uint16)
    num_rows = meta["num_tokens"] // ROW_LEN
    starts = np.random.default_rng(0).integers(0, num_rows, size=(num_batches, BATCH_SIZE)) * ROW_LEN
    out = np.empty((BATCH_SIZE, ROW_LEN), dtype=np.int64)  # (16, 1025)
    samples = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        for batch_starts in starts.tolist():
            for r, s in enumerate(batch_starts):
                out[r] = data[s : s + ROW_LEN]
        if i:  # the first pass warms up
            samples.append(num_batches * TOKENS_PER_BATCH / (time.perf_counter() - started))
    return {"tokens_per_s": statistics.median(samples), "tokens_per_s_min": min(samples), "tokens_per_s_max": max(samples), "note": None}
