"""Numba kernels: the per-sample work of fastload, compiled, with no Python per sample.

Every kernel is a `nopython`, `nogil`, `cache=True` function (see `jit.py`)
that writes into a caller-provided `out` buffer, returns how much it wrote,
and has a slow, readable pure-Python twin that the tests compare it with.
This package never imports torch.
"""
