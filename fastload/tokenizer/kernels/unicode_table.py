"""The code-point class table that the pre-tokenizer kernels index.

What lives here: the bit constants and a loader for the shipped table
(`fastload/assets/tokenizer/unicode_classes.zlib`, one byte per code point,
built by `build_unicode_table.py` in that folder from the answers of the
reference regex engines, not from Python's `unicodedata`). What does not:
the matchers that use it (`pretokenize.py`).

Trade-off: a flat 1.1 MB table (0x110000 entries) instead of a two-stage
trie. One load per lookup and no branches; the hot part (ASCII, Latin, CJK)
stays in cache, and the whole thing is read once per process and shared by
every `Tokenizer`.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import zlib

import numpy as np

__all__ = [
    "LETTER",
    "NUMBER",
    "SPACE",
    "UPPERISH",
    "LOWERISH",
    "NUM_CODE_POINTS",
    "TABLE_PATH",
    "load_unicode_table",
]

LETTER = 1  # \p{L}
NUMBER = 2  # \p{N}
SPACE = 4  # \s as Oniguruma and regex-automata define it (25 code points)
UPPERISH = 8  # [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]  (o200k)
LOWERISH = 16  # [\p{Ll}\p{Lm}\p{Lo}\p{M}]        (o200k)
NUM_CODE_POINTS = 0x110000

TABLE_PATH = pathlib.Path(__file__).resolve().parents[2] / "assets" / "tokenizer" / "unicode_classes.zlib"


@functools.lru_cache(maxsize=1)
def load_unicode_table() -> np.ndarray:
    """The class table as a read-only `uint8[0x110000]` array (cached per process)."""
    from fastload.errors import TokenizerError

    try:
        raw = zlib.decompress(TABLE_PATH.read_bytes())
    except (OSError, zlib.error) as exc:
        raise TokenizerError(
            f"cannot read the Unicode class table {str(TABLE_PATH)!r}: {exc}; the package "
            "installation is incomplete. Reinstall fastload, or rebuild the table with "
            "'python fastload/assets/tokenizer/build_unicode_table.py'."
        ) from exc
    if len(raw) != NUM_CODE_POINTS:
        raise TokenizerError(
            f"the Unicode class table {str(TABLE_PATH)!r} has {len(raw):,} entries, expected "
            f"{NUM_CODE_POINTS:,}; rebuild it with 'python fastload/assets/tokenizer/build_unicode_table.py'."
        )
    table = np.frombuffer(raw, dtype=np.uint8)
    return table


def table_sha256() -> str:
    """sha256 of the uncompressed table; part of every tokenizer fingerprint."""
    return hashlib.sha256(load_unicode_table().tobytes()).hexdigest()
