"""Vocabularies: the arrays a tokenizer is made of, and the simple readers.

What lives here: `Vocab`, the tokenizer's data as plain numpy arrays (the
bytes of every id, the 256 single-byte ids, the merge list, the added
tokens, the pattern), the readers that build it from tiktoken `.tiktoken`
rank files or from nothing (the byte tokenizer), the helpers every reader
packs its tokens with, and the canonical serialisation behind the
fingerprint. What does not: reading Hugging Face `tokenizer.json`
(`hf_json.py`), the hash tables and encoding loop
(`fastload/tokenizer/kernels/bpe.py`) and the public `Tokenizer`
(`__init__.py`).

Trade-off: a reader accepts exactly the byte-level BPE configurations the
kernels reproduce and raises `TokenizerError` naming the first part it does
not support (and what is supported) for anything else — a tokenizer that
loads gives the reference library's ids or it does not load at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from fastload.errors import TokenizerError
from fastload.tokenizer import patterns
from fastload.tokenizer.patterns import Pattern

__all__ = ["Vocab", "bytes_to_unicode", "pack_tokens", "single_byte_ids", "read_tiktoken", "byte_vocab",
           "MAX_TOKEN_ID"]

FINGERPRINT_VERSION = "fastload-bpe-1"

# Added/special tokens of OpenAI's rank files, used when `special_tokens` is not
# given and the file has exactly OpenAI's number of ranks (tiktoken_ext/openai_public.py).
OPENAI_SPECIALS = {
    ("gpt2", 50256): {"<|endoftext|>": 50256},
    ("cl100k", 100256): {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    ("o200k", 199998): {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> stand-in character table (HF `ByteLevel`'s `bytes_char`)."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(0x100 + n)
            n += 1
    return table


@dataclass(frozen=True, eq=False)
class Vocab:
    """A byte-level BPE vocabulary as arrays. Ids index `tok_offsets`."""

    tok_bytes: np.ndarray  # uint8: bytes of every id, back to back (added tokens: their UTF-8 text)
    tok_offsets: np.ndarray  # int64[vocab_size + 1]; an unused id has an empty span
    byte_ids: np.ndarray  # int64[256]: id of each single byte
    merges: np.ndarray  # int64[(num_merges, 4)]: left, right, merged, rank
    whole_piece: bool  # emit a piece that is a whole token as is (tiktoken; HF ignore_merges)
    lookup_ids: np.ndarray  # int64: ids findable by their bytes (ordinary tokens)
    added: dict[str, int]  # added tokens (specials and others) by text
    special: frozenset[str]  # the added tokens that are "special" (HF `special: true`)
    pattern: Pattern
    source: str  # where it came from, for messages
    stripping: frozenset[str] = frozenset()  # added tokens with HF lstrip/rstrip/single_word (not implemented)
    _fingerprint: list = field(default_factory=list, repr=False)

    @property
    def vocab_size(self) -> int:
        return int(self.tok_offsets.shape[0] - 1)

    def token_bytes(self, token_id: int) -> bytes:
        a, b = self.tok_offsets[token_id], self.tok_offsets[token_id + 1]
        return self.tok_bytes[a:b].tobytes()

    def fingerprint(self) -> str:
        """sha256 over a canonical serialisation of everything that decides the ids."""
        if not self._fingerprint:
            from fastload.tokenizer.kernels.unicode_table import table_sha256

            h = hashlib.sha256()
            header = {
                "version": FINGERPRINT_VERSION,
                "pattern": [self.pattern.name, *self.pattern.as_kernel_args()],
                "whole_piece": self.whole_piece,
                "added": sorted(self.added.items()),
                "special": sorted(self.special),
                "unicode_table": table_sha256(),
            }
            h.update(json.dumps(header, sort_keys=True).encode())
            for arr in (self.tok_offsets, self.tok_bytes, self.byte_ids, self.merges, self.lookup_ids):
                h.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]


MAX_TOKEN_ID = (1 << 24) - 1  # 16.7M: far above any real vocabulary, keeps kernel arithmetic in range


def pack_tokens(tokens: dict[int, bytes], where: str = "vocabulary") -> tuple[np.ndarray, np.ndarray]:
    if tokens and (min(tokens) < 0 or max(tokens) > MAX_TOKEN_ID):
        bad = min(tokens) if min(tokens) < 0 else max(tokens)
        raise TokenizerError(f"{where}: token id {bad} is outside 0..{MAX_TOKEN_ID:,}")
    size = max(tokens) + 1 if tokens else 0
    lengths = np.zeros(size, dtype=np.int64)
    for token_id, raw in tokens.items():
        lengths[token_id] = len(raw)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blob = b"".join(tokens.get(i, b"") for i in range(size))
    return np.frombuffer(blob, dtype=np.uint8).copy(), offsets


def single_byte_ids(by_bytes: dict[bytes, int], where: str) -> np.ndarray:
    missing = [b for b in range(256) if bytes([b]) not in by_bytes]
    if missing:
        raise TokenizerError(
            f"{where}: the vocabulary has no token for {len(missing)} of the 256 single bytes "
            f"(e.g. {missing[:5]}); a byte-level BPE needs all 256 so that any text can be encoded"
        )
    return np.array([by_bytes[bytes([b])] for b in range(256)], dtype=np.int64)


def read_tiktoken(path: str | pathlib.Path, *, pattern: str, special_tokens: dict[str, int] | None) -> Vocab:
    """Read a tiktoken rank file (`<base64 bytes> <rank>` per line)."""
    where = f"rank file {str(path)!r}"
    pat = patterns.pattern_for_tiktoken(pattern)
    try:
        lines = pathlib.Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise TokenizerError(f"cannot read {where}: {exc}") from exc
    tokens: dict[int, bytes] = {}
    by_bytes: dict[bytes, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            raw, rank = base64.b64decode(token, validate=True), int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{where}, line {number}: expected '<base64 token> <rank>', found {line[:80]!r}"
            ) from None
        if rank in tokens or raw in by_bytes or rank < 0:
            raise TokenizerError(f"{where}, line {number}: duplicate or negative rank/token {line[:80]!r}")
        tokens[rank] = raw
        by_bytes[raw] = rank
    byte_ids = single_byte_ids(by_bytes, where)
    num_ranks = len(tokens)
    if special_tokens is None:
        family = {"r50k": "gpt2", "p50k": "gpt2"}.get(pattern, pattern)
        special_tokens = OPENAI_SPECIALS.get((family, num_ranks), {"<|endoftext|>": max(tokens) + 1})
    for text, token_id in special_tokens.items():
        if token_id in tokens:
            raise TokenizerError(
                f"{where}: special token {text!r} has id {token_id}, which is already a rank in the file"
            )
        tokens[token_id] = text.encode("utf-8")
    tok_bytes, tok_offsets = pack_tokens(tokens, where)
    return Vocab(
        tok_bytes=tok_bytes,
        tok_offsets=tok_offsets,
        byte_ids=byte_ids,
        merges=np.zeros((0, 4), dtype=np.int64),  # derived from the ranks (every split) when tables are built
        whole_piece=True,
        lookup_ids=np.array(sorted(by_bytes.values()), dtype=np.int64),
        added=dict(special_tokens),
        special=frozenset(special_tokens),
        pattern=pat,
        source=str(path),
    )


def byte_vocab(special_tokens: dict[str, int] | None = None) -> Vocab:
    """256 byte ids (id = byte value) plus special tokens (default `<|endoftext|>` = 256)."""
    special_tokens = {"<|endoftext|>": 256} if special_tokens is None else dict(special_tokens)
    tokens = {b: bytes([b]) for b in range(256)}
    for text, token_id in special_tokens.items():
        if token_id < 256:
            raise TokenizerError(f"special token {text!r} has id {token_id}; ids 0-255 are the bytes")
        tokens[token_id] = text.encode("utf-8")
    tok_bytes, tok_offsets = pack_tokens(tokens)
    return Vocab(
        tok_bytes=tok_bytes,
        tok_offsets=tok_offsets,
        byte_ids=np.arange(256, dtype=np.int64),
        merges=np.zeros((0, 4), dtype=np.int64),
        whole_piece=False,
        lookup_ids=np.zeros(0, dtype=np.int64),
        added=special_tokens,
        special=frozenset(special_tokens),
        pattern=patterns.BYTES,
        source="bytes",
    )
