"""Build `unicode_classes.zlib`: the code-point class table the pre-tokenizer reads.

The byte-level BPE patterns (GPT-2, cl100k, o200k) ask Unicode questions —
is this code point a letter (`\\p{L}`), a number (`\\p{N}`), white space
(`\\s`), or one of o200k's case classes? The answer depends on the Unicode
version and on the regex engine: Python's `unicodedata` (Unicode 14 on 3.11)
and the `regex` module disagree with the Rust engines that Hugging Face
`tokenizers` (Oniguruma) and tiktoken (fancy-regex / regex-automata) use on
thousands of code points. So the table is not derived from Python at all:
every code point is run through both reference engines, they must agree, and
their answer is what we ship. Run it again when the reference libraries move
to a new Unicode version:

    python fastload/assets/tokenizer/build_unicode_table.py

Output: 0x110000 bytes, one per code point, zlib-compressed (a few KB). Bits
(kept in sync with `fastload/tokenizer/kernels/unicode_table.py`):

    1  LETTER     \\p{L}
    2  NUMBER     \\p{N}
    4  SPACE      \\s
    8  UPPERISH   [\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]   (o200k)
    16 LOWERISH   [\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]         (o200k)

Surrogates (U+D800–U+DFFF) cannot occur in UTF-8 and get class 0.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import zlib

import numpy as np

NUM_CODE_POINTS = 0x110000
CLASSES = {  # bit -> regex character-class body, as both engines spell it
    1: r"\p{L}",
    2: r"\p{N}",
    4: r"\s",
    8: r"\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}",
    16: r"\p{Ll}\p{Lm}\p{Lo}\p{M}",
}
OUT_PATH = pathlib.Path(__file__).with_name("unicode_classes.zlib")


def all_scalar_values() -> str:
    """Every code point that can appear in a Python str encodable as UTF-8."""
    return "".join(chr(c) for c in range(NUM_CODE_POINTS) if not 0xD800 <= c < 0xE000)


def members_tiktoken(body: str, text: str) -> set[str]:
    """Characters of `text` matched by `[body]` under tiktoken's regex engine."""
    import tiktoken

    # With only single-byte ranks the ids are the matched bytes, in order;
    # tiktoken drops text the pattern does not match, so decoding gives
    # exactly the class members.
    enc = tiktoken.Encoding(
        "unicode-class-probe",
        pat_str=f"[{body}]",
        mergeable_ranks={bytes([b]): b for b in range(256)},
        special_tokens={},
    )
    return set(enc.decode_bytes(enc.encode_ordinary(text)).decode("utf-8"))


def members_hf(body: str, text: str) -> set[str]:
    """Characters of `text` matched by `[body]` under HF tokenizers' Oniguruma."""
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(f"[^{body}]+"), behavior="removed")
    return set("".join(piece for piece, _ in split.pre_tokenize_str(text)))


def build_table() -> np.ndarray:
    text = all_scalar_values()
    table = np.zeros(NUM_CODE_POINTS, dtype=np.uint8)
    for bit, body in CLASSES.items():
        ours_tk = members_tiktoken(body, text)
        ours_hf = members_hf(body, text)
        if ours_tk != ours_hf:
            diff = sorted(ours_tk ^ ours_hf)[:20]
            raise SystemExit(
                f"tiktoken and tokenizers disagree on [{body}] for "
                f"{len(ours_tk ^ ours_hf)} code points, e.g. "
                f"{[hex(ord(c)) for c in diff]}; refusing to write a table"
            )
        idx = np.fromiter((ord(c) for c in ours_tk), dtype=np.int64)
        table[idx] |= bit
        print(f"[{body}]: {len(idx):,} code points", file=sys.stderr)
    return table


def main() -> None:
    table = build_table()
    payload = zlib.compress(table.tobytes(), 9)
    OUT_PATH.write_bytes(payload)
    digest = hashlib.sha256(table.tobytes()).hexdigest()
    print(f"wrote {OUT_PATH} ({len(payload):,} bytes, table sha256 {digest})", file=sys.stderr)


if __name__ == "__main__":
    main()
