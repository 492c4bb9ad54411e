"""Where the partition cuts of objects fall, found in rounds of parallel ranged GETs instead of one GET per cut.

`partitions.plan_partitions` cuts a splittable file at the first line end after each
target, and each target is `partition_bytes` past the cut before it: a chain.
On local disk a lookup is a few microseconds; in a store it is a round trip,
and a corpus of 1,000 partitions would wait 1,000 of them, one after another,
before any task starts. Here the walk runs in rounds:

    round: walk the plan; a lookup the fetched windows answer is exact; at the first that they
           do not, fetch from there (exactly), and guess the rest of the chain (a cut lands past its
           target by about the average line's remainder), asking for a window around each guess
    then:  fetch every window asked for in parallel; walk again

A walk whose every lookup was answered by fetched bytes is the exact plan
(the same as one GET per cut: each answer is the same search over the same
bytes), so the partitions, and so the dataset, do not depend on how the
guesses went; a round answers at least the one exact lookup and, when the
guesses hold, the whole chain. After `MAX_ROUNDS` the rest is looked up one
GET at a time, as before.
"""

from __future__ import annotations

import bisect
from concurrent.futures import ThreadPoolExecutor

from fastload.convert.input_files import InputFile, open_raw, unreadable
from fastload.convert.partitions import Partition, line_end_at_or_after, plan_partitions

__all__ = ["plan_in_rounds", "MAX_ROUNDS", "WINDOW_BYTES"]

WINDOW_BYTES = 256 << 10  # fetched around each guessed cut: room for the guesses to drift
MAX_ROUNDS = 32
_MAX_WINDOWS_PER_ROUND = 128  # 32 MiB a round at most
_FIRST_GUESSES = 8  # where lines are long and uneven, guesses miss: fetch more of them only as they pay off
_PARALLEL_GETS = 32


class _Unknown(Exception):
    """The fetched windows do not say where this cut falls."""


def plan_in_rounds(files: list[InputFile], *, partition_bytes: int, text_lines: bool) -> list[Partition]:
    """`partitions.plan_partitions` of `files`, the cuts of objects among them found in rounds."""
    lookups = _Lookups()
    ahead = _FIRST_GUESSES  # windows to fetch around guesses in a round: twice as many as the last round's answered
    for _ in range(MAX_ROUNDS):
        answered = len(lookups.answers)
        wanted: dict[tuple[str, int], InputFile] = {}
        overshoot = [0, 0]  # bytes past their targets the cuts answered fell, and how many

        def line_end(found: InputFile, position: int) -> int | None:
            if found.store is None:
                return line_end_at_or_after(found, position)
            try:
                cut = lookups.answer(found, position)
            except _Unknown as unknown:
                guess = position + (overshoot[0] // overshoot[1] if overshoot[1] else 0)
                if not wanted:  # the walk is exact up to here: fetch on from where the search stopped
                    wanted[(found.path, unknown.args[0])] = found
                elif len(wanted) <= ahead and guess < found.num_bytes:
                    wanted[(found.path, max(0, guess - WINDOW_BYTES // 2))] = found
                return guess if guess < found.num_bytes else None  # (from here on, this walk only decides what to fetch)
            if cut is not None:
                overshoot[0] += cut - position
                overshoot[1] += 1
            return cut

        partitions = plan_partitions(files, partition_bytes=partition_bytes, text_lines=text_lines, line_end=line_end)
        if not wanted:
            return partitions
        ahead = min(_MAX_WINDOWS_PER_ROUND, max(_FIRST_GUESSES, 2 * (len(lookups.answers) - answered)))
        lookups.fetch(wanted)
    return plan_partitions(files, partition_bytes=partition_bytes, text_lines=text_lines, line_end=lookups.exact)


class _Lookups:
    """The cuts answered so far, and the windows of one round, from which the next walk answers more.

    Windows are dropped after the walk that follows their fetch: what they
    answered is kept as answers (a few bytes each), so memory stays at one
    round's windows (`_MAX_WINDOWS_PER_ROUND` x `WINDOW_BYTES`) whatever the
    number of cuts. A line longer than a window is followed across rounds
    (`scanned`: how far its search got).
    """

    def __init__(self):
        self.answers: dict[tuple[str, int], int | None] = {}
        self.scanned: dict[tuple[str, int], int] = {}  # (url, position) -> offset its search got to, without a line end
        self.windows: dict[str, tuple[list[int], dict[int, bytes]]] = {}  # url -> (sorted starts, start -> bytes)

    def answer(self, found: InputFile, position: int) -> int | None:
        """The first line end at or after `position - 1` (None: the file ends first), or raise
        `_Unknown(offset to fetch from)` when the fetched bytes do not tell."""
        key = (found.path, position)
        if key in self.answers:
            return self.answers[key]
        offset = self.scanned.get(key, position - 1)
        starts, data = self.windows.get(found.path, ([], {}))
        while True:
            if offset >= found.num_bytes:
                self.answers[key] = None
                return None
            k = bisect.bisect_right(starts, offset) - 1  # (windows are all WINDOW_BYTES long but at the end)
            if k < 0 or offset >= starts[k] + len(data[starts[k]]):
                self.scanned[key] = offset
                raise _Unknown(offset)
            start = starts[k]
            newline = data[start].find(b"\n", offset - start)
            if newline >= 0:
                cut = start + newline + 1
                self.answers[key] = cut if cut < found.num_bytes else None
                return self.answers[key]
            offset = start + len(data[start])  # on into the next window, if there is one

    def fetch(self, wanted: dict[tuple[str, int], InputFile]) -> None:
        """This round's windows, in parallel, in place of the last round's."""

        def get(key: tuple[str, int]) -> tuple[tuple[str, int], bytes]:
            found, start = wanted[key], key[1]
            try:
                with open_raw(found, sequential=False) as f:
                    f.seek(start)
                    return key, f.read(min(WINDOW_BYTES, found.num_bytes - start))
            except OSError as exc:
                raise unreadable(str(found.path), exc) from None

        self.windows = {}
        with ThreadPoolExecutor(min(_PARALLEL_GETS, len(wanted)), thread_name_prefix="fastload-plan") as pool:
            for (url, start), data in pool.map(get, list(wanted)):
                starts, by_start = self.windows.setdefault(url, ([], {}))
                if start not in by_start:
                    bisect.insort(starts, start)
                by_start[start] = data

    def exact(self, found: InputFile, position: int) -> int | None:
        """A cut looked up for certain: from what is known, else by reading (one GET after another)."""
        if found.store is not None:
            try:
                return self.answer(found, position)
            except _Unknown:
                pass
        return line_end_at_or_after(found, position)
