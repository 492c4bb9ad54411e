"""The kernel-side form of a `Vocab`: hash tables the encoder probes.

What lives here: `KernelTables` (the tuples `encode_documents` takes) and
`build_tables`, which fills the pair table (HF merges, or every split of
every token for tiktoken rank files) and the whole-token table. What does
not: reading files (`hf_json.py`, `vocab.py`), the table code
(`fastload/tokenizer/kernels/hashtable.py`) or encoding
(`fastload/tokenizer/kernels/bpe.py`).

Pieces that are whole tokens skip the merge loop through a token index
(keys of up to 7 bytes are the bytes themselves, so a hit costs one cache
line). Under tiktoken semantics (and HF's `ignore_merges`) every token may
be hit that way; under HF's merge semantics only tokens whose own bytes
merge back to them, which gives the same ids by construction.

Built on first use, not on load, so that loading a tokenizer, pickling it
to workers and fingerprinting it import no Numba. Tables are not pickled:
they are large (o200k: ~30 MB) and quick to rebuild (~0.1 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastload.errors import TokenizerError
from fastload.tokenizer.vocab import Vocab

__all__ = ["KernelTables", "build_tables", "special_tables"]


@dataclass(frozen=True, eq=False)
class KernelTables:
    vocab: tuple  # (byte_ids, byte_pairs, pairs, tokens): see merge_piece in fastload/tokenizer/kernels/bpe.py
    num_pairs: int
    num_shortcuts: int  # tokens a piece may map to directly, without merging


def _token_index(hashtable, vocab: Vocab, ids: np.ndarray) -> tuple:
    lengths = vocab.tok_offsets[ids + 1] - vocab.tok_offsets[ids]
    num_short = int(np.count_nonzero(lengths <= 7))
    short, short_shift = hashtable.new_table(num_short)  # each table sized for its own keys
    long, long_shift = hashtable.new_table(len(ids) - num_short)
    hashtable.build_token_tables(ids, vocab.tok_bytes, vocab.tok_offsets, short, short_shift, long, long_shift)
    return (short, short_shift, long, long_shift, vocab.tok_bytes, vocab.tok_offsets)


def build_tables(vocab: Vocab) -> KernelTables:
    from fastload.tokenizer.kernels import bpe, hashtable

    every_token = _token_index(hashtable, vocab, vocab.lookup_ids)
    tiktoken_style = vocab.whole_piece and not vocab.merges.shape[0]
    if tiktoken_style:  # pair (a, b) merges into a + b with rank id(a + b)
        upper = max(int(vocab.tok_bytes.shape[0]), 1)
        left, right, merged = (np.empty(upper, dtype=np.int64) for _ in range(3))
        n = hashtable.enumerate_splits(vocab.lookup_ids, every_token, left, right, merged)
        left, right, merged = left[:n], right[:n], merged[:n]
        rank = merged
        rank_to_new = np.zeros(1, dtype=np.int64)  # unused: rank is the new id
    else:
        left, right, merged, rank = (np.ascontiguousarray(vocab.merges[:, k]) for k in range(4))
        rank_to_new = np.zeros(int(rank.max()) + 1 if rank.shape[0] else 1, dtype=np.int64)
        rank_to_new[rank] = merged
    max_id = int(vocab.lookup_ids.max()) if vocab.lookup_ids.shape[0] else 255
    max_id = max(max_id, int(vocab.byte_ids.max()))
    max_rank = int(rank.max()) if rank.shape[0] else 0
    try:
        table, shift, id_bits, rank_bits = hashtable.new_pair_table(left.shape[0], max_id, max_rank)
    except ValueError as exc:
        raise TokenizerError(f"{vocab.source}: vocabulary too large for fastload's merge table: {exc}") from None
    stored = hashtable.build_pair_table(left, right, rank, table, shift, id_bits, rank_bits)
    pairs = (table, shift, id_bits, rank_bits, rank_to_new, bool(tiktoken_style))
    byte_pairs = np.empty((256, 256), dtype=np.int64)
    hashtable.byte_pair_table(vocab.byte_ids, pairs, byte_pairs)

    if vocab.whole_piece:  # tiktoken, HF ignore_merges: any piece that is a token is that token
        shortcuts, num_shortcuts = every_token, len(vocab.lookup_ids)
    else:  # HF merges: only where merging the token's bytes gives the token itself
        keep = np.zeros(len(vocab.lookup_ids), dtype=np.bool_)
        num_shortcuts = bpe.self_merging_tokens(vocab.lookup_ids, vocab.tok_bytes, vocab.tok_offsets,
                                                vocab.byte_ids, byte_pairs, pairs, keep)
        shortcuts = _token_index(hashtable, vocab, vocab.lookup_ids[keep])
    return KernelTables(
        vocab=(vocab.byte_ids, byte_pairs, pairs, shortcuts),
        num_pairs=int(stored),
        num_shortcuts=int(num_shortcuts),
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
