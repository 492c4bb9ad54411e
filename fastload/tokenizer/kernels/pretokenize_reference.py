"""The slow, readable twin of `pretokenize.py`, for the tests.

Pre-tokenization written as the regex alternatives it implements, over a
Python `str` (one code point at a time, classes from the shipped table):
GPT-2's, cl100k's and o200k's patterns. Nothing fast and nothing used at
run time. The tests compare `split_pieces` against `pretokenize_reference`
and both against HF tokenizers and tiktoken; if they disagree, read this
file first.
"""

from __future__ import annotations

from fastload.tokenizer.kernels.pattern_ids import PATTERN_CL100K, PATTERN_GPT2, PATTERN_NONE, PATTERN_O200K
from fastload.tokenizer.kernels.unicode_table import LETTER, LOWERISH, NUMBER, SPACE, UPPERISH, load_unicode_table

__all__ = ["pretokenize_reference"]

_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


class _Text:
    """A str with class tests by position (past the end: no class)."""

    def __init__(self, text: str):
        self.text = text
        self.table = load_unicode_table()

    def has(self, i: int, bits: int) -> bool:
        return i < len(self.text) and bool(self.table[ord(self.text[i])] & bits)

    def other(self, i: int) -> bool:  # [^\s\p{L}\p{N}]
        return i < len(self.text) and not self.has(i, LETTER | NUMBER | SPACE)

    def run(self, i: int, test) -> int:
        while i < len(self.text) and test(i):
            i += 1
        return i

    def contraction(self, i: int, ignore_case: bool) -> int | None:
        """End of 's|'t|'re|'ve|'m|'ll|'d at i, or None."""
        if not self.text.startswith("'", i):
            return None
        for c in _CONTRACTIONS:
            got = self.text[i + 1 : i + 1 + len(c)]
            if ignore_case:
                got = got.replace("\u017f", "s").lower()  # ſ folds to s in both engines
            if got == c:
                return i + 1 + len(c)
        return None

    def whitespace(self, i: int, *, newline_rule: bool, ws_end_whole: bool) -> int:
        j = self.run(i, lambda k: self.has(k, SPACE))
        if ws_end_whole and j == len(self.text):
            return j  # \s++$
        if newline_rule:  # \s*[\r\n]+ : up to the last newline of the run
            newlines = [k for k in range(i, j) if self.text[k] in "\r\n"]
            if newlines:
                return newlines[-1] + 1
        if j == len(self.text) or j - i == 1:
            return j  # \s+(?!\S) at the end, or \s+ for a single character
        return j - 1  # \s+(?!\S): leave the last space to the next word


def _gpt2(t: _Text, i: int) -> int:
    end = t.contraction(i, ignore_case=False)
    if end is not None:
        return end
    start = i + 1 if t.text[i] == " " else i
    for test in (lambda k: t.has(k, LETTER), lambda k: t.has(k, NUMBER), t.other):
        # ' ?X+': with the space if the space is followed by X, else without
        if start != i and test(start):
            return t.run(start, test)
        if test(i):
            return t.run(i, test)
    return t.whitespace(i, newline_rule=False, ws_end_whole=False)


def _cl100k(t: _Text, i: int, max_digits: int, ws_end_whole: bool) -> int:
    end = t.contraction(i, ignore_case=True)
    if end is not None:
        return end
    letter = lambda k: t.has(k, LETTER)  # noqa: E731
    if letter(i):
        return t.run(i, letter)
    if t.text[i] not in "\r\n" and not t.has(i, NUMBER) and letter(i + 1):
        return t.run(i + 1, letter)
    if t.has(i, NUMBER):
        j = t.run(i, lambda k: t.has(k, NUMBER))
        return j if max_digits == 0 else min(j, i + max_digits)
    if t.text[i] == " " and t.other(i + 1):
        return t.run(t.run(i + 1, t.other), lambda k: t.text[k] in "\r\n")
    if t.other(i):
        return t.run(t.run(i, t.other), lambda k: t.text[k] in "\r\n")
    return t.whitespace(i, newline_rule=True, ws_end_whole=ws_end_whole)


def _o200k_word(t: _Text, p: int, lower_first: bool) -> int | None:
    upper = lambda k: t.has(k, UPPERISH)  # noqa: E731
    lower = lambda k: t.has(k, LOWERISH)  # noqa: E731
    if lower_first:  # [U]*[W]+ : try every split of the U-run, longest first
        u_end = t.run(p, upper)
        for k in range(u_end, p - 1, -1):
            if lower(k):
                end = t.run(k, lower)
                break
        else:
            return None
    else:  # [U]+[W]*
        if not upper(p):
            return None
        end = t.run(t.run(p, upper), lower)
    after = t.contraction(end, ignore_case=True)
    return end if after is None else after


def _o200k(t: _Text, i: int) -> int:
    prefix_ok = t.text[i] not in "\r\n" and not t.has(i, LETTER | NUMBER)
    for lower_first in (True, False):
        for p in ((i + 1, i) if prefix_ok else (i,)):
            if p < len(t.text):
                end = _o200k_word(t, p, lower_first)
                if end is not None:
                    return end
    if t.has(i, NUMBER):
        return min(t.run(i, lambda k: t.has(k, NUMBER)), i + 3)
    if t.text[i] == " " and t.other(i + 1):
        return t.run(t.run(i + 1, t.other), lambda k: t.text[k] in "\r\n/")
    if t.other(i):
        return t.run(t.run(i, t.other), lambda k: t.text[k] in "\r\n/")
    return t.whitespace(i, newline_rule=True, ws_end_whole=False)


def pretokenize_reference(text: str, pattern_id: int, max_digits: int = 3, ws_end_whole: bool = False) -> list[str]:
    """The pieces of `text` under a pattern (ids from `pattern_ids.py`)."""
    t = _Text(text)
    pieces, i = [], 0
    while i < len(text):
        if pattern_id == PATTERN_GPT2:
            j = _gpt2(t, i)
        elif pattern_id == PATTERN_CL100K:
            j = _cl100k(t, i, max_digits, ws_end_whole)
        elif pattern_id == PATTERN_O200K:
            j = _o200k(t, i)
        elif pattern_id == PATTERN_NONE:
            j = i + 1
        else:
            raise ValueError(f"unknown pattern id {pattern_id}")
        pieces.append(text[i:j])
        i = j
    return pieces
