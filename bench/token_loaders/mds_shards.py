"""The MosaicML Streaming contender: MDS shards of `ndarray:uint16:1025` rows, a `StreamingDataset`, torch DataLoader.

`StreamingDataset(shuffle=True)` whose `__getitem__` returns the row as
int64. MosaicML Streaming imports torchvision, which cannot load against the
CPU torch here; `import_streaming` (run first in the child, as in
`bench/convert.py`) stands in an empty torchvision and returns the note that
says so in the row. `StreamingDataset` never touches it. Only one
`StreamingDataset` may use a local folder at a time, so each new loader
drops the previous one first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from convert import _import_streaming

from .prepare import BATCH_SIZE, CACHE, ROW_LEN, cached, rows, to_int64, token_stream

__all__ = ["build", "import_streaming", "mds_shards"]


def import_streaming() -> str | None:
    """Import `streaming`; the row's note if torchvision had to be stubbed, else None."""
    note = _import_streaming()
    return note and note.replace("MDSWriter does not use it", "StreamingDataset does not use it")


def mds_shards(corpus: Path) -> Path:
    path = CACHE / f"{corpus.stem}.mds"
    tokens_bin, _ = token_stream(corpus)

    def build(tmp: Path) -> None:
        from streaming import MDSWriter

        with MDSWriter(out=str(tmp), columns={"input_ids": f"ndarray:uint16:{ROW_LEN}"}) as writer:
            for row in rows(tokens_bin):
                writer.write({"input_ids": row})

    cached(path, corpus, build)
    return path


def build(corpus: Path, workers: int) -> Callable[[], object]:
    """Prepare (untimed: the token stream, the shards) and return the loader factory; `import_streaming()` first."""
    import torch
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    shards = mds_shards(corpus)
    clean_stale_shared_memory()

    class TokenRows(StreamingDataset):
        def __getitem__(self, idx):
            return to_int64(super().__getitem__(idx)["input_ids"])  # (1025,)

    previous = []

    def make():
        while previous:  # one StreamingDataset per local folder at a time: drop the last repeat's first
            previous.pop()
        dataset = TokenRows(local=str(shards), shuffle=True, batch_size=BATCH_SIZE)
        previous.append(dataset)
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)

    return make
