"""The Hugging Face `datasets` contender: 1025-token rows saved with `save_to_disk`, read `with_format("torch")`.

The rows are a fixed-size list of uint16 per row in an Arrow table;
`load_from_disk(...).with_format("torch")` gives them as int64 tensors to a
torch DataLoader. `datasets` returns a dict per batch (`input_ids`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .prepare import BATCH_SIZE, CACHE, ROW_LEN, cached, rows, token_stream

__all__ = ["build", "hf_rows"]


def hf_rows(corpus: Path) -> Path:
    path = CACHE / f"{corpus.stem}.hf-datasets"
    tokens_bin, _ = token_stream(corpus)

    def build(tmp: Path) -> None:
        import datasets
        import pyarrow as pa

        column = pa.FixedSizeListArray.from_arrays(pa.array(rows(tokens_bin).reshape(-1)), ROW_LEN)
        datasets.Dataset(pa.table({"input_ids": column})).save_to_disk(str(tmp))

    cached(path, corpus, build)
    return path


def build(corpus: Path, workers: int) -> Callable[[], object]:
    """Prepare (untimed: the token stream, the saved dataset) and return the loader factory."""
    import datasets
    import torch

    saved = hf_rows(corpus)

    def make():
        dataset = datasets.load_from_disk(str(saved)).with_format("torch")
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)

    return make
