"""Build `tokenizer.json`, the byte-level BPE vocabulary that ships with fastload.

The corpus is made only of files found on a Debian/Ubuntu machine, so the
vocabulary can be rebuilt offline:

* gettext translations (`/usr/share/locale/*/LC_MESSAGES/*.mo`, the
  translated strings only): a few hundred languages and scripts;
* documentation (`/usr/share/doc`: .txt/.md/.rst and gzipped changelogs);
* Python standard-library sources (`sysconfig` stdlib path): code.

Files are split deterministically by a hash of their path: one in ten is
held out of training (`corpus_documents(split="heldout")`); the benchmark
and parity checks use that part. The tokenizer follows the cl100k recipe —
a `Split` pre-tokenizer with the original cl100k regex, then `ByteLevel`
without its own regex, no normalizer — with `<|endoftext|>` as id 0.

    python fastload/assets/tokenizer/build_default_vocab.py [--vocab-size 16384]

Needs Hugging Face `tokenizers` (a dev dependency); never run at import.
"""

from __future__ import annotations

import argparse
import gettext
import gzip
import hashlib
import pathlib
import sys
import sysconfig
from typing import Iterator

DEFAULT_VOCAB_SIZE = 16384  # 8k-32k asked; 16k keeps tokenizer.json near 1 MB
OUT_PATH = pathlib.Path(__file__).with_name("tokenizer.json")
CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
MAX_FILE_BYTES = 256 * 1024  # cap per file so no single changelog dominates


def _held_out(path: pathlib.Path) -> bool:
    return hashlib.sha1(str(path).encode()).digest()[0] % 10 == 0


def _translation_text(path: pathlib.Path) -> str:
    try:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # msgid -> msgstr
    except Exception:  # malformed .mo files exist in the wild; skip them
        return ""
    return "\n".join(v for k, v in catalog.items() if k and isinstance(v, str) and v.strip())


def _doc_text(path: pathlib.Path) -> str:
    try:
        raw = gzip.open(path).read(MAX_FILE_BYTES) if path.suffix == ".gz" else path.read_bytes()[:MAX_FILE_BYTES]
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""
    return raw.decode("utf-8", "replace")


def _sources() -> list[tuple[pathlib.Path, str]]:
    found = []
    for path in sorted(pathlib.Path("/usr/share/locale").glob("*/LC_MESSAGES/*.mo")):
        found.append((path, "mo"))
    for path in sorted(pathlib.Path("/usr/share/doc").rglob("*")):
        if path.is_file() and path.suffix in {".txt", ".md", ".rst", ".gz"} and not path.is_symlink():
            found.append((path, "doc"))
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" not in path.parts and "test" not in path.parts:
            found.append((path, "doc"))
    return found


def corpus_documents(split: str = "train", max_bytes: int | None = None) -> Iterator[str]:
    """Documents of the corpus, in a fixed order; `split` is "train" or "heldout"."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', found {split!r}")
    total = 0
    for path, kind in _sources():
        if _held_out(path) != (split == "heldout"):
            continue
        text = _translation_text(path) if kind == "mo" else _doc_text(path)
        if not text.strip():
            continue
        yield text
        total += len(text.encode("utf-8"))
        if max_bytes is not None and total >= max_bytes:
            return


def train(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(corpus_documents("train"), trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--out", type=pathlib.Path, default=OUT_PATH)
    args = parser.parse_args()
    tok = train(args.vocab_size)
    tok.save(str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {tok.get_vocab_size():,} tokens)", file=sys.stderr)


if __name__ == "__main__":
    main()
