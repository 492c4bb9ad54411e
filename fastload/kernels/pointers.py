"""Arrays that a kernel reaches by address, so one call can read many buffers.

A packed batch reads from dozens of blocks, each its own buffer (a view of
a memory-mapped shard, or a decompressed or freshly tokenized block).
Numba's typed lists could carry them, but each process then compiles the
list's methods on first use (about 0.5 s per worker, paid before the first
batch). Instead the caller keeps the arrays alive and passes their addresses
and lengths as plain int64 arrays; `view_at` turns one back into an array
inside the kernel. The caller owns the lifetime rule: an address is valid
while its array is referenced on the Python side, and a slot that no longer
holds an array has length 0, so the kernels' bounds checks refuse it.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastload.kernels.jit import kernel
from fastload.environment import jit_disabled

__all__ = ["view_at", "address_of"]


@intrinsic
def _voidptr(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def _view_at_python(address, shape, dtype):
    """`view_at` for kernels run as plain Python (FASTLOAD_DISABLE_JIT=1). Shapes read from int64 arrays
    hold numpy integers, which numba's Python `carray` refuses; an empty array may be at address 0."""
    shape = tuple(int(n) for n in shape)
    if int(address) == 0 and 0 in shape:
        return np.zeros(shape, dtype)
    return carray(ctypes.c_void_p(int(address)), shape, dtype)


if jit_disabled():
    view_at = _view_at_python
else:

    @kernel(inline="always")
    def view_at(address, shape, dtype):
        """The array of `shape` and `dtype` at `address` (inside kernels)."""
        return carray(_voidptr(address), shape, dtype)


def address_of(array: np.ndarray) -> int:
    """Where a C-contiguous array's data starts (0 for an empty one, which no kernel may read)."""
    if not array.flags.c_contiguous:
        raise ValueError("only C-contiguous arrays can be passed by address")
    return array.ctypes.data if array.size else 0
