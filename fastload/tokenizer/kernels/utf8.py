"""Strict UTF-8 validation of Arrow string batches, in Numba.

What lives here: `find_invalid_utf8`, which flags each document that Python's
`bytes.decode("utf-8")` would reject (bad lead bytes, truncated sequences,
overlong forms, surrogates, code points past U+10FFFF), with an ASCII fast
path. What does not: repairing the documents (`fastload/tokenizer/batch.py`
decodes the few flagged ones with `errors="replace"`).
"""

from __future__ import annotations

from fastload.kernels.jit import kernel

__all__ = ["find_invalid_utf8"]


@kernel
def utf8_sequence_end(buf, i, end):
    """Index after the valid UTF-8 sequence at `i`, or -1 (strict, as Python decodes)."""
    b0 = buf[i]
    if b0 < 0x80:
        return i + 1
    if b0 < 0xC2 or b0 > 0xF4:
        return -1
    if b0 < 0xE0:
        need = 1
        lo, hi = 0x80, 0xBF
    elif b0 < 0xF0:
        need = 2
        lo, hi = 0x80, 0xBF
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
    else:
        need = 3
        lo, hi = 0x80, 0xBF
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
    if i + need >= end:
        return -1
    b1 = buf[i + 1]
    if b1 < lo or b1 > hi:
        return -1
    for k in range(2, need + 1):
        b = buf[i + k]
        if b < 0x80 or b > 0xBF:
            return -1
    return i + need + 1


@kernel
def find_invalid_utf8(data, offsets, valid, bad):
    """Set bad[d] for each document that is not valid UTF-8; return how many."""
    has_validity = valid.shape[0] > 0
    count = 0
    for d in range(offsets.shape[0] - 1):
        bad[d] = False
        if has_validity and valid[d] == 0:
            continue
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            if data[i] < 0x80:  # fast path for ASCII
                i += 1
                continue
            j = utf8_sequence_end(data, i, end)
            if j < 0:
                bad[d] = True
                count += 1
                break
            i = j
    return count
