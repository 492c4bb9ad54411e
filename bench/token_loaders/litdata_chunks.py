"""The LitData contender: the token stream `litdata.optimize`d into chunks, read by `TokensLoader` rows.

`StreamingDataset(item_loader=TokensLoader(block_size=1025), shuffle=True,
transform=<uint16 -> int64>)` + `StreamingDataLoader`, LitData's recipe for
pre-tokenized corpora. The chunks (~16 MB of tokens each) are built once
from the cached token stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .prepare import BATCH_SIZE, CACHE, ROW_LEN, cached, to_int64, token_stream

__all__ = ["build", "litdata_chunks"]


def litdata_chunks(corpus: Path) -> Path:
    path = CACHE / f"{corpus.stem}.litdata"
    tokens_bin, meta = token_stream(corpus)

    def build(tmp: Path) -> None:
        import functools

        from litdata import TokensLoader, optimize

        piece = 8 * 1 << 20  # tokens per input piece
        inputs = [(start, min(start + piece, meta["num_tokens"])) for start in range(0, meta["num_tokens"], piece)]
        optimize(
            fn=functools.partial(_token_piece, str(tokens_bin)),
            inputs=inputs,
            output_dir=str(tmp),
            chunk_size=ROW_LEN * 8192,  # tokens per chunk (~16 MB), as in LitData's TokensLoader recipe
            item_loader=TokensLoader(),
            num_workers=1,
            verbose=False,
        )

    cached(path, corpus, build)
    return path


def _token_piece(tokens_bin: str, token_range: tuple[int, int]):
    """A LitData `fn`: one uint16 array of the token stream (module-level, so it pickles)."""
    import numpy as np

    start, stop = token_range
    yield np.fromfile(tokens_bin, dtype=np.uint16, count=stop - start, offset=2 * start)


def build(corpus: Path, workers: int) -> Callable[[], object]:
    """Prepare (untimed: the token stream, the chunks) and return the loader factory."""
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

    chunks = litdata_chunks(corpus)

    def make():
        dataset = StreamingDataset(str(chunks), item_loader=TokensLoader(block_size=ROW_LEN), shuffle=True, transform=to_int64)
        return StreamingDataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)

    return make
