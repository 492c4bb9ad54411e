"""The task every token-loader contender does, and the untimed, cached preparation several of them share.

    tokens_bin, meta = token_stream(corpus)      # the corpus as one flat uint16 stream, EOS after each document
    rows(tokens_bin)                              # that stream as non-overlapping (rows, 1025) uint16 rows
    cached(path, corpus, build)                   # build(tmp) once per corpus and vocabulary, then reuse

Everything here is made once and kept in `bench/.cache/` beside a
`*.stamp.json` recording the corpus size and mtime and the tokenizer file's
hash: a changed corpus or vocabulary rebuilds it, anything else reuses it.
The token stream is made with fastload's tokenizer (HF-identical ids, ten
times faster than HF's for this one-off step); the naive contender tokenizes
with HF `tokenizers` at run time, as its users would. Heavy imports (numpy,
pyarrow, fastload) happen inside the builders, in the child that needs them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from convert import CACHE, REPO

__all__ = ["BATCH_SIZE", "SEQ_LEN", "ROW_LEN", "TOKENS_PER_BATCH", "TOKENIZER_JSON", "EOS_ID", "CACHE",
           "cached", "token_stream", "rows", "to_int64"]

BATCH_SIZE = 16  # the issue: batches of 16 x 1025
SEQ_LEN = 1024
ROW_LEN = SEQ_LEN + 1  # a window and the token after it, for the labels
TOKENS_PER_BATCH = BATCH_SIZE * ROW_LEN
TOKENIZER_JSON = REPO / "fastload" / "assets" / "tokenizer" / "tokenizer.json"
EOS_ID = 0  # `<|endoftext|>` in the shipped vocabulary


def _stamp(corpus: Path) -> dict:
    st = corpus.stat()
    return {
        "corpus": corpus.name,
        "corpus_bytes": st.st_size,
        "corpus_mtime_ns": st.st_mtime_ns,
        "tokenizer_sha256": hashlib.sha256(TOKENIZER_JSON.read_bytes()).hexdigest(),
    }


def cached(path: Path, corpus: Path, build: Callable[[Path], dict | None]) -> dict:
    """`path`, built by `build(tmp)` into a temporary path and renamed, unless its stamp matches the corpus."""
    stamp_path = path.with_name(path.name + ".stamp.json")
    stamp = _stamp(corpus)
    if path.exists() and stamp_path.exists():
        recorded = json.loads(stamp_path.read_text())
        if all(recorded.get(k) == v for k, v in stamp.items()):
            return recorded
    tmp = path.with_name(f".tmp-{path.name}")
    for stale in (tmp, path):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    print(f"preparing {path.name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    extra = build(tmp) or {}
    tmp.rename(path)
    recorded = {**stamp, **extra, "prep_s": round(time.perf_counter() - started, 1)}
    stamp_path.write_text(json.dumps(recorded, indent=2) + "\n")
    return recorded


def token_stream(corpus: Path) -> tuple[Path, dict]:
    """The corpus as one flat uint16 array: each document's ids, then EOS (nanoGPT's `train.bin`)."""
    path = CACHE / f"{corpus.stem}.tokens-u16.bin"

    def build(tmp: Path) -> dict:
        import numpy as np
        import pyarrow.json as pa_json

        import fastload

        tokenizer = fastload.Tokenizer.default()
        if tokenizer.eos_id != EOS_ID or tokenizer.vocab_size > 1 << 16:
            raise RuntimeError(f"the shipped vocabulary changed: eos_id {tokenizer.eos_id}, {tokenizer.vocab_size} ids")
        text = pa_json.read_json(corpus).column("text")
        ids, offsets = tokenizer.encode_arrow(text, num_threads=2)
        num_docs = len(offsets) - 1
        out = np.empty(len(ids) + num_docs, dtype=np.uint16)
        ends = offsets[1:] + np.arange(1, num_docs + 1)  # each document's EOS position + 1
        keep = np.ones(len(out), dtype=bool)
        keep[ends - 1] = False
        out[keep] = ids
        out[ends - 1] = EOS_ID
        out.tofile(tmp)
        return {"num_tokens": int(len(out)), "num_docs": int(num_docs)}

    return path, cached(path, corpus, build)


def rows(tokens_bin: Path):
    """The token stream as its non-overlapping (rows, 1025) uint16 rows (the tail that fills no row is dropped)."""
    import numpy as np

    data = np.fromfile(tokens_bin, dtype=np.uint16)
    num_rows = len(data) // ROW_LEN
    return data[: num_rows * ROW_LEN].reshape(num_rows, ROW_LEN)  # (rows, 1025)


def to_int64(row):
    """A uint16 row as an int64 torch tensor (module-level, so a loader's transform pickles)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(row).astype(np.int64))
