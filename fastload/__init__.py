"""fastload: data loading for transformer training at the speed of memory.

    fastload.convert("corpus.jsonl", "data/corpus")      # once
    ds = fastload.Dataset("data/corpus")                   # Arrow shards, checked, memory-mapped
    tok = fastload.Tokenizer.default()                     # byte-level BPE in Numba, HF-identical ids

Importing fastload is cheap and has no side effects: no threads, no
environment reads, no compilation, and no numpy, pyarrow, Numba or torch.
Every public name is imported from its module on first use (PEP 562, the
table `_EXPORTS`), so `import fastload.benchmark.proc` in a peer's benchmark
process, or a conversion job that never loads batches, pays only for what it
touches. The trade-off: an import error of a submodule shows at first use of
its names, not at `import fastload`. Type checkers and IDEs read the
`TYPE_CHECKING` imports below, which list the same names as `_EXPORTS`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastload.arrays import ArrayDataset, NormalizeImage, Standardize
    from fastload.convert import ConvertResult, convert
    from fastload.errors import ConfigError, ConvertError, FastloadError, FormatError, TokenizerError
    from fastload.format import Column, Dataset, Schema, verify_dataset
    from fastload.loader import DataLoader
    from fastload.packing import PackedDataset, PaddedDataset, split_blocks
    from fastload.sampler import Sampler, SamplerOptions
    from fastload.tokenizer import Tokenizer, load_tokenizer
    from fastload.workers import get_worker_info

__version__ = "0.1.0"

# public name -> the module it comes from (imported on first use)
_EXPORTS = {
    "ArrayDataset": "fastload.arrays",
    "NormalizeImage": "fastload.arrays",
    "Standardize": "fastload.arrays",
    "ConvertResult": "fastload.convert",
    "convert": "fastload.convert",
    "ConfigError": "fastload.errors",
    "ConvertError": "fastload.errors",
    "FastloadError": "fastload.errors",
    "FormatError": "fastload.errors",
    "TokenizerError": "fastload.errors",
    "Column": "fastload.format",
    "Dataset": "fastload.format",
    "Schema": "fastload.format",
    "verify_dataset": "fastload.format",
    "DataLoader": "fastload.loader",  # needs torch
    "PackedDataset": "fastload.packing",  # its kernels compile with Numba
    "PaddedDataset": "fastload.packing",
    "split_blocks": "fastload.packing",
    "Sampler": "fastload.sampler",
    "SamplerOptions": "fastload.sampler",
    "Tokenizer": "fastload.tokenizer",
    "load_tokenizer": "fastload.tokenizer",
    "get_worker_info": "fastload.workers",
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
    "SamplerOptions",
    "Schema",
    "Standardize",
    "Tokenizer",
    "TokenizerError",
    "convert",
    "get_worker_info",
    "load_tokenizer",
    "split_blocks",
    "verify_dataset",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """`fastload`'s module type: a public name is never replaced by the submodule of that name (`fastload.convert`).

    Python binds a submodule on its parent when it first loads
    (`fastload.convert = <module 'fastload.convert'>`). With the re-exports
    imported on first use, `from fastload.convert import ...` anywhere before
    the first `fastload.convert(...)` would leave the module where the
    function belongs; this keeps the binding out, as the eager imports used
    to, and `__getattr__` above finds the function.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
