"""Map-style access shared by the datasets that compute whole batches: a row number from an index."""

from __future__ import annotations

import numpy as np

__all__ = ["row_number"]


def row_number(index, length: int, rows: str) -> int:
    """`index` as a row in [0, length), negative ones counting from the end; IndexError naming the range.

    `rows` names what is counted ("packed rows", "documents", "rows") in the message.
    """
    if not isinstance(index, (int, np.integer)):
        raise TypeError(f"indices are integers (a row) or what the loader's sampler yields, not {type(index).__name__}")
    i = int(index) + length if index < 0 else int(index)
    if not 0 <= i < length:
        raise IndexError(f"row {index} out of range for {length:,} {rows}")
    return i
