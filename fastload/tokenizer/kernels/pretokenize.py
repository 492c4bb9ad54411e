"""Pre-tokenization kernels: hand-written matchers for the byte-level BPE regexes.

What lives here: one matcher per supported pattern family, each answering
"the regex match that starts at byte `i` ends where?" on UTF-8 bytes, plus
the UTF-8 decoder and class lookups they share. The patterns and their exact
spellings are listed in `fastload/tokenizer/patterns.py`; the matchers follow
the regex alternation order and reproduce its backtracking by hand:

* GPT-2 (HF `ByteLevel(use_regex=True)`, tiktoken r50k/p50k/gpt2)::

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

* cl100k family (cl100k_base, Llama 3), parameterised by the longest digit
  group (`{1,3}` = 3; 0 = unbounded, which is how HF's Oniguruma reads
  tiktoken's `\\p{N}{1,3}+`) and by `\\s++$` (tiktoken >= 0.8 keeps white space
  that runs to the end of the text whole)::

    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}
    | ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

* o200k (o200k_base): case-aware words with optional contractions, digit
  groups of three, `[\\r\\n/]*` after punctuation.

What does not live here: the merges (`bpe.py`) and any general regex engine.

Small helpers are `inline="always"`: Numba's calling convention (status
code, tuple returns through memory) made the decoder 10x slower as a call
than inline (140 vs 1,300 MB/s scanning classes). The three matchers and
their larger parts stay separate functions: inlining those too made the
splitter faster still (to ~230 MB/s) but the encoder took minutes to
compile, and inlining just the white-space and cased-word helpers added 6 s
of compile for no measurable gain end to end.
Trade-off: three matchers written by hand are far faster than a regex engine
in Numba and let the tokenizer stay in one compiled loop, but each supported
pattern is code; an unknown pattern is refused when the tokenizer is loaded
rather than run approximately. `fastload/kernels/bpe_reference.py` holds the
readable twins the tests compare these with.

Input is assumed to be valid UTF-8 (the tokenizer repairs invalid documents
first); a truncated sequence at the end of a range still never reads past
`end`, it decodes as U+FFFD.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.jit import kernel
from fastload.tokenizer.kernels.pattern_ids import PATTERN_CL100K, PATTERN_GPT2, PATTERN_NONE, PATTERN_O200K

__all__ = [
    "PATTERN_GPT2",
    "PATTERN_CL100K",
    "PATTERN_O200K",
    "PATTERN_NONE",
    "decode_at",
    "piece_end",
]

# class bits, mirrored from unicode_table.py (module constants are frozen into kernels)
_L = 1
_N = 2
_S = 4
_U = 8
_W = 16
_APOSTROPHE = 39
_SPACE = 32
_CR = 13
_LF = 10
_SLASH = 47
_REPLACEMENT = 0xFFFD


@kernel(inline="always")
def decode_at(buf, i, end):
    """Code point starting at byte `i` (< end) and the index after it."""
    b0 = np.int64(buf[i])
    if b0 < 0x80:
        return b0, i + 1
    if b0 < 0xE0:
        if i + 1 >= end:
            return np.int64(_REPLACEMENT), end
        return ((b0 & 0x1F) << 6) | (np.int64(buf[i + 1]) & 0x3F), i + 2
    if b0 < 0xF0:
        if i + 2 >= end:
            return np.int64(_REPLACEMENT), end
        return (((b0 & 0x0F) << 12) | ((np.int64(buf[i + 1]) & 0x3F) << 6)
                | (np.int64(buf[i + 2]) & 0x3F)), i + 3
    if i + 3 >= end:
        return np.int64(_REPLACEMENT), end
    cp = (((b0 & 0x07) << 18) | ((np.int64(buf[i + 1]) & 0x3F) << 12)
          | ((np.int64(buf[i + 2]) & 0x3F) << 6) | (np.int64(buf[i + 3]) & 0x3F))
    if cp >= 0x110000:
        cp = np.int64(_REPLACEMENT)
    return cp, i + 4


@kernel(inline="always")
def class_at(buf, i, end, table):
    """(class bits, code point, next index) of the code point at `i`."""
    cp, j = decode_at(buf, i, end)
    return np.int64(table[cp]), cp, j


@kernel(inline="always")
def run_with(buf, i, end, table, mask):
    """End of the run of code points from `i` whose class has any bit of `mask`."""
    while i < end:
        c, cp, j = class_at(buf, i, end, table)
        if (c & mask) == 0:
            break
        i = j
    return i


@kernel(inline="always")
def run_without(buf, i, end, table, mask):
    """End of the run of code points from `i` whose class has no bit of `mask`."""
    while i < end:
        c, cp, j = class_at(buf, i, end, table)
        if (c & mask) != 0:
            break
        i = j
    return i


@kernel(inline="always")
def run_of_bytes(buf, i, end, a, b, c):
    """End of the run of ASCII bytes from `i` equal to a, b or c."""
    while i < end and (buf[i] == a or buf[i] == b or buf[i] == c):
        i += 1
    return i


@kernel(inline="always")
def is_letter_ci(buf, i, end, lower):
    """True when the code point at `i` is ASCII letter `lower` in either case
    (for `s` also U+017F LATIN SMALL LETTER LONG S, which both reference
    engines fold to `s` under `(?i)`)."""
    if i >= end:
        return False, i
    b = buf[i]
    if b == lower or b == lower - 32:
        return True, i + 1
    if lower == 115 and b == 0xC5 and i + 1 < end and buf[i + 1] == 0xBF:
        return True, i + 2
    return False, i


@kernel
def contraction_end(buf, j, end, ignore_case):
    """After an apostrophe ending at `j`: the end of s|t|re|ve|m|ll|d, or -1."""
    if j >= end:
        return -1
    if not ignore_case:
        b = buf[j]
        if b == 115 or b == 116 or b == 109 or b == 100:  # s t m d
            return j + 1
        if j + 1 < end:
            b2 = buf[j + 1]
            if (b == 114 and b2 == 101) or (b == 118 and b2 == 101) or (b == 108 and b2 == 108):
                return j + 2
        return -1
    for one in (115, 116, 109, 100):  # s t m d
        ok, k = is_letter_ci(buf, j, end, one)
        if ok:
            return k
    for first, second in ((114, 101), (118, 101), (108, 108)):  # re ve ll
        ok, k = is_letter_ci(buf, j, end, first)
        if ok:
            ok2, k2 = is_letter_ci(buf, k, end, second)
            if ok2:
                return k2
    return -1


@kernel
def whitespace_end(buf, i, j, end, table, newline_rule, ws_end_whole):
    """The white-space alternatives, for a white-space code point at [i, j).

    `newline_rule`: try `\\s*[\\r\\n]+` first (cl100k, o200k). `ws_end_whole`:
    try `\\s++$` before that (tiktoken >= 0.8 cl100k). Then `\\s+(?!\\S)`
    (the run minus its last code point when a non-space follows) and `\\s+`.
    """
    last_start = i
    after_newline = -1
    k = i
    while k < end:
        c, cp, k2 = class_at(buf, k, end, table)
        if (c & _S) == 0:
            break
        last_start = k
        if cp == _CR or cp == _LF:
            after_newline = k2
        k = k2
    if k == end and ws_end_whole:
        return k
    if newline_rule and after_newline >= 0:
        return after_newline
    if k == end:
        return k
    if last_start > i:
        return last_start
    return k


@kernel
def piece_end_gpt2(buf, i, end, table):
    """End of the GPT-2 pattern match starting at `i`."""
    c, cp, j = class_at(buf, i, end, table)
    if cp == _APOSTROPHE:
        k = contraction_end(buf, j, end, False)
        if k >= 0:
            return k
    if cp == _SPACE and j < end:
        c2, cp2, j2 = class_at(buf, j, end, table)
        if c2 & _L:
            return run_with(buf, j2, end, table, _L)
        if c2 & _N:
            return run_with(buf, j2, end, table, _N)
        if (c2 & (_L | _N | _S)) == 0:
            return run_without(buf, j2, end, table, _L | _N | _S)
    if c & _L:
        return run_with(buf, j, end, table, _L)
    if c & _N:
        return run_with(buf, j, end, table, _N)
    if (c & _S) == 0:
        return run_without(buf, j, end, table, _L | _N | _S)
    return whitespace_end(buf, i, j, end, table, False, False)


@kernel(inline="always")
def digits_end(buf, j, end, table, max_digits):
    """End of a digit group whose first digit ends at `j` (0 = unbounded)."""
    count = 1
    while j < end and (max_digits == 0 or count < max_digits):
        c, cp, k = class_at(buf, j, end, table)
        if (c & _N) == 0:
            break
        j = k
        count += 1
    return j


@kernel
def piece_end_cl100k(buf, i, end, table, max_digits, ws_end_whole):
    """End of the cl100k-family pattern match starting at `i`."""
    c, cp, j = class_at(buf, i, end, table)
    if cp == _APOSTROPHE:
        k = contraction_end(buf, j, end, True)
        if k >= 0:
            return k
    if c & _L:
        return run_with(buf, j, end, table, _L)
    if cp != _CR and cp != _LF and (c & _N) == 0 and j < end:
        c2, cp2, j2 = class_at(buf, j, end, table)
        if c2 & _L:
            return run_with(buf, j2, end, table, _L)
    if c & _N:
        return digits_end(buf, j, end, table, max_digits)
    if cp == _SPACE and j < end:
        c2, cp2, j2 = class_at(buf, j, end, table)
        if (c2 & (_L | _N | _S)) == 0:
            k = run_without(buf, j2, end, table, _L | _N | _S)
            return run_of_bytes(buf, k, end, _CR, _LF, _CR)
    if (c & _S) == 0:
        k = run_without(buf, j, end, table, _L | _N | _S)
        return run_of_bytes(buf, k, end, _CR, _LF, _CR)
    return whitespace_end(buf, i, j, end, table, True, ws_end_whole)


@kernel
def cased_word_lower_end(buf, p, end, table):
    """`[Lu Lt Lm Lo M]*[Ll Lm Lo M]+` from `p` with the regex's backtracking, or -1."""
    k = p
    last_lower = -1
    while k < end:
        c, cp, k2 = class_at(buf, k, end, table)
        if (c & _U) == 0:
            break
        if c & _W:
            last_lower = k
        k = k2
    if k < end:
        c, cp, k2 = class_at(buf, k, end, table)
        if c & _W:
            return run_with(buf, k2, end, table, _W)
    if last_lower >= 0:
        return run_with(buf, last_lower, end, table, _W)
    return -1


