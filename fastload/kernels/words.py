"""Eight bytes at a time inside kernels: unaligned 64-bit loads and stores, and counting trailing zero bits.

SWAR ("SIMD within a register") code reads a buffer a word at a time, tests
all 8 bytes with a few integer operations, and finds the first byte that
matched from the lowest set bit. Numba has no unaligned load of a uint64
from a uint8 array, nor a count of trailing zeros, so both are LLVM
intrinsics here; the JSON Lines scanner (`json_lines.py`) is built on them
and its tests exercise them. Callers keep the 8 bytes in bounds: nothing
is checked. With `FASTLOAD_DISABLE_JIT=1` the plain Python versions stand in.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from fastload.environment import jit_disabled
from fastload.kernels.jit import kernel

__all__ = ["copy_bytes", "load_word", "store_word", "trailing_zeros"]


@intrinsic
def _load_word_jit(typingctx, data, i):
    if not (isinstance(data, types.Array) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)

    return types.uint64(data, i), codegen


@intrinsic
def _store_word_jit(typingctx, out, o, word):
    if not (isinstance(out, types.Array) and isinstance(o, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(args[2], pointer, align=1)
        return context.get_dummy_value()

    return types.none(out, o, types.uint64), codegen


@intrinsic
def _trailing_zeros_jit(typingctx, word):
    if not isinstance(word, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))  # never called with 0

    return types.int64(types.uint64), codegen


def _load_word_python(data, i):
    return np.uint64(int.from_bytes(bytes(data[i : i + 8]), "little"))


def _store_word_python(out, o, word):
    out[o : o + 8] = np.frombuffer(int(word).to_bytes(8, "little"), np.uint8)


def _trailing_zeros_python(word):
    return (int(word) & -int(word)).bit_length() - 1


# load_word(data, i): data[i:i + 8] as a little-endian uint64; store_word(out, o, word): the reverse;
# trailing_zeros(word): the number of zero bits below the lowest set bit of a nonzero word.
if jit_disabled():
    load_word, store_word, trailing_zeros = _load_word_python, _store_word_python, _trailing_zeros_python
else:
    load_word, store_word, trailing_zeros = _load_word_jit, _store_word_jit, _trailing_zeros_jit


@kernel(inline="always")
def copy_bytes(src, i, out, o, length):
    """out[o:o + length] = src[i:i + length], 8 bytes at a time (a byte loop goes through Numba's index checks: 0.9 GB/s)."""
    k = 0
    while k + 8 <= length:
        store_word(out, o + k, load_word(src, i + k))
        k += 8
    while k < length:
        out[o + k] = src[i + k]
        k += 1
