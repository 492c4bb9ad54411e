"""The fastload contenders: the corpus converted once, then `fastload.DataLoader(fastload.PackedDataset(...))`.

Pre-tokenized: `fastload.convert(corpus, out, tokenizer=Tokenizer.default())`,
uncompressed or lz4, packed with `PackedDataset(out, seq_len=1024)`. On the
fly: a text-only conversion packed with `PackedDataset(out, seq_len=1024,
tokenizer=Tokenizer.default())`; its token counts come from fastload's cache
after the warm-up run (the first run ever tokenizes the corpus once to
count). Its batch is a dict; `input_ids` (16, 1024) and `labels` hold the
same 1025-token windows as the others' rows.

fastload is changing under this benchmark: a cached dataset its reader no
longer accepts is rebuilt once rather than failing the row.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from .prepare import BATCH_SIZE, CACHE, SEQ_LEN, cached

__all__ = ["build", "fastload_dataset"]


def fastload_dataset(corpus: Path, *, tokenized: bool, compression: str = "none", shard_bytes: int | None = None) -> Path:
    """The corpus converted once (cached); `shard_bytes`: smaller shards than the writer's default (bench/remote.py)."""
    name = f"{corpus.stem}.fastload-" + (f"tokens-{compression}" if tokenized else "text") + (f"-shards-{shard_bytes}" if shard_bytes else "")
    path = CACHE / name

    def build(tmp: Path) -> dict:
        import fastload

        tokenizer = fastload.Tokenizer.default() if tokenized else None
        sharding = {"shard_bytes": shard_bytes} if shard_bytes else {}
        result = fastload.convert(corpus, tmp, columns=["text"], tokenizer=tokenizer, compression=compression, workers=2, quiet=True, **sharding)
        return {"num_rows": result.num_rows, "num_tokens": result.num_tokens}

    cached(path, corpus, build)
    try:
        import fastload

        fastload.Dataset(path)
    except fastload.FastloadError as exc:
        print(f"rebuilding {path.name}: {exc}", file=sys.stderr, flush=True)
        path.with_name(path.name + ".stamp.json").unlink()
        cached(path, corpus, build)
    return path


def build(corpus: Path, workers: int, *, tokenized: bool, compression: str = "none") -> Callable[[], object]:
    """Prepare (untimed: the conversion) and return the loader factory."""
    import fastload

    folder = fastload_dataset(corpus, tokenized=tokenized, compression=compression)

    def make():
        tokenizer = None if tokenized else fastload.Tokenizer.default()
        packed = fastload.PackedDataset(folder, seq_len=SEQ_LEN, tokenizer=tokenizer)
        return fastload.DataLoader(packed, batch_size=BATCH_SIZE, num_workers=workers, shuffle=True)

    return make
