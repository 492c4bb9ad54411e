"""The partitions of a conversion: the input cut into pieces of about `partition_bytes`, a pure function of the inputs.

A partition is the unit one conversion task works on, in the driver's own
process (the local engine) or in a Ray task (`fastload.ray`), and it writes
shards of its own, named after it (`shard-PPPPP-KKKK.arrow`: partition P's
K-th shard). Because the cut depends only on the input files and the options,
never on the engine, the number of workers or the order tasks run in, every
engine writes the same bytes.

How the input is cut: files are taken in the order `find_inputs` gives and
packed into partitions of about `partition_bytes` of input, so a corpus of
many small files still makes full-size shards. JSON Lines and line-per-row
text files that are not compressed are cut at a line boundary where a
partition is full (the planner reads a few bytes past the cut to find the
next newline; for objects in a store, in rounds of parallel ranged GETs:
`line_ends`); compressed files, CSV, Parquet and Arrow files, and text files
read as one document each, are never cut: a 10 GB `.jsonl.gz` is one
partition (the trade-off: no random access into a compressed stream).

Line numbers: a piece that starts inside a file does not know its first line
number; its task counts the lines it reads and the driver, which sees the
partitions in order, turns a bad line's place into `file:line` (`merge`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from fastload.convert.input_files import InputFile, open_raw, unreadable

__all__ = ["Piece", "Partition", "plan_partitions", "line_end_at_or_after", "partition_shard_name", "partition_of_shard"]

_FIND_NEWLINE_BYTES = 1 << 16  # read this much at a time past a cut to find the end of its line
_PARTITION_SHARD = re.compile(r"(?:promoted-)?shard-(\d{5,})-\d{4,}\.arrow")


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of one input file; `end` None: to the end of the file."""

    file: InputFile
    start: int = 0
    end: int | None = None

    @property
    def num_bytes(self) -> int:
        return (self.file.num_bytes if self.end is None else self.end) - self.start


@dataclass(frozen=True)
class Partition:
    """Consecutive pieces of the input, converted by one task into shards `shard-{partition_id:05d}-KKKK.arrow`."""

    partition_id: int
    pieces: tuple[Piece, ...]

    @property
    def num_bytes(self) -> int:
        return sum(piece.num_bytes for piece in self.pieces)


def partition_shard_name(partition_id: int, k: int) -> str:
    return f"shard-{partition_id:05d}-{k:04d}.arrow"


def partition_of_shard(name: str) -> int | None:
    """The partition a shard name (or its promoted temporary) belongs to; None for other names."""
    match = _PARTITION_SHARD.fullmatch(name)
    return int(match.group(1)) if match else None


def splittable(found: InputFile, *, text_lines: bool) -> bool:
    """Whether a file may be cut between lines: uncompressed JSON Lines, or text read one row per line."""
    return found.compression is None and (found.fmt == "jsonl" or (found.fmt == "text" and text_lines))


def plan_partitions(
    files: Iterable[InputFile], *, partition_bytes: int, text_lines: bool, line_end: Callable[[InputFile, int], int | None] | None = None
) -> list[Partition]:
    """Pack `files`, in order, into partitions of about `partition_bytes`, cutting splittable files at line ends;
    `line_end(file, position)` says where a cut falls (default: `line_end_at_or_after`, which reads the file)."""
    line_end = line_end or line_end_at_or_after
    partitions: list[Partition] = []
    pieces: list[Piece] = []
    size = 0

    def close() -> None:
        nonlocal pieces, size
        if pieces:
            partitions.append(Partition(len(partitions), tuple(pieces)))
        pieces, size = [], 0

    for found in files:
        start = 0
        if splittable(found, text_lines=text_lines):
            while found.num_bytes - start > partition_bytes - size:
                cut = line_end(found, start + partition_bytes - size)
                if cut is None:
                    break
                pieces.append(Piece(found, start, cut))
                close()
                start = cut
        pieces.append(Piece(found, start, None))
        size += found.num_bytes - start
        if size >= partition_bytes:
            close()
    close()
    return partitions


def line_end_at_or_after(found: InputFile, position: int) -> int | None:
    """The offset just past the first newline at or after `position - 1`; None when the file ends first."""
    try:
        return _find_line_end(found, position)
    except OSError as exc:
        raise unreadable(str(found.path), exc) from None


def _find_line_end(found: InputFile, position: int) -> int | None:
    with open_raw(found, sequential=False) as f:
        f.seek(position - 1)
        offset = position - 1
        while True:
            data = f.read(_FIND_NEWLINE_BYTES)
            if not data:
                return None
            newline = data.find(b"\n")
            if newline >= 0:
                cut = offset + newline + 1
                return cut if cut < found.num_bytes else None
            offset += len(data)
