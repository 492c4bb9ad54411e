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
from fastload.sampler import Sampler, SamplerOptions
from fastload.tokenizer import Tokenizer, load_tokenizer

__version__ = "0.1.0"


def __getattr__(name: str):
    # DataLoader needs torch; importing it lazily keeps `import fastload` light
    # for conversion jobs and tools that never load batches.
    if name == "DataLoader":
        from fastload.loader import DataLoader

        return DataLoader
    if name in ("PackedDataset", "PaddedDataset", "split_blocks"):  # their kernels compile with Numba, which is heavy to import
        import fastload.packing

        return getattr(fastload.packing, name)
    if name in ("ArrayDataset", "NormalizeImage", "Standardize"):
        import fastload.arrays

        return getattr(fastload.arrays, name)
    if name == "get_worker_info":
        from fastload.workers import get_worker_info

        return get_worker_info
    raise AttributeError(f"module 'fastload' has no attribute {name!r}")


__all__ = [
    "ArrayDataset",
    "Column",
    "ConfigError",
    "ConvertError",
    "ConvertResult",
    "DataLoader",
    "Dataset",
    "FastloadError",
    "FormatError",
    "NormalizeImage",
    "PackedDataset",
    "PaddedDataset",
    "Sampler",
    "SamplerOptions",
    "Standardize",
    "Schema",
    "Tokenizer",
    "TokenizerError",
    "convert",
    "get_worker_info",
    "load_tokenizer",
    "split_blocks",
    "verify_dataset",
]
