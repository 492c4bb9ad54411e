"""fastload's byte-level BPE tokenizer: the same ids as Hugging Face tokenizers
and tiktoken, computed by Numba kernels with no Python per document.

What lives here: `Tokenizer` (load, encode, decode, fingerprint, pickle) and
`load_tokenizer(spec)`, the one entry point `fastload convert` and the loader
use. What does not: file readers (`hf_json.py`, `vocab.py`), the pattern registry
(`patterns.py`), Arrow input handling (`batch.py`), the kernels
(`fastload/tokenizer/kernels/pretokenize.py`, `fastload/tokenizer/kernels/bpe.py`).

Semantics. Document text is encoded with tiktoken's `encode_ordinary`
semantics: text that looks like a special token (`<|endoftext|>`) is encoded
as ordinary text, so documents cannot inject control tokens. Pass
`allowed_special="all"` (every added token, which is what HF's `encode`
does) or a set of token strings to have them cut out first
(leftmost-longest) and emitted as their ids; the text between them is
pre-tokenized on its own, as in HF and tiktoken. Nothing is added around a
document (no BOS/EOS; HF's post-processor is not applied): append
`eos_id` yourself, as `fastload convert` does.

Trade-offs. Loading reads the file into numpy arrays and imports no Numba;
the hash tables are built and the kernels compiled (or loaded from Numba's
on-disk cache) on the first encode. Pickling sends the vocabulary arrays,
never the file path, so workers need no file access; each process builds
its hash tables on its first encode.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Collection, Iterable, Literal

import numpy as np

from fastload.errors import ConfigError, TokenizerError
from fastload.tokenizer.hf_json import read_hf_json
from fastload.tokenizer.vocab import Vocab, byte_vocab, read_tiktoken

__all__ = ["Tokenizer", "load_tokenizer", "DEFAULT_TOKENIZER_PATH"]

DEFAULT_TOKENIZER_PATH = pathlib.Path(__file__).resolve().parent.parent / "assets" / "tokenizer" / "tokenizer.json"

# Names under which vocabularies commonly spell their end/begin-of-document tokens.
_EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")
_BOS_NAMES = ("<|begin_of_text|>", "<|startoftext|>", "<s>", "<bos>", "<|bos|>")

AllowedSpecial = Literal["all"] | Collection[str]


class Tokenizer:
    """A byte-level BPE tokenizer. Build one with a `from_*` constructor."""

    def __init__(self, vocab: Vocab):
        self._vocab = vocab
        self._tables = None
        self._specials_cache: dict[frozenset, tuple] = {}
        self._token_bytes: list[bytes] | None = None
        self._ids_by_bytes: dict[bytes, int] | None = None
        self._per_thread = threading.local()  # piece caches: one per thread, never shared

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """A Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2/RoBERTa
        `ByteLevel` style, or a `Split` with the cl100k/o200k regex then `ByteLevel`)."""
        return cls(read_hf_json(path))

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        *,
        pattern: str = "cl100k",
        special_tokens: dict[str, int] | None = None,
    ) -> "Tokenizer":
        """A tiktoken rank file; `pattern` is "gpt2", "cl100k" or "o200k" (or one of
        those regexes spelled out). Without `special_tokens`, OpenAI's own are used
        when the file has OpenAI's number of ranks, else `<|endoftext|>` after the
        last rank."""
        return cls(read_tiktoken(path, pattern=pattern, special_tokens=special_tokens))

    @classmethod
    def default(cls) -> "Tokenizer":
        """The vocabulary that ships with fastload (see assets/tokenizer/build_default_vocab.py)."""
        return cls.from_file(DEFAULT_TOKENIZER_PATH)

    @classmethod
    def bytes(cls, special_tokens: dict[str, int] | None = None) -> "Tokenizer":
        """One id per byte (0-255) plus special tokens (`<|endoftext|>` = 256)."""
        return cls(byte_vocab(special_tokens))

    # ---- properties -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One past the largest id (ordinary and added tokens)."""
        return self._vocab.vocab_size

    @property
    def eos_id(self) -> int | None:
        return self._first_added(_EOS_NAMES)

    @property
    def bos_id(self) -> int | None:
        return self._first_added(_BOS_NAMES)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Every added token (HF `added_tokens`, tiktoken special tokens) by text."""
        return dict(self._vocab.added)

    @property
    def pattern(self) -> str:
        return self._vocab.pattern.name

    @property
    def fingerprint(self) -> str:
        """Stable hex digest of vocabulary, merges, pattern and added tokens."""
        return self._vocab.fingerprint()

    def _first_added(self, names: Iterable[str]) -> int | None:
        for name in names:
            if name in self._vocab.added:
                return self._vocab.added[name]
        return None

    def token_to_id(self, token: str | bytes) -> int | None:
        """Id of an added token by its text, or of an ordinary token by its text
        (`" the"`, not HF's `"Ġthe"`) or bytes; None if there is none."""
        if isinstance(token, str) and token in self._vocab.added:
            return self._vocab.added[token]
        raw = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        if not raw:
            return None
        if self._ids_by_bytes is None:
            v = self._vocab
            self._ids_by_bytes = {v.token_bytes(i): i for i in v.lookup_ids.tolist()}
        return self._ids_by_bytes.get(raw)

    def id_to_bytes(self, token_id: int) -> bytes:
        self._check_ids(np.array([token_id]))
        return self._vocab.token_bytes(int(token_id))

    # ---- encoding -------------------------------------------------------------------
    def encode(self, text: str, *, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        """Ids of `text` (encode_ordinary semantics unless `allowed_special`)."""
        if not isinstance(text, str):
            raise TokenizerError(
                f"encode expects a str, found {type(text).__name__}; use encode_arrow for Arrow string columns"
            )
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: U+FFFD, as tiktoken does
            raw = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
        from fastload.tokenizer.batch import StringBatch

        batch = StringBatch(np.frombuffer(raw, dtype=np.uint8), np.array([0, len(raw)], dtype=np.int64),
                            np.zeros(0, dtype=np.uint8))
        ids, _ = self._encode_batch(batch, allowed_special, out=None, num_threads=1)
        return ids.tolist()

    def encode_batch(
        self, texts: Iterable[str], *, allowed_special: AllowedSpecial = frozenset(), num_threads: int = 1
    ) -> list[list[int]]:
        """Ids of each text; None entries give empty lists."""
        from fastload.tokenizer.batch import from_strings

        texts = texts if isinstance(texts, list) else list(texts)
        ids, offsets = self._encode_batch(from_strings(texts), allowed_special, out=None, num_threads=num_threads)
        flat = ids.tolist()
        bounds = offsets.tolist()
        return [flat[bounds[d] : bounds[d + 1]] for d in range(len(texts))]

    def encode_arrow(
        self,
        arr,
        *,
        allowed_special: AllowedSpecial = frozenset(),
        out: np.ndarray | None = None,
        num_threads: int = 1,
        documents=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode a pyarrow string column: `(ids uint32, offsets int64)` with
        document i at `ids[offsets[i]:offsets[i+1]]`; nulls are empty documents.

        With `documents` (row numbers of `arr`) only those rows are encoded, in
        that order: document i is then row `documents[i]`. The rows are copied
        out of `arr` first (Arrow's `take`), so only their bytes are checked and
        encoded: the loader tokenizes the documents a batch needs, not a block.

        With `out` (uint32, at least `max_ids(arr)` long) the ids are written
        there and `ids` is a view of it. `num_threads` > 1 splits the documents
        over threads (the kernel releases the GIL). A document that is not
        valid UTF-8 (an array built without validation, a damaged file) is
        encoded as `bytes.decode("utf-8", "replace")` reads it — each maximal
        invalid subsequence becomes U+FFFD — which is the `str` HF tokenizers
        and tiktoken would be given.
        """
        from fastload.tokenizer.batch import from_arrow, select_rows

        if documents is not None:
            arr = select_rows(arr, documents)
        batches = from_arrow(arr)
        if len(batches) == 1:
            return self._encode_batch(batches[0], allowed_special, out=out, num_threads=num_threads)
        if out is not None and out.shape[0] < self.max_ids(arr):
            raise ConfigError(
                f"out has room for {out.shape[0]:,} ids but this column may need up to {self.max_ids(arr):,} "
                "(one per UTF-8 byte); pass a larger buffer"
            )
        all_offsets, base, parts = [np.zeros(1, dtype=np.int64)], 0, []
        for batch in batches:
            part_out = None if out is None else out[base:]
            ids, offsets = self._encode_batch(batch, allowed_special, out=part_out, num_threads=num_threads)
            parts.append(ids)
            all_offsets.append(offsets[1:] + base)
            base += ids.shape[0]
        ids = out[:base] if out is not None else (np.concatenate(parts) if parts else np.zeros(0, np.uint32))
        return ids, np.concatenate(all_offsets)

    @staticmethod
    def max_ids(arr) -> int:
        """The most ids `encode_arrow(arr)` can produce: its number of UTF-8 bytes."""
        import pyarrow as pa
        import pyarrow.compute as pc

        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        return sum(int(pc.sum(pc.binary_length(chunk)).as_py() or 0) for chunk in chunks)

    def _encode_batch(self, batch, allowed_special, *, out, num_threads):
        from fastload.tokenizer.kernels.bpe import encode_documents
        from fastload.tokenizer.kernels.unicode_table import load_unicode_table
        from fastload.tokenizer.batch import run_encoder

        tables = self._kernel_tables().vocab
        specials = self._specials(allowed_special)
        pattern = self._vocab.pattern.as_kernel_args()
        table = load_unicode_table()

        def run_kernel(b, start, stop, ids, offsets):
            return encode_documents(b.data, b.offsets, b.valid, start, stop, ids, offsets,
                                    table, pattern, tables, specials, self._piece_cache())

        # Hashes multiply modulo 2**64 on purpose; with FASTLOAD_DISABLE_JIT the
        # kernels run as numpy code, which would warn about that overflow.
        with np.errstate(over="ignore"):
            return run_encoder(batch, run_kernel, out=out, num_threads=max(1, int(num_threads)))

    def _piece_cache(self) -> np.ndarray:
        cache = getattr(self._per_thread, "cache", None)
        if cache is None:
            from fastload.tokenizer.kernels.bpe import new_piece_cache

            cache = self._per_thread.cache = new_piece_cache()
        return cache

    def _kernel_tables(self):
        if self._tables is None:
            from fastload.tokenizer.tables import build_tables

            with np.errstate(over="ignore"):
                self._tables = build_tables(self._vocab)
        return self._tables

    def _specials(self, allowed_special: AllowedSpecial) -> tuple:
        if allowed_special == "all":
            allowed = frozenset(self._vocab.added)
        elif isinstance(allowed_special, str):
            raise ConfigError(
                f"allowed_special must be 'all' or a collection of token strings, found {allowed_special!r}"
            )
        else:
            allowed = frozenset(allowed_special)
            unknown = sorted(allowed - set(self._vocab.added))
            if unknown:
                raise ConfigError(
                    f"allowed_special names {unknown}, which are not added tokens of this tokenizer; "
                    f"its added tokens are {sorted(self._vocab.added)[:20]}"
                )
        stripping = sorted(allowed & self._vocab.stripping)
        if stripping:
            raise TokenizerError(
                f"added tokens {stripping} use HF's lstrip/rstrip/single_word matching, which fastload does "
                "not implement; pass allowed_special as a set of the other tokens (or leave it empty: "
                "document text never needs them)"
            )
        if allowed not in self._specials_cache:
            from fastload.tokenizer.tables import special_tables

            self._specials_cache[allowed] = special_tables(self._vocab, allowed)
        return self._specials_cache[allowed]

    # ---- decoding -------------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._check_ids(ids)
        if self._token_bytes is None:
            v = self._vocab
            self._token_bytes = [v.token_bytes(i) for i in range(v.vocab_size)]
        table = self._token_bytes
        return b"".join([table[i] for i in ids.tolist()])

    def decode(self, ids) -> str:
        """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD (as HF and tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", "replace")

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise TokenizerError(f"token id {int(bad)} is out of range for a vocabulary of {self.vocab_size:,} ids")

    # ---- pickling / repr --------------------------------------------------------------
    def __getstate__(self):
        # Only the vocabulary's arrays travel (a few MB even for o200k); the
        # hash tables (tens of MB for large vocabularies) are rebuilt on the
        # first encode in the receiving process, in about 0.1 s.
        return {"vocab": self._vocab}

    def __setstate__(self, state):
        self.__init__(state["vocab"])

    def __repr__(self) -> str:
        return (f"Tokenizer(source={self._vocab.source!r}, vocab_size={self.vocab_size}, "
                f"pattern={self.pattern!r}, fingerprint={self.fingerprint[:12]}…)")


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
    """`"default"`, `"bytes"`, a `tokenizer.json` path, or a `.tiktoken` rank file path.

    A rank file's pattern comes from its name: `o200k` in the file name → o200k,
    `r50k`/`p50k`/`gpt2` → GPT-2, anything else → cl100k (the common case);
    use `Tokenizer.from_tiktoken(path, pattern=...)` to say it explicitly.
    """
    if isinstance(spec, str) and spec == "default":
        return Tokenizer.default()
    if isinstance(spec, str) and spec == "bytes":
        return Tokenizer.bytes()
    path = pathlib.Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"tokenizer {str(spec)!r} is neither 'default', 'bytes' nor an existing file; pass a "
            "Hugging Face tokenizer.json or a tiktoken rank file (*.tiktoken)"
        )
    if path.suffix == ".tiktoken":
        name = path.name.lower()
        if "o200k" in name:
            pattern = "o200k"
        elif any(k in name for k in ("r50k", "p50k", "gpt2")):
            pattern = "gpt2"
        else:
            pattern = "cl100k"
        return Tokenizer.from_tiktoken(path, pattern=pattern)
    return Tokenizer.from_file(path)
