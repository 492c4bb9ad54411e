"""The demo corpus that ships with fastload (built by `assets/build_demo_corpus.py`).

About 6 MB of real text from this kind of machine (English documentation,
Python source, translations in dozens of languages) as gzipped JSON Lines,
so the README's first command and the tests need no network.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["demo_corpus_path"]


def demo_corpus_path() -> Path:
    """Path of the shipped `demo_corpus.jsonl.gz` (one JSON object per document: text, source, kind)."""
    return Path(str(resources.files("fastload") / "assets" / "demo_corpus.jsonl.gz"))
