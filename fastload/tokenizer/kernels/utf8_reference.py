"""The slow, readable twin of `utf8.py`, for the tests: Python's own strict decoder decides."""

from __future__ import annotations

import numpy as np

__all__ = ["find_invalid_utf8_reference"]


def find_invalid_utf8_reference(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bad[d] for each document that `bytes.decode("utf-8")` rejects; null documents (valid[d] == 0) are not bad."""
    bad = np.zeros(len(offsets) - 1, dtype=bool)
    for d in range(len(bad)):
        if len(valid) and not valid[d]:
            continue
        try:
            bytes(data[offsets[d] : offsets[d + 1]]).decode("utf-8")
        except UnicodeDecodeError:
            bad[d] = True
    return bad
