"""The pre-tokenization patterns fastload implements, by their exact spelling.

What lives here: a registry from regex strings (as they appear in a
`tokenizer.json` or in tiktoken) to the matcher in
`fastload/kernels/pretokenize.py` that reproduces them, with the parameters
that tell the spellings apart. What does not: the matchers themselves.

Trade-off: patterns are recognised by exact string, never by "looks like".
A pattern we do not know raises `TokenizerError` listing what is supported,
because a pattern that is almost the same gives silently different ids — the
classic case is tiktoken's possessive `\\p{N}{1,3}+`, which HF's Oniguruma
reads as a chained quantifier (unbounded digit runs); both readings are
registered below under the engine that uses them.

Where the two references disagree on the same vocabulary (measured with
tokenizers 0.23.3 and tiktoken 0.14):

* HF with the original cl100k spelling (Llama 3's tokenizer.json) and
  tiktoken with its possessive spelling split white space that runs to the
  end of the text differently when it holds a newline: `"x\n  "` is
  `x | \n |   ` for HF and `x | \n  ` for tiktoken (`\\s++$` comes first).
  Everything else we tested, including digit runs, agrees.
* HF given tiktoken's possessive spelling splits digit runs without limit
  (`20260509073455` is one piece, tiktoken gives `202|605|090|734|55`).

`Tokenizer.from_file` reproduces HF's reading of the file's regex and
`Tokenizer.from_tiktoken` tiktoken's reading of its pattern, so each matches
its own reference exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastload.errors import TokenizerError
from fastload.tokenizer.kernels.pattern_ids import PATTERN_CL100K, PATTERN_GPT2, PATTERN_NONE, PATTERN_O200K

__all__ = [
    "Pattern",
    "GPT2_PATTERN",
    "GPT2_POSSESSIVE_PATTERN",
    "CL100K_PATTERN",
    "CL100K_POSSESSIVE_PATTERN",
    "O200K_PATTERN",
    "BYTES",
    "pattern_for_tiktoken",
    "pattern_for_hf_split",
    "HF_BYTELEVEL",
]

# GPT-2, as hard-coded in HF's ByteLevel pre-tokenizer and in tiktoken < 0.8.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken >= 0.8 (r50k/p50k/gpt2): same matches, possessive spelling.
GPT2_POSSESSIVE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# cl100k_base as first published (also Llama 3's tokenizer.json).
CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# cl100k_base as tiktoken >= 0.8 spells it.
CL100K_POSSESSIVE_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# Qwen2-style: cl100k with single digits.
CL100K_SINGLE_DIGIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True)
class Pattern:
    """A supported pre-tokenization: which matcher, and its parameters."""

    name: str
    pattern_id: int
    max_digits: int = 3  # longest digit group (cl100k family); 0 = unbounded
    ws_end_whole: bool = False  # `\s++$`: white space running to the end stays whole

    def as_kernel_args(self) -> tuple[int, int, bool]:
        return (self.pattern_id, self.max_digits, self.ws_end_whole)


GPT2 = Pattern("gpt2", PATTERN_GPT2)
CL100K = Pattern("cl100k", PATTERN_CL100K, max_digits=3, ws_end_whole=False)
CL100K_TIKTOKEN = Pattern("cl100k-tiktoken", PATTERN_CL100K, max_digits=3, ws_end_whole=True)
CL100K_ONIGURUMA = Pattern("cl100k-possessive-as-read-by-hf", PATTERN_CL100K, max_digits=0, ws_end_whole=True)
CL100K_SINGLE_DIGIT = Pattern("cl100k-single-digit", PATTERN_CL100K, max_digits=1, ws_end_whole=False)
O200K = Pattern("o200k", PATTERN_O200K)
BYTES = Pattern("bytes", PATTERN_NONE)
HF_BYTELEVEL = GPT2  # ByteLevel(use_regex=True) hard-codes GPT2_PATTERN

# tiktoken (fancy-regex) reading of each spelling.
_TIKTOKEN_NAMES = {"gpt2": GPT2, "r50k": GPT2, "p50k": GPT2, "cl100k": CL100K_TIKTOKEN, "o200k": O200K}
_TIKTOKEN_SPELLINGS = {
    GPT2_PATTERN: GPT2,
    GPT2_POSSESSIVE_PATTERN: GPT2,
    CL100K_PATTERN: CL100K,
    CL100K_POSSESSIVE_PATTERN: CL100K_TIKTOKEN,
    CL100K_SINGLE_DIGIT_PATTERN: CL100K_SINGLE_DIGIT,
    O200K_PATTERN: O200K,
}
# HF (Oniguruma) reading of each spelling found in `Split` pre-tokenizers.
_HF_SPELLINGS = {
    GPT2_PATTERN: GPT2,
    GPT2_POSSESSIVE_PATTERN: GPT2,
    CL100K_PATTERN: CL100K,
    CL100K_POSSESSIVE_PATTERN: CL100K_ONIGURUMA,
    CL100K_SINGLE_DIGIT_PATTERN: CL100K_SINGLE_DIGIT,
    O200K_PATTERN: O200K,
}


def pattern_for_tiktoken(pattern: str) -> Pattern:
    """A tiktoken pattern by short name ("gpt2", "cl100k", "o200k") or exact string."""
    if pattern in _TIKTOKEN_NAMES:
        return _TIKTOKEN_NAMES[pattern]
    if pattern in _TIKTOKEN_SPELLINGS:
        return _TIKTOKEN_SPELLINGS[pattern]
    raise TokenizerError(
        f"unsupported pre-tokenization pattern {pattern!r}; fastload implements the names "
        f"{sorted(_TIKTOKEN_NAMES)} and the exact GPT-2, cl100k (original, possessive, "
        "single-digit) and o200k regexes listed in fastload/tokenizer/patterns.py"
    )


def pattern_for_hf_split(regex: str, where: str) -> Pattern:
    """The pattern of an HF `Split` pre-tokenizer, as HF itself interprets it."""
    if regex in _HF_SPELLINGS:
        return _HF_SPELLINGS[regex]
    raise TokenizerError(
        f"{where}: the Split pre-tokenizer's regex {regex!r} is not one fastload implements; "
        "supported: the GPT-2, cl100k (original, tiktoken possessive, single-digit) and o200k "
        "patterns listed in fastload/tokenizer/patterns.py. Use a tokenizer with one of those "
        "patterns, or tokenize with Hugging Face tokenizers before 'fastload convert'."
    )
