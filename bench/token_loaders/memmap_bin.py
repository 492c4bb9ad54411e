"""The memmap contender (nanoGPT): the token stream as a flat uint16 `.bin`, a row per item, torch DataLoader.

Item i is `torch.from_numpy(data[s:s + 1025].astype(np.int64))` with
s = 1025 * i: the same non-overlapping rows as every other contender, and
`shuffle=True` makes the windows random. The file is mapped in the process
that reads (after the fork). It is the baseline of the table ("vs memmap").
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .prepare import BATCH_SIZE, ROW_LEN, token_stream

__all__ = ["build"]


def build(corpus: Path, workers: int) -> Callable[[], object]:
    """Prepare (untimed: the token stream) and return the loader factory."""
    import numpy as np
    import torch

    tokens_bin, meta = token_stream(corpus)

    class Windows(torch.utils.data.Dataset):
        def __init__(self):
            self.num_rows = meta["num_tokens"] // ROW_LEN
            self.data = None  # mapped in the process that reads

        def __len__(self):
            return self.num_rows

        def __getitem__(self, i):
            if self.data is None:
                self.data = np.memmap(tokens_bin, dtype=np.uint16, mode="r")
            start = i * ROW_LEN
            return torch.from_numpy(self.data[start : start + ROW_LEN].astype(np.int64))  # (1025,)

    def make():
        return torch.utils.data.DataLoader(Windows(), batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)

    return make
