"""The merge kernel agrees with the readable definitions (tiktoken's bytes-rank
rule and HF's merge-list rule) on short pieces, on long pieces that take the
heap path, and stays fast enough on pathological pieces to finish at all."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.tokenizer.kernels.bpe import SMALL_PIECE, merge_piece, new_piece_cache
from fastload.tokenizer.kernels.bpe_reference import merge_by_merges, merge_by_ranks
from fastload.tokenizer import Tokenizer

FRAGMENTS = ["the", " the", "ing", "a", "aa", "ab", "b", "中", "文", " ", "  ", "\n", "er", "re", "é", "x", "0"]
PIECES = st.lists(st.sampled_from(FRAGMENTS), max_size=120).map(lambda parts: "".join(parts).encode("utf-8"))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


CACHE = new_piece_cache(64)  # small, so that pieces evict each other often


def kernel_merge(tok: Tokenizer, piece: bytes, cache: np.ndarray = CACHE) -> list[int]:
    if not piece:
        return []
    tables = tok._kernel_tables().vocab
    buf = np.frombuffer(piece, dtype=np.uint8)
    out = np.empty(len(piece), dtype=np.uint32)
    scratch = np.empty(SMALL_PIECE, dtype=np.int64), np.empty(SMALL_PIECE, dtype=np.int64)
    n = merge_piece(buf, 0, len(piece), out, 0, tables, *scratch, cache, np.empty(3, dtype=np.int64))
    return out[:n].tolist()


@pytest.fixture(scope="module")
def tiktoken_style(rank_files):
    path, specials = rank_files["cl100k"]
    tok = Tokenizer.from_tiktoken(path, pattern="cl100k", special_tokens=specials)
    ranks = {tok.id_to_bytes(i): i for i in tok._vocab.lookup_ids.tolist()}
    return tok, ranks


@pytest.fixture(scope="module")
def hf_style(hf_files):
    tok = Tokenizer.from_file(hf_files["cl100k"])
    merges = {(int(a), int(b)): (int(rank), int(new)) for a, b, new, rank in tok._vocab.merges}
    return tok, tok._vocab.byte_ids.tolist(), merges


@SETTINGS
@given(piece=PIECES)
def test_merge_kernel_matches_tiktoken_rank_rule(tiktoken_style, piece):
    tok, ranks = tiktoken_style
    assert kernel_merge(tok, piece) == merge_by_ranks(piece, ranks)


@SETTINGS
@given(piece=PIECES)
def test_merge_kernel_matches_hf_merge_list_rule(hf_style, piece):
    tok, byte_ids, merges = hf_style
    assert kernel_merge(tok, piece) == merge_by_merges(piece, byte_ids, merges)


@SETTINGS
@given(pieces=st.lists(PIECES, min_size=1, max_size=30))
def test_piece_cache_hits_give_the_same_ids_as_merging(tiktoken_style, pieces):
    tok, ranks = tiktoken_style
    cache = new_piece_cache(16)
    for piece in pieces + pieces[::-1] + pieces:  # repeats hit, collisions evict
        assert kernel_merge(tok, piece, cache) == merge_by_ranks(piece, ranks)


@pytest.mark.parametrize("length", [SMALL_PIECE - 1, SMALL_PIECE, SMALL_PIECE + 1, 500])
def test_short_and_heap_paths_agree_around_the_threshold(tiktoken_style, length):
    tok, ranks = tiktoken_style
    for unit in ("a", "ab", "the ", "中文"):
        piece = (unit * length).encode("utf-8")[:length]
        assert kernel_merge(tok, piece) == merge_by_ranks(piece, ranks)


def test_a_megabyte_piece_is_not_quadratic(tiktoken_style):
    # A quadratic merge loop would need ~10^12 steps here and never finish.
    tok, _ = tiktoken_style
    text = "the" * 333_333  # one piece: letters only
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text) // 2
