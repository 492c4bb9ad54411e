"""Byte-level BPE kernels: hash tables, the merge loop and the batch encoder.

What lives here: the Numba-side vocabulary (open-addressing hash tables for
merge pairs and for whole tokens), the merge of one pre-tokenized piece, the
special-token scan, a strict UTF-8 validator, and `encode_documents`, the one
compiled loop that turns a batch of UTF-8 documents (Arrow layout: `data` +
`offsets`) into token ids with no Python per document. What does not: reading
vocabulary files and deciding which tables to build (`fastload/tokenizer/`),
and the pattern matchers (`pretokenize.py`).

Merge semantics. A pair table maps `(left_id, right_id)` to `(rank, new_id)`;
the lowest rank is merged first, leftmost on ties. Filled from a
`tokenizer.json`'s `merges` this is exactly Hugging Face's BPE model; filled
with every split `(a, b)` of every token `t = a + b` and `rank = id(t)` it is
exactly tiktoken's "merge the adjacent pair whose concatenated bytes have the
lowest rank". tiktoken's "a piece that is a whole token is emitted as is"
(also HF's `ignore_merges`) uses the whole-token table.

Trade-offs. Hash tables are open-addressing with keys and values side by
side (one cache line per probe); tokens of up to 7 bytes are keyed by their
bytes packed into an int64, so a whole-token hit never touches the token
byte store. Short pieces that are not tokens use tiktoken's simple loop —
rescan the pair ranks after each merge, O(n^2) but branch-light and
allocation-free — behind a small direct-mapped per-thread cache of recent
pieces (about 70% hits on natural text, worth 5-10%). Pieces longer than
`SMALL_PIECE` bytes switch to a linked list plus a binary heap with lazy
deletion, O(n log n), so minified JSON, base64 or a megabyte of unbroken CJK
cannot make the encoder quadratic. Profile (5 MB multilingual text, cl100k):
pre-tokenization ~25% of the time, whole-token lookups ~15%, merges the rest.

Every kernel writes into caller-provided buffers and returns how much it
wrote; `bpe_reference.py` holds the readable twins.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.jit import kernel
from fastload.kernels.pretokenize import piece_end

__all__ = [
    "SMALL_PIECE",
    "table_capacity",
    "new_table",
    "build_pair_table",
    "build_token_tables",
    "lookup_pair",
    "lookup_token",
    "enumerate_splits",
    "self_merging_tokens",
    "merge_piece",
    "encode_documents",
    "find_invalid_utf8",
]

SMALL_PIECE = 48  # bytes; above this the heap merge wins (measured on "a" * n)
_NO_PAIR = np.int64(0x7FFFFFFFFFFFFFFF)
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


@kernel
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


@kernel
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


@kernel
def pair_key(a, b):
    return (np.int64(a) << 32) | np.int64(b)


@kernel
def build_pair_table(left, right, rank, new_id, pairs, shift):
    """Insert merges (a, b) -> rank << 32 | new_id (later duplicates win, as in HF)."""
    stored = 0
    for k in range(left.shape[0]):
        stored += insert_key(pairs, shift, pair_key(left[k], right[k]), (np.int64(rank[k]) << 32) | np.int64(new_id[k]))
    return stored


@kernel
def lookup_pair(pairs, shift, a, b):
    """`rank << 32 | new_id` of the pair (a, b), or a value above every rank."""
    v = find_key(pairs, shift, pair_key(a, b))
    return _NO_PAIR if v < 0 else v


@kernel
def short_key(buf, start, end):
    """A piece of 1-7 bytes packed into one int64 with its length in the top byte."""
    key = np.int64(end - start) << 56
    for i in range(start, end):
        key |= np.int64(buf[i]) << np.int64(8 * (i - start))
    return key


@kernel
def bytes_hash(buf, start, end):
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return np.int64(h >> np.uint64(1))  # never -1 (the empty key)


@kernel
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


@kernel
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


@kernel
def self_merging_tokens(token_ids, tok_bytes, tok_offsets, byte_ids, pairs, pair_shift, keep):
    """keep[k] = True when merging the bytes of token_ids[k] gives exactly that token.

    Only such tokens may short-cut the merge loop under HF semantics (without
    `ignore_merges`): for them "the piece is a token" and "the merges produce
    the token" are the same statement. Returns how many are kept.
    """
    scratch_ids = np.empty(SMALL_PIECE, dtype=np.int64)
    scratch_vals = np.empty(SMALL_PIECE, dtype=np.int64)
    out = np.empty(1, dtype=np.int64)
    count = 0
    for k in range(token_ids.shape[0]):
        t = token_ids[k]
        a = tok_offsets[t]
        b = tok_offsets[t + 1]
        keep[k] = False
        if b - a < 2:
            continue
        if b - a <= SMALL_PIECE:
            m = merge_small(tok_bytes, a, b, byte_ids, pairs, pair_shift, scratch_ids, scratch_vals)
            ok = m == 1 and scratch_ids[0] == t
        else:
            buf = np.empty(b - a, dtype=np.int64)
            m = merge_long(tok_bytes, a, b, buf, 0, byte_ids, pairs, pair_shift)
            ok = m == 1 and buf[0] == t
        if ok:
            keep[k] = True
            count += 1
    return count


@kernel
def merge_small(buf, start, end, byte_ids, pairs, pair_shift, ids, vals):
    """tiktoken's loop for a short piece: rescan ranks after every merge.
    The result is left in ids[:m]; returns m."""
    m = end - start
    for k in range(m):
        ids[k] = byte_ids[buf[start + k]]
    for k in range(m - 1):
        vals[k] = lookup_pair(pairs, pair_shift, ids[k], ids[k + 1])
    while m > 1:
        best = _NO_PAIR
        at = -1
        for k in range(m - 1):
            if vals[k] < best:
                best = vals[k]
                at = k
        if at < 0:
            break
        ids[at] = best & 0xFFFFFFFF
        for k in range(at + 1, m - 1):
            ids[k] = ids[k + 1]
        for k in range(at + 1, m - 2):
            vals[k] = vals[k + 1]
        m -= 1
        if at < m - 1:
            vals[at] = lookup_pair(pairs, pair_shift, ids[at], ids[at + 1])
        if at > 0:
            vals[at - 1] = lookup_pair(pairs, pair_shift, ids[at - 1], ids[at])
    return m


@kernel
def heap_push(heap, size, key):
    i = size
    heap[i] = key
    while i > 0:
        parent = (i - 1) >> 1
        if heap[parent] <= heap[i]:
            break
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent
    return size + 1


@kernel
def heap_pop(heap, size):
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap[left + 1] < heap[left]:
            child = left + 1
        if heap[i] <= heap[child]:
            break
        heap[i], heap[child] = heap[child], heap[i]
        i = child
    return top, size


@kernel
def merge_long(buf, start, end, out, o, byte_ids, pairs, pair_shift):
    """Linked list + min-heap of (rank, position) with lazy deletion: O(n log n).
    Writes the ids to out[o:]; returns the new `o`."""
    n = end - start
    ids = np.empty(n, dtype=np.int64)
    nxt = np.empty(n, dtype=np.int64)
    prv = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.int64)
    heap = np.empty(3 * n + 4, dtype=np.int64)  # n - 1 initial entries + at most 2 per merge
    size = 0
    for k in range(n):
        ids[k] = byte_ids[buf[start + k]]
        nxt[k] = k + 1
        prv[k] = k - 1
    for k in range(n - 1):
        vals[k] = lookup_pair(pairs, pair_shift, ids[k], ids[k + 1])
        if vals[k] != _NO_PAIR:
            size = heap_push(heap, size, ((vals[k] >> 32) << 32) | k)
    vals[n - 1] = _NO_PAIR
    while size > 0:
        key, size = heap_pop(heap, size)
        rank = key >> 32
        pos = key & 0xFFFFFFFF
        # stale entry: the symbol was merged away or its pair changed since
        if ids[pos] < 0 or vals[pos] == _NO_PAIR or (vals[pos] >> 32) != rank:
            continue
        right = nxt[pos]
        ids[pos] = vals[pos] & 0xFFFFFFFF
        ids[right] = -1
        nxt[pos] = nxt[right]
        if nxt[pos] < n:
            prv[nxt[pos]] = pos
            vals[pos] = lookup_pair(pairs, pair_shift, ids[pos], ids[nxt[pos]])
            if vals[pos] != _NO_PAIR:
                size = heap_push(heap, size, ((vals[pos] >> 32) << 32) | pos)
        else:
            vals[pos] = _NO_PAIR
        before = prv[pos]
        if before >= 0:
            vals[before] = lookup_pair(pairs, pair_shift, ids[before], ids[pos])
            if vals[before] != _NO_PAIR:
                size = heap_push(heap, size, ((vals[before] >> 32) << 32) | before)
    k = 0
    while k < n:
        out[o] = ids[k]
        o += 1
        k = nxt[k]
    return o


CACHE_PIECE_BYTES = 24  # pieces up to this long are remembered ...
CACHE_IDS = 6  # ... when they encode to at most this many ids
CACHE_ENTRIES = 4096  # 64-byte entries: 256 KiB per thread, stays in L2 (16k-64k measured no faster)


def new_piece_cache(num_entries: int = CACHE_ENTRIES) -> np.ndarray:
    """An empty direct-mapped piece cache for `merge_piece` (one per thread)."""
    cache = np.zeros((num_entries, 8), dtype=np.int64)
    cache[:, 0] = -1
    return cache


@kernel
def cache_slot(cache, buf, start, end, words):
    """Pack the piece into `words` (3 x 8 bytes) and return its cache slot."""
    words[0] = 0
    words[1] = 0
    words[2] = 0
    for i in range(end - start):
        words[i >> 3] |= np.int64(buf[start + i]) << np.int64(8 * (i & 7))
    h = np.uint64(words[0]) * _GOLDEN
    h ^= np.uint64(words[1]) * _FNV_PRIME
    h ^= np.uint64(words[2]) + np.uint64(end - start)
    h *= _GOLDEN
    return np.int64(h >> np.uint64(40)) & np.int64(cache.shape[0] - 1)


@kernel
def merge_piece(buf, start, end, out, o, tables, scratch_ids, scratch_vals, cache, words):
    """Encode buf[start:end] (one piece) into out[o:]; return the new `o`.

    `tables` = (byte_ids, pairs, pair_shift, tokens); a piece found in
    `tokens` is emitted as that token without merging (the builder puts
    only tokens there for which that is the right answer). Other short
    pieces go through `cache`, a direct-mapped table of recent pieces and
    their ids (entry: length, 3 words of bytes, id count, 6 ids as int32
    pairs); the piece bytes are compared in full, so a hit is exact.
    """
    byte_ids, pairs, pair_shift, tokens = tables
    n = end - start
    if n == 1:
        out[o] = byte_ids[buf[start]]
        return o + 1
    t = lookup_token(tokens, buf, start, end)
    if t >= 0:
        out[o] = t
        return o + 1
    if n > SMALL_PIECE:
        return merge_long(buf, start, end, out, o, byte_ids, pairs, pair_shift)
    use_cache = n <= CACHE_PIECE_BYTES and cache.shape[0] > 0
    if use_cache:
        s = cache_slot(cache, buf, start, end, words)
        if (cache[s, 0] == n and cache[s, 1] == words[0] and cache[s, 2] == words[1]
                and cache[s, 3] == words[2]):
            m = cache[s, 4]
            for k in range(m):
                out[o + k] = (cache[s, 5 + (k >> 1)] >> np.int64(32 * (k & 1))) & 0xFFFFFFFF
            return o + m
    m = merge_small(buf, start, end, byte_ids, pairs, pair_shift, scratch_ids, scratch_vals)
    for k in range(m):
        out[o + k] = scratch_ids[k]
    if use_cache and m <= CACHE_IDS:
        cache[s, 0] = n
        cache[s, 1] = words[0]
        cache[s, 2] = words[1]
        cache[s, 3] = words[2]
        cache[s, 4] = m
        cache[s, 5] = 0
        cache[s, 6] = 0
        cache[s, 7] = 0
        for k in range(m):
            cache[s, 5 + (k >> 1)] |= scratch_ids[k] << np.int64(32 * (k & 1))
    return o + m


@kernel
def special_at(buf, p, end, specials):
    """(index, length) of the longest special token starting at `p`, or (-1, 0)."""
    spec_bytes, spec_offsets, spec_ids, spec_first = specials
    best = -1
    best_len = 0
    if not spec_first[buf[p]]:
        return best, best_len
    for k in range(spec_ids.shape[0]):
        a = spec_offsets[k]
        length = spec_offsets[k + 1] - a
        if length <= best_len or p + length > end:
            continue
        same = True
        for i in range(length):
            if spec_bytes[a + i] != buf[p + i]:
                same = False
                break
        if same:
            best = k
            best_len = length
    return best, best_len


@kernel
def encode_segment(buf, start, end, out, o, table, pattern, tables, scratch_ids, scratch_vals, cache, words):
    pattern_id, max_digits, ws_end_whole = pattern
    i = start
    while i < end:
        j = piece_end(buf, i, end, table, pattern_id, max_digits, ws_end_whole)
        o = merge_piece(buf, i, j, out, o, tables, scratch_ids, scratch_vals, cache, words)
        i = j
    return o


@kernel
def encode_documents(data, offsets, valid, doc_start, doc_stop, out, out_offsets,
                     table, pattern, tables, specials, cache):
    """Encode documents [doc_start, doc_stop) of an Arrow-layout string batch.

    Document d is data[offsets[d]:offsets[d+1]] (UTF-8; already validated);
    `valid[d] == 0` makes it empty (`valid` may be empty: no nulls). Ids go to
    `out` from index `out_offsets[0]`; `out_offsets[d - doc_start + 1]` gets
    the end of document d. A document starts only if `out` has room for one
    id per byte (the most it can need). Returns the number of documents done.
    Allowed special tokens (`specials`) are cut out first, leftmost-longest,
    and the text between them is encoded on its own, as HF and tiktoken do.
    `cache` is this thread's piece cache (`new_piece_cache`; 0 rows: none).
    """
    scratch_ids = np.empty(SMALL_PIECE, dtype=np.int64)
    scratch_vals = np.empty(SMALL_PIECE, dtype=np.int64)
    words = np.empty(3, dtype=np.int64)
    num_specials = specials[2].shape[0]
    has_validity = valid.shape[0] > 0
    o = out_offsets[0]
    for d in range(doc_start, doc_stop):
        start = offsets[d]
        end = offsets[d + 1]
        if has_validity and valid[d] == 0:
            end = start
        if start < 0 or end < start or end > data.shape[0]:
            return d - doc_start  # caller validates offsets; never read out of bounds
        if o + (end - start) > out.shape[0]:
            return d - doc_start
        if num_specials == 0:
            o = encode_segment(data, start, end, out, o, table, pattern, tables,
                               scratch_ids, scratch_vals, cache, words)
        else:
            seg = start
            p = start
            while p < end:
                k, length = special_at(data, p, end, specials)
                if k < 0:
                    p += 1
                    continue
                o = encode_segment(data, seg, p, out, o, table, pattern, tables,
                                   scratch_ids, scratch_vals, cache, words)
                out[o] = specials[2][k]
                o += 1
                p += length
                seg = p
            o = encode_segment(data, seg, end, out, o, table, pattern, tables,
                               scratch_ids, scratch_vals, cache, words)
        out_offsets[d - doc_start + 1] = o
    return doc_stop - doc_start


@kernel
def utf8_sequence_end(buf, i, end):
    """Index after the valid UTF-8 sequence at `i`, or -1 (strict, as Python decodes)."""
    b0 = buf[i]
    if b0 < 0x80:
        return i + 1
    if b0 < 0xC2 or b0 > 0xF4:
        return -1
    if b0 < 0xE0:
        need = 1
        lo, hi = 0x80, 0xBF
    elif b0 < 0xF0:
        need = 2
        lo, hi = 0x80, 0xBF
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
    else:
        need = 3
        lo, hi = 0x80, 0xBF
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
    if i + need >= end:
        return -1
    b1 = buf[i + 1]
    if b1 < lo or b1 > hi:
        return -1
    for k in range(2, need + 1):
        b = buf[i + k]
        if b < 0x80 or b > 0xBF:
            return -1
    return i + need + 1


@kernel
def find_invalid_utf8(data, offsets, valid, bad):
    """Set bad[d] for each document that is not valid UTF-8; return how many."""
    has_validity = valid.shape[0] > 0
    count = 0
    for d in range(offsets.shape[0] - 1):
        bad[d] = False
        if has_validity and valid[d] == 0:
            continue
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            if data[i] < 0x80:  # fast path for ASCII
                i += 1
                continue
            j = utf8_sequence_end(data, i, end)
            if j < 0:
                bad[d] = True
                count += 1
                break
            i = j
    return count
