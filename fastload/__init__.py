"""fastload: data loading for transformer training at the speed of memory.

    fastload.convert("corpus.jsonl", "data/corpus")      # once
    ds = fastload.Dataset("data/corpus")                   # Arrow shards, checked, memory-mapped
    tok = fastload.Tokenizer.default()                     # byte-level BPE in Numba, HF-identical ids

Importing fastload is cheap and has no side effects: no threads, no
environment reads, no compilation.
"""

from fastload.convert import ConvertResult, convert
from fastload.errors import ConfigError, ConvertError, FastloadError, FormatError, TokenizerError
from fastload.format import Column, Dataset, Schema, verify_dataset
from fastload.tokenizer import Tokenizer, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "Column",
    "ConfigError",
    "ConvertError",
    "ConvertResult",
    "Dataset",
    "FastloadError",
    "FormatError",
    "Schema",
    "Tokenizer",
    "TokenizerError",
    "convert",
    "load_tokenizer",
    "verify_dataset",
]
