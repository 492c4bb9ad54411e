"""The kernel-side form of a `Vocab`: hash tables the encoder probes.

What lives here: `KernelTables` (the tuples `encode_documents` takes) and
`build_tables`, which fills the pair table (HF merges, or every split of
every token for tiktoken rank files) and the whole-token table. What does
not: reading files (`vocab.py`) or encoding (`fastload/kernels/bpe.py`).

Built on first use, not on load, so that loading a tokenizer, pickling it
to workers and fingerprinting it import no Numba; the tables are pickled
with the tokenizer once built, so workers do not rebuild them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastload.tokenizer.vocab import Vocab

__all__ = ["KernelTables", "build_tables", "special_tables"]


@dataclass(frozen=True, eq=False)
class KernelTables:
    vocab: tuple  # (byte_ids, pair_keys, pair_values, pair_shift, slots, slot_shift, tok_bytes, tok_offsets)
    num_pairs: int


def build_tables(vocab: Vocab) -> KernelTables:
    from fastload.kernels import bpe

    cap, slot_shift = bpe.table_capacity(len(vocab.lookup_ids))
    slots = np.full(cap, -1, dtype=np.int32)
    bpe.build_token_table(vocab.lookup_ids, vocab.tok_bytes, vocab.tok_offsets, slots, slot_shift)

    if vocab.merges.shape[0] or not vocab.whole_piece:
        left, right, merged, rank = (np.ascontiguousarray(vocab.merges[:, k]) for k in range(4))
    else:  # tiktoken: pair (a, b) merges into a + b with rank id(a + b)
        upper = max(int(vocab.tok_bytes.shape[0]), 1)
        left, right, merged = (np.empty(upper, dtype=np.int64) for _ in range(3))
        n = bpe.enumerate_splits(vocab.lookup_ids, vocab.tok_bytes, vocab.tok_offsets, slots, slot_shift,
                                 left, right, merged)
        left, right, merged = left[:n], right[:n], merged[:n]
        rank = merged
    pair_cap, pair_shift = bpe.table_capacity(left.shape[0])
    keys = np.full(pair_cap, bpe.EMPTY_KEY, dtype=np.uint64)
    values = np.zeros(pair_cap, dtype=np.int64)
    stored = bpe.build_pair_table(left, right, rank, merged, keys, values, pair_shift)
    return KernelTables(
        vocab=(vocab.byte_ids, keys, values, pair_shift, slots, slot_shift, vocab.tok_bytes, vocab.tok_offsets),
        num_pairs=int(stored),
    )


def special_tables(vocab: Vocab, allowed: frozenset[str]) -> tuple:
    """(bytes, offsets, ids, first-byte filter) of the allowed added tokens."""
    items = sorted((text.encode("utf-8"), vocab.added[text]) for text in allowed)
    items = [(raw, token_id) for raw, token_id in items if raw]
    lengths = np.array([len(raw) for raw, _ in items], dtype=np.int64)
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blob = np.frombuffer(b"".join(raw for raw, _ in items), dtype=np.uint8).copy()
    ids = np.array([token_id for _, token_id in items], dtype=np.int64)
    first = np.zeros(256, dtype=np.bool_)
    for raw, _ in items:
        first[raw[0]] = True
    return (blob, offsets, ids, first)
