"""The naive contender: torch DataLoader over the JSON Lines, HF `tokenizers` per document, a packing collate.

What a training script without a data library does: a map-style dataset of
line offsets whose `__getitem__` seeks, `json.loads` the line and encodes its
text with HF `tokenizers` (+ EOS), and `fastload.benchmark.collate`'s
`PackingCollate` (the one `fastload bench` uses too) that concatenates the
documents into 16 rows of 1025 tokens, tops up with random documents when
short and carries the rest over to the next batch of the same worker. The
sampler gives it about a batch's worth of documents per step.

The collate module imports numpy and nothing of fastload's heavy parts, so
this child loads no pyarrow or Numba beside torch and HF `tokenizers`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .prepare import BATCH_SIZE, CACHE, EOS_ID, ROW_LEN, TOKENIZER_JSON, TOKENS_PER_BATCH, cached, token_stream

__all__ = ["build", "line_offsets"]


def line_offsets(corpus: Path) -> Path:
    """Byte offsets of the corpus's lines (the naive dataset's index)."""
    path = CACHE / f"{corpus.stem}.line-offsets.npy"

    def build(tmp: Path) -> dict:
        import numpy as np

        offsets, position = [], 0
        with open(corpus, "rb") as f:
            for line in f:
                offsets.append(position)
                position += len(line)
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(offsets, dtype=np.int64))
        return {"num_docs": len(offsets)}

    cached(path, corpus, build)
    return path


def build(corpus: Path, workers: int) -> Callable[[], object]:
    """Prepare (untimed: the line offsets, the mean document length) and return the loader factory."""
    import numpy as np
    import torch

    from fastload.benchmark.collate import PackingCollate

    offsets_path = line_offsets(corpus)
    _, meta = token_stream(corpus)
    docs_per_batch = max(1, int(TOKENS_PER_BATCH / (meta["num_tokens"] / meta["num_docs"])))

    class JsonlDocs(torch.utils.data.Dataset):
        """Document i: its JSON line, parsed and tokenized with HF `tokenizers`, + EOS, as int64 ids."""

        def __init__(self):
            self.offsets = np.load(offsets_path)
            self._file = self._tokenizer = None  # opened in the process that reads (after the fork)

        def __len__(self):
            return len(self.offsets)

        def __getitem__(self, i):
            if self._file is None:
                from tokenizers import Tokenizer

                self._file = open(corpus, "rb")
                self._tokenizer = Tokenizer.from_file(str(TOKENIZER_JSON))
            self._file.seek(int(self.offsets[i]))
            text = json.loads(self._file.readline())["text"]
            ids = self._tokenizer.encode(text).ids
            ids.append(EOS_ID)
            return np.asarray(ids, dtype=np.int64)

    def make():
        dataset = JsonlDocs()
        collate = PackingCollate(dataset, batch_size=BATCH_SIZE, row_tokens=ROW_LEN, seed=1)  # batches: (16, 1025)
        return torch.utils.data.DataLoader(dataset, batch_size=docs_per_batch, shuffle=True, num_workers=workers, collate_fn=collate)

    return make
