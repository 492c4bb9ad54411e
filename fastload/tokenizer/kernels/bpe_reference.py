"""The slow, readable twin of `bpe.py`, for the tests.

BPE merging written as the definitions: tiktoken's "merge the adjacent pair
whose concatenation has the lowest rank" and HF's "apply the listed merge
with the lowest rank", and a whole encode (pre-tokenize with the twin in
`pretokenize_reference.py`, then merge each piece). What does not live here:
anything fast (no hash tables, no heap); nothing here is used at run time.

The tests compare the kernels against these and both against HF tokenizers
and tiktoken; if a kernel and its twin disagree, read this file first.
"""

from __future__ import annotations

from fastload.tokenizer.kernels.pretokenize_reference import pretokenize_reference

__all__ = ["merge_by_ranks", "merge_by_merges", "encode_reference"]


def merge_by_ranks(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """tiktoken: merge the adjacent pair whose concatenated bytes rank lowest."""
    if piece in ranks:
        return [ranks[piece]]
    parts = [bytes([b]) for b in piece]
    while True:
        candidates = [(ranks[a + b], k) for k, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not candidates:
            return [ranks[p] for p in parts]
        _, k = min(candidates)
        parts[k : k + 2] = [parts[k] + parts[k + 1]]


def merge_by_merges(piece: bytes, byte_ids: list[int], merges: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """HF: apply the listed merge (a, b) -> (rank, new id) with the lowest rank, leftmost first."""
    ids = [byte_ids[b] for b in piece]
    while True:
        candidates = [(merges[pair][0], k) for k, pair in enumerate(zip(ids, ids[1:])) if pair in merges]
        if not candidates:
            return ids
        _, k = min(candidates)
        ids[k : k + 2] = [merges[(ids[k], ids[k + 1])][1]]


def encode_reference(text: str, *, pattern_id: int, max_digits: int, ws_end_whole: bool, merge) -> list[int]:
    """Pre-tokenize, then `merge(piece_bytes)` each piece (special tokens not handled)."""
    ids: list[int] = []
    for piece in pretokenize_reference(text, pattern_id, max_digits, ws_end_whole):
        ids.extend(merge(piece.encode("utf-8")))
    return ids
