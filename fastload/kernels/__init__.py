"""Numba kernels: the per-sample work of fastload, compiled, with no Python per sample.

    jit.py                 the one place the Numba flags live (`kernel`)
    pointers.py            arrays by address, so one kernel call reaches many loaded blocks
    pack.py                packed and padded token batches (PackedDataset, PaddedDataset)
    normalize.py           image normalisation and standardisation fused with the cast (ArrayDataset)
    json_lines.py          one-pass scan of JSON Lines of flat objects (fastload convert's fast JSON path)
    words.py               eight bytes at a time: unaligned word loads and stores (SWAR), for json_lines.py

The convention, checked by `tests/test_architecture.py`: every Numba kernel
lives in a `kernels/` folder (this one, or `fastload/tokenizer/kernels/` for
tokenization), is a `nopython`, `nogil`, `cache=True` function (`jit.py`)
that writes into caller-provided buffers, and has a slow, readable twin in
`<name>_reference.py` beside its module, which the tests compare it with and
which nothing uses at run time. Building blocks that other kernels use
(`jit.py`, `pointers.py`) are tested through those kernels. This package
never imports torch.
"""