@kernel
def cased_word_upper_end(buf, p, end, table):
    """`[Lu Lt Lm Lo M]+[Ll Lm Lo M]*` from `p`, or -1."""
    if p >= end:
        return -1
    c, cp, k = class_at(buf, p, end, table)
    if (c & _U) == 0:
        return -1
    k = run_with(buf, k, end, table, _U)
    return run_with(buf, k, end, table, _W)


@kernel(inline="always")
def with_contraction(buf, k, end):
    """`(?i:'s|'t|'re|'ve|'m|'ll|'d)?` after a word ending at `k`."""
    if k < end and buf[k] == _APOSTROPHE:
        m = contraction_end(buf, k + 1, end, True)
        if m >= 0:
            return m
    return k


@kernel
def piece_end_o200k(buf, i, end, table):
    """End of the o200k pattern match starting at `i`."""
    c, cp, j = class_at(buf, i, end, table)
    # A cased word must start with a code point of either case class, so the
    # four word attempts below are skipped where they cannot match.
    prefix_ok = cp != _CR and cp != _LF and (c & (_L | _N)) == 0
    if prefix_ok and j < end:
        c2, cp2, j2 = class_at(buf, j, end, table)
        prefix_ok = (c2 & (_U | _W)) != 0
    else:
        prefix_ok = False
    word_here = (c & (_U | _W)) != 0
    if prefix_ok:
        k = cased_word_lower_end(buf, j, end, table)
        if k >= 0:
            return with_contraction(buf, k, end)
    if word_here:
        k = cased_word_lower_end(buf, i, end, table)
        if k >= 0:
            return with_contraction(buf, k, end)
    if prefix_ok:
        k = cased_word_upper_end(buf, j, end, table)
        if k >= 0:
            return with_contraction(buf, k, end)
    if word_here:
        k = cased_word_upper_end(buf, i, end, table)
        if k >= 0:
            return with_contraction(buf, k, end)
    if c & _N:
        return digits_end(buf, j, end, table, 3)
    if cp == _SPACE and j < end:
        c2, cp2, j2 = class_at(buf, j, end, table)
        if (c2 & (_L | _N | _S)) == 0:
            k = run_without(buf, j2, end, table, _L | _N | _S)
            return run_of_bytes(buf, k, end, _CR, _LF, _SLASH)
    if (c & _S) == 0:
        k = run_without(buf, j, end, table, _L | _N | _S)
        return run_of_bytes(buf, k, end, _CR, _LF, _SLASH)
    return whitespace_end(buf, i, j, end, table, True, False)


@kernel
def piece_end(buf, i, end, table, pattern_id, max_digits, ws_end_whole):
    """End of the piece starting at `i` (< end) under pattern `pattern_id`."""
    if pattern_id == PATTERN_GPT2:
        return piece_end_gpt2(buf, i, end, table)
    if pattern_id == PATTERN_CL100K:
        return piece_end_cl100k(buf, i, end, table, max_digits, ws_end_whole)
    if pattern_id == PATTERN_O200K:
        return piece_end_o200k(buf, i, end, table)
    return i + 1  # PATTERN_NONE: every byte is a piece


@kernel
def split_pieces(buf, start, end, table, pattern_id, max_digits, ws_end_whole, out):
    """Write the end offset of every piece of buf[start:end] into `out`; return the count.

    `out` needs room for `end - start` entries (a piece is at least one byte).
    Used by tests and tools; the encoder calls `piece_end` directly.
    """
    n = 0
    i = start
    while i < end and n < out.shape[0]:
        i = piece_end(buf, i, end, table, pattern_id, max_digits, ws_end_whole)
        out[n] = i
        n += 1
    return n
