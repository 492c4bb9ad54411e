"""Byte-level BPE kernels: the merge loop and the batch encoder.

What lives here: the merge of one pre-tokenized piece (short loop, heap
loop, piece cache), the special-token scan, and `encode_documents`, the one
compiled loop that turns a batch of UTF-8 documents (Arrow layout: `data` +
`offsets`) into token ids with no Python per document. What does not: the
hash tables (`hashtable.py`), the pattern matchers (`pretokenize.py`), UTF-8
validation (`utf8.py`), and reading vocabulary files or deciding which
tables to build (`fastload/tokenizer/`).

Merge semantics. A pair table maps `(left_id, right_id)` to `(rank, new_id)`;
the lowest rank is merged first, leftmost on ties. Filled from a
`tokenizer.json`'s `merges` this is exactly Hugging Face's BPE model; filled
with every split `(a, b)` of every token `t = a + b` and `rank = id(t)` it is
exactly tiktoken's "merge the adjacent pair whose concatenated bytes have the
lowest rank". tiktoken's "a piece that is a whole token is emitted as is"
(also HF's `ignore_merges`) uses the whole-token table.

Trade-offs. A piece that is a whole token costs one probe of the token
index. Every merge loop starts from single bytes, so its first lookups go
to a dense 256 x 256 table of byte pairs; later ones to the packed pair
table (8 bytes a slot) in `hashtable.py`. Short pieces that are not tokens use tiktoken's simple loop —
rescan the pair ranks after each merge, O(n^2) but branch-light and
allocation-free — behind a small direct-mapped per-thread cache of recent
pieces (about 70% hits on natural text, worth 5-10%). Pieces longer than
`SMALL_PIECE` bytes switch to a linked list plus a binary heap with lazy
deletion, O(n log n), so minified JSON, base64 or a megabyte of unbroken CJK
cannot make the encoder quadratic. Profile (5 MB multilingual text, cl100k,
after inlining): pre-tokenization ~15% of the time, whole-token lookups
~20%, merges the rest.

The per-piece path (`merge_piece`, `merge_small`, the cache probe and the
table lookups) is `inline="always"`: as separate Numba functions their call
overhead was half the run time (cl100k, 5 MB: 14 MB/s called, 26 MB/s
inlined), at the price of a ~20 s first compile, cached on disk after that.

Every kernel writes into caller-provided buffers and returns how much it
wrote; `bpe_reference.py` holds the readable twins.
"""

from __future__ import annotations

import numpy as np

from fastload.tokenizer.kernels.hashtable import NO_PAIR as _NO_PAIR
from fastload.tokenizer.kernels.hashtable import lookup_pair, lookup_token
from fastload.kernels.jit import kernel
from fastload.tokenizer.kernels.pretokenize import piece_end

__all__ = [
    "SMALL_PIECE",
    "merge_small",
    "merge_long",
    "merge_piece",
    "new_piece_cache",
    "self_merging_tokens",
    "encode_documents",
]

SMALL_PIECE = 48  # bytes; above this the heap merge wins (measured on "a" * n)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FNV_PRIME = np.uint64(0x100000001B3)


@kernel
def self_merging_tokens(token_ids, tok_bytes, tok_offsets, byte_ids, byte_pairs, pairs, keep):
    """keep[k] = True when merging the bytes of token_ids[k] gives exactly that token.

    Only such tokens may short-cut the merge loop under HF semantics (without
    `ignore_merges`): for them "the piece is a token" and "the merges produce
    the token" are the same statement. Returns how many are kept.
    """
    scratch_ids = np.empty(SMALL_PIECE, dtype=np.int64)
    scratch_vals = np.empty(SMALL_PIECE, dtype=np.int64)
    count = 0
    for k in range(token_ids.shape[0]):
        t = token_ids[k]
        a = tok_offsets[t]
        b = tok_offsets[t + 1]
        keep[k] = False
        if b - a < 2:
            continue
        if b - a <= SMALL_PIECE:
            m = merge_small(tok_bytes, a, b, byte_ids, byte_pairs, pairs, scratch_ids, scratch_vals)
            ok = m == 1 and scratch_ids[0] == t
        else:
            buf = np.empty(b - a, dtype=np.int64)
            m = merge_long(tok_bytes, a, b, buf, 0, byte_ids, byte_pairs, pairs)
            ok = m == 1 and buf[0] == t
        if ok:
            keep[k] = True
            count += 1
    return count


@kernel(inline="always")
def merge_small(buf, start, end, byte_ids, byte_pairs, pairs, ids, vals):
    """tiktoken's loop for a short piece: rescan ranks after every merge.
    The result is left in ids[:m]; returns m."""
    m = end - start
    for k in range(m):
        ids[k] = byte_ids[buf[start + k]]
    for k in range(m - 1):  # byte pairs: a dense 256 x 256 table, no hashing
        vals[k] = byte_pairs[buf[start + k], buf[start + k + 1]]
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
            vals[at] = lookup_pair(pairs, ids[at], ids[at + 1])
        if at > 0:
            vals[at - 1] = lookup_pair(pairs, ids[at - 1], ids[at])
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
def merge_long(buf, start, end, out, o, byte_ids, byte_pairs, pairs):
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
        vals[k] = byte_pairs[buf[start + k], buf[start + k + 1]]
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
            vals[pos] = lookup_pair(pairs, ids[pos], ids[nxt[pos]])
            if vals[pos] != _NO_PAIR:
                size = heap_push(heap, size, ((vals[pos] >> 32) << 32) | pos)
        else:
            vals[pos] = _NO_PAIR
        before = prv[pos]
        if before >= 0:
            vals[before] = lookup_pair(pairs, ids[before], ids[pos])
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


@kernel(inline="always")
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


@kernel(inline="always")
def merge_piece(buf, start, end, out, o, tables, scratch_ids, scratch_vals, cache, words):
    """Encode buf[start:end] (one piece) into out[o:]; return the new `o`.

    `tables` = (byte_ids, byte_pairs, pairs, tokens) as built by
    `fastload/tokenizer/tables.py`; a piece found in
    `tokens` is emitted as that token without merging (the builder puts
    only tokens there for which that is the right answer). Other short
    pieces go through `cache`, a direct-mapped table of recent pieces and
    their ids (entry: length, 3 words of bytes, id count, 6 ids as int32
    pairs); the piece bytes are compared in full, so a hit is exact.
    """
    byte_ids, byte_pairs, pairs, tokens = tables
    n = end - start
    if n == 1:
        out[o] = byte_ids[buf[start]]
        return o + 1
    t = lookup_token(tokens, buf, start, end)
    if t >= 0:
        out[o] = t
        return o + 1
    if n > SMALL_PIECE:
        return merge_long(buf, start, end, out, o, byte_ids, byte_pairs, pairs)
    use_cache = n <= CACHE_PIECE_BYTES and cache.shape[0] > 0
    if use_cache:
        s = cache_slot(cache, buf, start, end, words)
        if (cache[s, 0] == n and cache[s, 1] == words[0] and cache[s, 2] == words[1]
                and cache[s, 3] == words[2]):
            m = cache[s, 4]
            for k in range(m):
                out[o + k] = (cache[s, 5 + (k >> 1)] >> np.int64(32 * (k & 1))) & 0xFFFFFFFF
            return o + m
    m = merge_small(buf, start, end, byte_ids, byte_pairs, pairs, scratch_ids, scratch_vals)
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
