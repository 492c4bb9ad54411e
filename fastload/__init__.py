"""fastload: data loading for transformer training at the speed of memory.

    fastload.convert("corpus.jsonl", "data/corpus")      # once
    ds = fastload.Dataset("data/corpus")                   # Arrow shards, checked, memory-mapped
    tok = fastload.Tokenizer.default()                     # byte-level BPE in Numba, HF-identical ids

Importing fastload is cheap and has no side effects: no threads, no
environment reads, no compilation, and no numpy, pyarrow, Numba or torch.
Every public name is imported from its module on first use (the table
`_EXPORTS`; `fastload/exports.py` says how and why); type checkers and IDEs
read the `TYPE_CHECKING` imports below, which list the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastload.exports import export_on_first_use

if TYPE_CHECKING:
    from fastload.arrays import ArrayDataset, NormalizeImage, Standardize
    from fastload.attention import cu_seqlens
    from fastload.convert import ConvertResult, convert
    from fastload.errors import ConfigError, ConvertError, FastloadError, FormatError, StoreError, TokenizerError
    from fastload.format import Column, Dataset, Schema, verify_dataset
    from fastload.loader import DataLoader
    from fastload.packing import PackedDataset, PaddedDataset, split_blocks
    from fastload.sampler import Mixture, Sampler, SamplerOptions
    from fastload.store import RetryPolicy
    from fastload.tokenizer import Tokenizer, load_tokenizer
    from fastload.workers import get_worker_info

__version__ = "0.1.0"

# public name -> the module it comes from (imported on first use)
_EXPORTS = {
    "ArrayDataset": "fastload.arrays",
    "NormalizeImage": "fastload.arrays",
    "Standardize": "fastload.arrays",
    "cu_seqlens": "fastload.attention",  # needs torch
    "ConvertResult": "fastload.convert",
    "convert": "fastload.convert",
    "ConfigError": "fastload.errors",
    "ConvertError": "fastload.errors",
    "FastloadError": "fastload.errors",
    "FormatError": "fastload.errors",
    "TokenizerError": "fastload.errors",
    "StoreError": "fastload.errors",
    "Column": "fastload.format",
    "Dataset": "fastload.format",
    "Schema": "fastload.format",
    "verify_dataset": "fastload.format",
    "DataLoader": "fastload.loader",  # needs torch
    "PackedDataset": "fastload.packing",  # its kernels compile with Numba
    "PaddedDataset": "fastload.packing",
    "split_blocks": "fastload.packing",
    "Sampler": "fastload.sampler",
    "Mixture": "fastload.sampler",
    "SamplerOptions": "fastload.sampler",
    "Tokenizer": "fastload.tokenizer",
    "load_tokenizer": "fastload.tokenizer",
    "get_worker_info": "fastload.workers",
    "RetryPolicy": "fastload.store",
}

# the keys of _EXPORTS, spelled out for tools that read __all__ without running this file
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
    "Mixture",
    "SamplerOptions",
    "RetryPolicy",
    "StoreError",
    "Schema",
    "Standardize",
    "Tokenizer",
    "TokenizerError",
    "convert",
    "cu_seqlens",
    "get_worker_info",
    "load_tokenizer",
    "split_blocks",
    "verify_dataset",
]

export_on_first_use(__name__, _EXPORTS)
