"""The naive loaders' packing `collate_fn`: documents concatenated with the carry-over and cut into rows.

    collate = PackingCollate(documents, batch_size=16, row_tokens=1025, seed=0)
    torch.utils.data.DataLoader(documents, batch_size=docs_per_batch, shuffle=True, collate_fn=collate)

What a training script without fastload writes to pack documents into
fixed-length rows, in one place for the two naive contenders: `fastload
bench`'s (`loaders.naive_loader`) and `bench/loader_tokens.py`'s (JSON Lines
+ HF tokenizers). Each call takes the documents the sampler chose (int64
token ids, EOS already appended), tops up with random documents when they
hold fewer than `batch_size * row_tokens` tokens, and keeps what is left over
for the next batch of the same worker. Per-batch numpy work, per-document
Python: it is meant to be the ordinary way, not a fast one.

It imports numpy and nothing of fastload: the naive contender in `bench/`
runs it in a process measured against peers, which must not load pyarrow or
Numba. torch is imported when it is called, inside a torch `DataLoader`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["PackingCollate"]


class PackingCollate:
    """Carry-over + documents, concatenated and cut into (batch_size, row_tokens) int64 rows, as a torch tensor.

    `documents[i]` is document i's token ids (+ EOS) as int64; top-up documents
    are drawn from it with a generator seeded by (`seed`, worker id). With
    `split_labels`, a batch is `{"input_ids": rows[:, :-1], "labels": rows[:, 1:]}`
    instead of the bare rows.
    """

    def __init__(self, documents: Sequence[np.ndarray], *, batch_size: int, row_tokens: int, seed: int, split_labels: bool = False):
        self.documents, self.batch_size, self.row_tokens = documents, batch_size, row_tokens
        self.seed, self.split_labels = seed, split_labels
        self.carry = np.zeros(0, dtype=np.int64)
        self.rng = None  # seeded in the process that collates (a worker, after the fork)

    def __call__(self, docs: list[np.ndarray]):
        import torch
        import torch.utils.data

        if self.rng is None:
            info = torch.utils.data.get_worker_info()
            self.rng = np.random.default_rng([self.seed, info.id if info else 0])
        need = self.batch_size * self.row_tokens
        parts, have = [self.carry, *docs], len(self.carry) + sum(len(d) for d in docs)
        while have < need:
            doc = self.documents[int(self.rng.integers(len(self.documents)))]
            parts.append(doc)
            have += len(doc)
        flat = np.concatenate(parts)
        self.carry = flat[need:]
        rows = torch.from_numpy(flat[:need].reshape(self.batch_size, self.row_tokens))  # (B, S + 1)
        if self.split_labels:
            return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}  # (B, S) each
        return rows
