"""The contenders of `bench/loader_tokens.py`, a module each: its preparation (untimed, cached) and its loader.

    contender = CONTENDERS["litdata-2"]
    note = contender.setup() if contender.setup else None   # in the child, first: what it had to do to run
    make = contender.build(corpus, contender.workers)       # preparation, untimed; then make() -> a fresh loader

  naive_jsonl      naive: JSON Lines + HF tokenizers + the packing collate
  memmap_bin       memmap (nanoGPT .bin), the baseline
  litdata_chunks   LitData TokensLoader
  hf_rows          HF datasets (with_format torch)
  mds_shards       MosaicML StreamingDataset (MDS)
  fastload_packed  fastload pre-tokenized (uncompressed, lz4) and on-the-fly tokenization
  reference        one core writing int64 batches from RAM (not a loader: the upper bound)
  prepare          the task (16 x 1025 int64) and what several share: the cache, the token stream

Each module imports its library inside `build`, in the child process that
measures it, so the parent and the other contenders' children never load it.
What is measured, and how, is `bench/loader_tokens.py`'s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import fastload_packed, hf_rows, litdata_chunks, mds_shards, memmap_bin, naive_jsonl

__all__ = ["Contender", "CONTENDERS", "WORKER_COUNTS", "REFERENCE"]

WORKER_COUNTS = (0, 1, 2, 4, 8, 16)  # what --workers may ask for (default: 0, 1, 2 and as many more as there are cores)
REFERENCE = "write-ref"  # the name of reference.write_reference in --only and the results


@dataclass(frozen=True)
class Contender:
    label: str
    workers: int
    build: Callable[[Path, int], Callable[[], object]]  # (corpus, workers) -> make_loader; runs the preparation
    family: str
    setup: Callable[[], str | None] | None = None  # runs first in the child; returns a note for the row, or None


def _contenders() -> dict[str, Contender]:
    families = {
        "naive": ("naive: JSONL + HF tokenizers + packing collate", naive_jsonl.build, None),
        "memmap": ("memmap (nanoGPT .bin)", memmap_bin.build, None),
        "litdata": ("LitData TokensLoader", litdata_chunks.build, None),
        "hf": ("HF datasets (with_format torch)", hf_rows.build, None),
        "mds": ("MosaicML StreamingDataset (MDS)", mds_shards.build, mds_shards.import_streaming),
        "fastload": ("fastload pre-tokenized", functools.partial(fastload_packed.build, tokenized=True), None),
        "fastload-lz4": ("fastload pre-tokenized, lz4", functools.partial(fastload_packed.build, tokenized=True, compression="lz4"), None),
        "fastload-otf": ("fastload on-the-fly tokenization", functools.partial(fastload_packed.build, tokenized=False), None),
    }
    return {
        f"{family}-{w}": Contender(label, w, build, family, setup)
        for family, (label, build, setup) in families.items()
        for w in WORKER_COUNTS
    }


CONTENDERS = _contenders()
