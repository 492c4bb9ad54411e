"""Checks over a chunk of raw JSON Lines bytes, made before pyarrow's parser sees them.

Two things pyarrow's JSON reader does not guard against: bytes that are not
UTF-8 (it copies them into string columns, whose blocks then fail to read
back), and deep nesting (it recurses, and a line ten thousand levels deep
overflows the worker thread's stack and kills the process). A third kills
it too, and costs nothing to check: a chunk whose first value is `null`. Both checks run
on every chunk of clean input, so they are vectorised and as cheap as we
could make them (see the note on costs below); the slow, exact work is done
only for the few lines they flag.

Costs, per 8 MiB chunk on the 2-core development VM, next to pyarrow's own
parse of 14-45 ms: UTF-8 validation 0.5-1.7 ms (Arrow's validator); the
depth check 0.3-2.5 ms, by the shape of the lines:
- lines shorter than 512 bytes cannot nest 512 deep; when every aligned
  256-byte window holds a newline, no line is that long, and one pass that
  counts newlines (which the pipeline needs anyway) settles it;
- otherwise the '[' and '{' of each line are counted (a line cannot nest
  deeper than that), from the positions of newlines and brackets, and only
  lines with more than MAX_JSON_DEPTH of them get the exact, string-aware
  `json_depth`.
Scans go block by block through reused scratch: whole-chunk temporaries
would be fresh memory on every call, and faulting it in costs more than the
compares.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["MAX_JSON_DEPTH", "deep_lines", "first_value_is_null", "is_utf8", "json_depth"]

# pyarrow's JSON reader (RapidJSON, then recursive type inference) overflows an 8 MiB
# thread stack at about 7,000 levels. Fastload stores at most two (a row object holding
# a list of token ids), so 512 leaves room for fields dropped with --columns and for
# smaller thread stacks, and stays below Python's recursion limit for the slow path.
MAX_JSON_DEPTH = 512

_SCAN_BLOCK = 1 << 19  # 512 KiB of reused scratch: stays in cache; 16 blocks per 8 MiB chunk
_WINDOW = 256  # a newline in every aligned window of 256 bytes: no line reaches 512 bytes
_SPARSE = 256  # fewer hit words than one per 256 bytes: expand hit words only


def is_utf8(data) -> bool:
    """Whether all of `data` is UTF-8, checked by Arrow's validator without copying."""
    offsets = pa.py_buffer(np.array([0, len(data)], np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def first_value_is_null(data) -> bool:
    """Whether the first JSON value in `data` is a bare `null`: pyarrow's reader (26.0) dies of a segfault on it.

    (A `null` on a later line it reads as a row of nulls.) Only the blank
    lines before the first value are looked at, a window at a time.
    """
    window = 4096
    for start in range(0, len(data), window):
        piece = bytes(data[start : start + window])
        stripped = piece.lstrip(b" \t\r\n")
        if stripped:
            first = start + len(piece) - len(stripped)
            return bytes(data[first : first + 4]) == b"null"
    return False


def deep_lines(data) -> tuple[int, set[int]]:
    """(newlines in `data`, offsets of the lines nested deeper than MAX_JSON_DEPTH)."""
    raw = np.frombuffer(data, np.uint8)
    num_lines, newlines = _newlines(raw)
    if newlines is None:  # every line is shorter than MAX_JSON_DEPTH bytes
        return num_lines, set()
    starts = np.concatenate([[0], newlines + 1])
    if len(raw) and raw[-1] != 10:
        starts = np.append(starts, len(raw))
    if len(starts) < 2 or np.diff(starts).max() <= MAX_JSON_DEPTH:
        return num_lines, set()
    openers = _Scanner(len(raw)).positions(raw, ord("{"), fold=0x20)  # '[' (0x5B), '{' (0x7B) differ in bit 0x20
    per_line = np.bincount(np.searchsorted(newlines, openers), minlength=1)
    suspects = np.flatnonzero(per_line > MAX_JSON_DEPTH)
    deep = {int(i) for i in suspects if json_depth(bytes(data[starts[i] : starts[i + 1]])) > MAX_JSON_DEPTH}
    return num_lines, deep


def _newlines(raw: np.ndarray) -> tuple[int, np.ndarray | None]:
    """(number of newlines, their positions), or (number, None) when no line can reach 2 * _WINDOW bytes."""
    scanner = _Scanner(len(raw))
    num_lines, found = 0, None  # found: positions per block, once some line may be long
    for start in range(0, len(raw), _SCAN_BLOCK):
        hits, n = scanner.hits(raw[start : start + _SCAN_BLOCK], 10)
        if found is None:
            count = int(np.count_nonzero(hits[:n]))
            if count * _WINDOW >= n and scanner.every_window_hit(n):
                num_lines += count
                continue
            here = scanner.hit_positions(n, start)
            found = [scanner.positions(raw[:start], 10), here]  # the blocks passed so far, again (rarely needed)
            continue
        found.append(scanner.hit_positions(n, start))
    if found is None:
        return num_lines, None
    newlines = np.concatenate(found)
    return len(newlines), newlines


class _Scanner:
    """Scratch buffers for searching one chunk block by block, and the searches."""

    def __init__(self, num_bytes: int):
        size = -(-min(num_bytes, _SCAN_BLOCK) // _WINDOW) * _WINDOW
        self._folded, self._hits = np.empty(size, np.uint8), np.zeros(size, bool)
        self._word_hit = np.empty(size // 8, bool)

    def hits(self, block: np.ndarray, value: int, *, fold: int = 0) -> tuple[np.ndarray, int]:
        """(scratch marking where `block | fold == value`, len(block)); the padding after it is True."""
        n = len(block)
        if fold:
            block = np.bitwise_or(block, fold, out=self._folded[:n])
        np.equal(block, value, out=self._hits[:n])
        self._hits[n:] = True  # the last, partial window: its line is bounded by the window before
        return self._hits, n

    def every_window_hit(self, n: int) -> bool:
        m = -(-n // _WINDOW) * _WINDOW
        words = self._hits[:m].view(np.uint64).reshape(-1, _WINDOW // 8)
        return bool(np.bitwise_or.reduce(words, axis=1).all())

    def hit_positions(self, n: int, start: int) -> np.ndarray:
        """Positions (plus `start`) of the hits among the first n bytes of scratch.

        Where hits are sparse (newlines and brackets in prose), the nonzero
        8-byte words are found first, about three times faster than the
        nonzero bytes, and only they are expanded.
        """
        m = -(-n // 8) * 8
        self._hits[n:m] = False
        words = np.flatnonzero(np.not_equal(self._hits[:m].view(np.uint64), 0, out=self._word_hit[: m // 8]))
        if len(words) * _SPARSE >= n:
            return np.flatnonzero(self._hits[:n]) + start
        within = np.flatnonzero(self._hits[:m].reshape(-1, 8)[words])
        return words[within >> 3] * 8 + (within & 7) + start

    def positions(self, raw: np.ndarray, value: int, *, fold: int = 0) -> np.ndarray:
        """Every position where `raw | fold == value`."""
        found = [np.zeros(0, np.int64)]
        for start in range(0, len(raw), _SCAN_BLOCK):
            _, n = self.hits(raw[start : start + _SCAN_BLOCK], value, fold=fold)
            found.append(self.hit_positions(n, start))
        return np.concatenate(found)


def json_depth(line: bytes) -> int:
    """How deep one line of JSON nests, brackets inside strings not counted.

    Vectorised over the line's quotes, backslashes and brackets only, so it
    stays linear however the line is built. Past a syntax error (where a
    parser stops) the count may be off, but never below the depth reached
    before it.
    """
    raw = np.frombuffer(line, np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    backslashes = np.flatnonzero(raw == ord("\\"))
    if len(quotes) and len(backslashes):
        # A quote is escaped when a run of an odd number of backslashes ends right before it.
        breaks = np.diff(backslashes) != 1
        run_starts = backslashes[np.concatenate([[True], breaks])]
        run_ends = backslashes[np.concatenate([breaks, [True]])]
        k = np.minimum(np.searchsorted(run_ends, quotes - 1), len(run_ends) - 1)
        run_length = np.where(run_ends[k] == quotes - 1, quotes - run_starts[k], 0)
        quotes = quotes[run_length % 2 == 0]
    folded = raw | 0x20  # '[' -> '{', ']' -> '}'
    brackets = np.flatnonzero((folded == ord("{")) | (folded == ord("}")))
    brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]  # an even number of quotes before: outside strings
    steps = np.where(folded[brackets] == ord("{"), 1, -1)
    return int(np.cumsum(steps).max(initial=0))
