"""Open-addressing hash tables for the BPE kernels, in plain numpy arrays.

What lives here: the merge-pair table, packed one int64 per slot
(`(left << id_bits | right) << rank_bits | rank`; tiktoken ranks are the new
ids, HF ranks map to them through `rank_to_new`); the dense byte-pair table
that merge loops start from; interleaved (key, value) int64 tables (key and
value in one cache line) for the token index by bytes — tokens of up to 7
bytes keyed by the bytes themselves packed into an int64, longer ones by an
FNV hash with the bytes compared on lookup; and `enumerate_splits`, which
derives tiktoken's pair table from a rank file. What does not: merging
(`bpe.py`).

Trade-off: multiplicative hashing with linear probing, tables at most half
full so lookups rarely probe twice, at twice the memory of a dense table
(cl100k: 4 MB of pairs). -1 marks an empty slot and is never a key: packed
pairs are non-negative, short keys carry a length of 1-7 in the top byte,
and the FNV hash is shifted right by one.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.jit import kernel

__all__ = [
    "table_capacity",
    "new_table",
    "new_pair_table",
    "build_pair_table",
    "lookup_pair",
    "byte_pair_table",
    "build_token_tables",
    "lookup_token",
    "enumerate_splits",
    "NO_PAIR",
]

NO_PAIR = np.int64(0x7FFFFFFFFFFFFFFF)
_EMPTY = np.int64(-1)  # empty slot in the interleaved (key, value) tables
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def table_capacity(num_entries: int) -> tuple[int, int]:
    """(capacity, shift) of a power-of-two table at most half full."""
    bits = max(4, int(2 * max(num_entries, 1) - 1).bit_length())
    return 1 << bits, 64 - bits


def new_table(num_entries: int) -> tuple[np.ndarray, int]:
    """An empty interleaved (key, value) int64 table for `num_entries` keys, and its shift."""
    capacity, shift = table_capacity(num_entries)
    return np.full((capacity, 2), -1, dtype=np.int64), shift


@kernel(inline="always")
def slot_of(key, shift):
    """Home slot of a 64-bit key in a table of 2**(64 - shift) slots."""
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@kernel
def insert_key(table, shift, key, value):
    """Insert into an interleaved (key, value) table; an existing key is overwritten.
    Returns 1 for a new key, 0 for an overwrite."""
    mask = np.int64(table.shape[0] - 1)
    s = slot_of(key, shift)
    while table[s, 0] != _EMPTY and table[s, 0] != key:
        s = (s + np.int64(1)) & mask
    new = 1 if table[s, 0] == _EMPTY else 0
    table[s, 0] = key
    table[s, 1] = value
    return new


@kernel(inline="always")
def find_key(table, shift, key):
    """Value stored under `key`, or -1. Key and value share a cache line."""
    mask = np.int64(table.shape[0] - 1)
    s = slot_of(key, shift)
    while True:
        k = table[s, 0]
        if k == key:
            return table[s, 1]
        if k == _EMPTY:
            return np.int64(-1)
        s = (s + np.int64(1)) & mask


def new_pair_table(num_pairs: int, max_id: int, max_rank: int) -> tuple[np.ndarray, int, int, int]:
    """An empty packed pair table: (table, shift, id_bits, rank_bits).

    Each slot is one int64, `(left << id_bits | right) << rank_bits | rank`,
    so a probe reads 8 bytes and the table is half the size of a (key,
    value) table. Raises ValueError when ids and ranks do not fit 63 bits
    (vocabularies above about 2 million tokens).
    """
    id_bits = max(1, int(max_id).bit_length())
    rank_bits = 63 - 2 * id_bits
    if rank_bits < 1 or int(max_rank) >= 1 << rank_bits:
        raise ValueError(f"ids up to {max_id} and ranks up to {max_rank} do not fit a packed pair table")
    capacity, shift = table_capacity(num_pairs)
    return np.full(capacity, -1, dtype=np.int64), shift, id_bits, rank_bits


@kernel
def build_pair_table(left, right, rank, table, shift, id_bits, rank_bits):
    """Insert merges (a, b) -> rank (later duplicates win, as in HF); return the count stored."""
    mask = np.int64(table.shape[0] - 1)
    stored = 0
    for k in range(left.shape[0]):
        key = (np.int64(left[k]) << np.int64(id_bits)) | np.int64(right[k])
        s = slot_of(key, shift)
        while table[s] != _EMPTY and (table[s] >> np.int64(rank_bits)) != key:
            s = (s + np.int64(1)) & mask
        if table[s] == _EMPTY:
            stored += 1
        table[s] = (key << np.int64(rank_bits)) | np.int64(rank[k])
    return stored


@kernel(inline="always")
def lookup_pair(pairs, a, b):
    """`rank << 32 | new_id` of the pair (a, b), or NO_PAIR (above every rank).

    `pairs` = (table, shift, id_bits, rank_bits, rank_to_new, rank_is_id);
    tiktoken vocabularies have rank == new id, HF ones map rank -> new id.
    """
    table, shift, id_bits, rank_bits, rank_to_new, rank_is_id = pairs
    key = (np.int64(a) << np.int64(id_bits)) | np.int64(b)
    mask = np.int64(table.shape[0] - 1)
    s = slot_of(key, shift)
    while True:
        entry = table[s]
        if entry == _EMPTY:
            return NO_PAIR
        if (entry >> np.int64(rank_bits)) == key:
            rank = entry & ((np.int64(1) << np.int64(rank_bits)) - np.int64(1))
            new_id = rank if rank_is_id else rank_to_new[rank]
            return (rank << np.int64(32)) | new_id
        s = (s + np.int64(1)) & mask


@kernel
def byte_pair_table(byte_ids, pairs, out):
    """out[x, y] = lookup_pair of the single-byte tokens of bytes x and y.

    Every merge loop starts from single bytes, so its first n - 1 lookups
    hit this dense 512 KiB table (L2-resident) instead of the hash table.
    """
    for x in range(256):
        for y in range(256):
            out[x, y] = lookup_pair(pairs, byte_ids[x], byte_ids[y])
    return 65536


@kernel(inline="always")
def short_key(buf, start, end):
    """A piece of 1-7 bytes packed into one int64 with its length in the top byte."""
    key = np.int64(end - start) << 56
    for i in range(start, end):
        key |= np.int64(buf[i]) << np.int64(8 * (i - start))
    return key


@kernel(inline="always")
def bytes_hash(buf, start, end):
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return np.int64(h >> np.uint64(1))  # never -1 (the empty key)


@kernel(inline="always")
def same_bytes(buf, start, end, tok_bytes, tok_offsets, t):
    a = tok_offsets[t]
    if tok_offsets[t + 1] - a != end - start:
        return False
    for i in range(end - start):
        if tok_bytes[a + i] != buf[start + i]:
            return False
    return True


@kernel
def build_token_tables(token_ids, tok_bytes, tok_offsets, short, short_shift, long, long_shift):
    """Index tokens by their bytes: up to 7 bytes in `short` (the key is the
    bytes), longer ones in `long` (key = hash; bytes compared on lookup)."""
    mask = np.int64(long.shape[0] - 1)
    for k in range(token_ids.shape[0]):
        t = token_ids[k]
        a = tok_offsets[t]
        b = tok_offsets[t + 1]
        if b - a <= 7:
            insert_key(short, short_shift, short_key(tok_bytes, a, b), np.int64(t))
            continue
        s = slot_of(bytes_hash(tok_bytes, a, b), long_shift)
        while long[s, 0] != _EMPTY:
            s = (s + np.int64(1)) & mask
        long[s, 0] = bytes_hash(tok_bytes, a, b)
        long[s, 1] = t
    return 0


@kernel(inline="always")
def lookup_token(tokens, buf, start, end):
    """Id of the indexed token whose bytes are buf[start:end], or -1."""
    short, short_shift, long, long_shift, tok_bytes, tok_offsets = tokens
    if end - start <= 7:
        return find_key(short, short_shift, short_key(buf, start, end))
    h = bytes_hash(buf, start, end)
    mask = np.int64(long.shape[0] - 1)
    s = slot_of(h, long_shift)
    while True:
        k = long[s, 0]
        if k == _EMPTY:
            return np.int64(-1)
        if k == h and same_bytes(buf, start, end, tok_bytes, tok_offsets, long[s, 1]):
            return long[s, 1]
        s = (s + np.int64(1)) & mask


@kernel
def enumerate_splits(token_ids, tokens, left, right, merged):
    """For each token t and each split t = a + b with a, b tokens, write (a, b, t).

    This is the pair table that reproduces tiktoken's bytes-rank merges.
    Output arrays need `len(tok_bytes)` entries; returns the count written.
    """
    tok_bytes, tok_offsets = tokens[4], tokens[5]
    n = 0
    for k in range(token_ids.shape[0]):
        t = token_ids[k]
        a = tok_offsets[t]
        b = tok_offsets[t + 1]
        for cut in range(a + 1, b):
            x = lookup_token(tokens, tok_bytes, a, cut)
            if x < 0:
                continue
            y = lookup_token(tokens, tok_bytes, cut, b)
            if y < 0 or n >= left.shape[0]:
                continue
            left[n] = x
            right[n] = y
            merged[n] = t
            n += 1
    return n
