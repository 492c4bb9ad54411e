"""Vocabularies: reading `tokenizer.json` and tiktoken rank files into arrays.

What lives here: `Vocab`, the tokenizer's data as plain numpy arrays (the
bytes of every id, the 256 single-byte ids, the merge list, the added
tokens, the pattern), the readers that build it from Hugging Face
`tokenizer.json`, tiktoken `.tiktoken` rank files or nothing (the byte
tokenizer), and the canonical serialisation behind the fingerprint. What
does not: the hash tables and encoding loop (`fastload/kernels/bpe.py`) and
the public `Tokenizer` (`__init__.py`).

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

__all__ = ["Vocab", "bytes_to_unicode", "read_hf_json", "read_tiktoken", "byte_vocab"]

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


def _pack(tokens: dict[int, bytes], where: str = "vocabulary") -> tuple[np.ndarray, np.ndarray]:
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


def _byte_ids(by_bytes: dict[bytes, int], where: str) -> np.ndarray:
    missing = [b for b in range(256) if bytes([b]) not in by_bytes]
    if missing:
        raise TokenizerError(
            f"{where}: the vocabulary has no token for {len(missing)} of the 256 single bytes "
            f"(e.g. {missing[:5]}); a byte-level BPE needs all 256 so that any text can be encoded"
        )
    return np.array([by_bytes[bytes([b])] for b in range(256)], dtype=np.int64)


def _check(condition: bool, where: str, part: str, found, supported: str) -> None:
    if not condition:
        raise TokenizerError(
            f"{where}: unsupported {part} {found!r}; fastload supports {supported}. "
            "Convert the tokenizer, or tokenize with Hugging Face tokenizers before 'fastload convert'."
        )


def _hf_pattern(pre, where: str) -> Pattern:
    bytelevel = (
        "a ByteLevel pre-tokenizer (add_prefix_space=false, use_regex=true), or a Sequence of a Split "
        "(Isolated, invert=false, with a GPT-2/cl100k/o200k regex) and a ByteLevel (add_prefix_space=false, "
        "use_regex=false)"
    )
    _check(isinstance(pre, dict), where, "pre_tokenizer", pre, bytelevel)
    if pre.get("type") == "ByteLevel":
        _check(not pre.get("add_prefix_space", True), where, "ByteLevel add_prefix_space", True,
               "add_prefix_space=false (GPT-2/tiktoken behaviour)")
        _check(pre.get("use_regex", True), where, "ByteLevel use_regex", False, bytelevel)
        return patterns.HF_BYTELEVEL
    _check(pre.get("type") == "Sequence", where, "pre_tokenizer type", pre.get("type"), bytelevel)
    steps = pre.get("pretokenizers", [])
    _check(len(steps) == 2 and [s.get("type") for s in steps] == ["Split", "ByteLevel"], where,
           "pre_tokenizer sequence", [s.get("type") for s in steps], bytelevel)
    split, level = steps
    regex = (split.get("pattern") or {}).get("Regex")
    _check(regex is not None, where, "Split pattern", split.get("pattern"), "a {'Regex': ...} pattern")
    _check(split.get("behavior") == "Isolated" and not split.get("invert", False), where,
           "Split behavior", (split.get("behavior"), split.get("invert")), "behavior Isolated, invert false")
    _check(not level.get("add_prefix_space", True) and not level.get("use_regex", True), where,
           "ByteLevel after Split", level, "add_prefix_space=false, use_regex=false")
    return patterns.pattern_for_hf_split(regex, where)


def read_hf_json(path: str | pathlib.Path) -> Vocab:
    """Read a Hugging Face `tokenizer.json` with a byte-level BPE model."""
    where = f"tokenizer file {str(path)!r}"
    try:
        spec = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"cannot read {where}: {exc}") from exc
    _check(isinstance(spec, dict) and isinstance(spec.get("model"), dict), where, "file layout",
           type(spec).__name__, "a tokenizer.json with a 'model' object")
    _check(spec.get("normalizer") is None, where, "normalizer", (spec.get("normalizer") or {}).get("type"),
           "no normalizer (null)")
    pattern = _hf_pattern(spec.get("pre_tokenizer"), where)
    model = spec["model"]
    _check(model.get("type") == "BPE", where, "model type", model.get("type"), "BPE")
    _check(model.get("dropout") in (None, 0, 0.0), where, "BPE dropout", model.get("dropout"), "no dropout")
    _check(not model.get("continuing_subword_prefix"), where, "continuing_subword_prefix",
           model.get("continuing_subword_prefix"), "none (byte-level BPE)")
    _check(not model.get("end_of_word_suffix"), where, "end_of_word_suffix", model.get("end_of_word_suffix"),
           "none (byte-level BPE)")
    _check(not model.get("byte_fallback", False), where, "byte_fallback", True, "byte_fallback=false")

    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    added_texts = {tok.get("content") for tok in spec.get("added_tokens", [])}
    tokens: dict[int, bytes] = {}
    by_bytes: dict[bytes, int] = {}
    by_text: dict[str, int] = {}
    for text, token_id in model.get("vocab", {}).items():
        try:
            raw = bytes(char_to_byte[c] for c in text)
        except KeyError:
            if text in added_texts:  # e.g. "<｜begin▁of▁sentence｜>": an added token, matched by text only
                continue
            raise TokenizerError(
                f"{where}: vocabulary entry {text!r} (id {token_id}) is not byte-level (its characters "
                "are not GPT-2 byte stand-ins); fastload supports byte-level BPE vocabularies only"
            ) from None
        if int(token_id) in tokens:
            raise TokenizerError(f"{where}: id {token_id} is given to two vocabulary entries (the second is {text!r})")
        tokens[int(token_id)] = raw
        by_bytes.setdefault(raw, int(token_id))
        by_text[text] = int(token_id)
    byte_ids = _byte_ids(by_bytes, where)

    merges = []
    for rank, entry in enumerate(model.get("merges", [])):
        left, right = entry.split(" ", 1) if isinstance(entry, str) else entry
        if left not in by_text or right not in by_text or left + right not in by_text:
            raise TokenizerError(
                f"{where}: merge #{rank} {left!r} + {right!r} uses a token that is not in the vocabulary"
            )
        merges.append((by_text[left], by_text[right], by_text[left + right], rank))

    added, special, stripping = {}, set(), set()
    for tok in spec.get("added_tokens", []):
        content, token_id = tok["content"], int(tok["id"])
        if any(tok.get(option, False) for option in ("lstrip", "rstrip", "single_word")):
            stripping.add(content)  # fine as ordinary text; refused in allowed_special
        added[content] = token_id
        if tok.get("special", False):
            special.add(content)
        if token_id not in tokens:
            tokens[token_id] = content.encode("utf-8")
    tok_bytes, tok_offsets = _pack(tokens, where)
    return Vocab(
        tok_bytes=tok_bytes,
        tok_offsets=tok_offsets,
        byte_ids=byte_ids,
        merges=np.array(merges, dtype=np.int64).reshape(-1, 4),
        whole_piece=bool(model.get("ignore_merges", False)),
        lookup_ids=np.array(sorted(set(by_text.values())), dtype=np.int64),
        added=added,
        special=frozenset(special),
        pattern=pattern,
        source=str(path),
        stripping=frozenset(stripping),
    )


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
    byte_ids = _byte_ids(by_bytes, where)
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
    tok_bytes, tok_offsets = _pack(tokens, where)
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
    tok_bytes, tok_offsets = _pack(tokens)
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
