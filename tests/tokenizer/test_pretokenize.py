"""The pre-tokenization kernels split text exactly like HF tokenizers' regex
engine (and like the readable reference) for every supported pattern."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.tokenizer.kernels.pretokenize_reference import pretokenize_reference
from fastload.tokenizer.kernels.pretokenize import split_pieces
from fastload.tokenizer.kernels.unicode_table import load_unicode_table
from fastload.tokenizer import patterns
from tests.tokenizer.corpora import ALL_TEXTS

# (pattern as HF reads it, regex string handed to HF)
CASES = {
    "gpt2": (patterns.GPT2, patterns.GPT2_PATTERN),
    "cl100k": (patterns.CL100K, patterns.CL100K_PATTERN),
    "cl100k-possessive-as-hf-reads-it": (patterns.CL100K_ONIGURUMA, patterns.CL100K_POSSESSIVE_PATTERN),
    "cl100k-single-digit": (patterns.CL100K_SINGLE_DIGIT, patterns.CL100K_SINGLE_DIGIT_PATTERN),
    "o200k": (patterns.O200K, patterns.O200K_PATTERN),
}
# Characters that exercise every branch of the matchers, mixed densely.
TRICKY = list("aAzZ sS'tTlLvVrReEdDmM\t\r\n\x0b\x1c\u0085\u00a0\u3000.,/!?-_09٣²中한😀\u200d\u0301ſǅʰσΣ") + ["\r\n", "  ", "'ll"]


def kernel_pieces(text: str, pattern: patterns.Pattern) -> list[str]:
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ends = np.empty(raw.shape[0] + 1, dtype=np.int64)
    n = split_pieces(raw, 0, raw.shape[0], load_unicode_table(), *pattern.as_kernel_args(), ends)
    starts = [0, *ends[: n - 1].tolist()]
    return [raw[a:b].tobytes().decode("utf-8") for a, b in zip(starts, ends[:n].tolist())]


def hf_pieces(text: str, regex: str) -> list[str]:
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(regex), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def assert_same_pieces(text: str, name: str) -> None:
    pattern, regex = CASES[name]
    expected = hf_pieces(text, regex)
    assert kernel_pieces(text, pattern) == expected, (name, text)
    assert pretokenize_reference(text, *pattern.as_kernel_args()) == expected, (name, text)


@pytest.mark.parametrize("name", CASES)
def test_corpus_pieces_match_hf_regex_and_reference(name):
    for text in ALL_TEXTS:
        assert_same_pieces(text, name)


@pytest.mark.parametrize("name", CASES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(TRICKY), max_size=24).map("".join))
def test_dense_tricky_strings_split_like_hf(name, text):
    assert_same_pieces(text, name)


@pytest.mark.parametrize("name", CASES)
@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_random_unicode_splits_like_hf(name, text):
    assert_same_pieces(text, name)


def test_whitespace_before_a_word_gives_its_last_space_to_the_word():
    assert kernel_pieces("Hello there       dear", patterns.GPT2) == ["Hello", " there", "      ", " dear"]
    assert kernel_pieces("a  b", patterns.CL100K) == ["a", " ", " b"]


def test_cl100k_splits_digits_in_threes_but_hf_reads_the_possessive_spelling_as_unbounded():
    assert kernel_pieces("20260509073455", patterns.CL100K_TIKTOKEN) == ["202", "605", "090", "734", "55"]
    assert kernel_pieces("20260509073455", patterns.CL100K_ONIGURUMA) == ["20260509073455"]


def test_tiktoken_cl100k_keeps_trailing_whitespace_whole_where_the_original_spelling_splits():
    assert kernel_pieces("x\n  ", patterns.CL100K_TIKTOKEN) == ["x", "\n  "]
    assert kernel_pieces("x\n  ", patterns.CL100K) == ["x", "\n", "  "]


def test_truncated_utf8_at_the_end_of_a_range_never_reads_past_it():
    raw = np.frombuffer("a中".encode("utf-8"), dtype=np.uint8)  # 1 + 3 bytes
    ends = np.empty(8, dtype=np.int64)
    for pattern in (patterns.GPT2, patterns.CL100K, patterns.O200K):
        n = split_pieces(raw, 0, 3, load_unicode_table(), *pattern.as_kernel_args(), ends)
        assert ends[n - 1] == 3 and all(0 < e <= 3 for e in ends[:n])
