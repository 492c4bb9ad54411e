"""The one place where fastload's Numba flags live.

`kernel` is `numba.njit(cache=True, nogil=True)`: `cache=True` so worker
processes and later runs load the compiled code from disk instead of paying
compilation again, `nogil=True` so threads can run kernels in parallel.
With `FASTLOAD_DISABLE_JIT=1` (read when a kernel is first defined) the
function is returned unchanged, which makes kernels debuggable with pdb.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from fastload.environment import jit_disabled

__all__ = ["kernel"]

F = TypeVar("F", bound=Callable)


def kernel(fn: F | None = None, **flags) -> F:
    """Decorate `fn` as a fastload kernel (optionally with extra njit flags)."""

    def wrap(f: F) -> F:
        if jit_disabled():
            return f
        import numba  # imported lazily so `import fastload` stays cheap

        return numba.njit(cache=True, nogil=True, **flags)(f)

    return wrap(fn) if fn is not None else wrap
