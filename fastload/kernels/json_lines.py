"""Scan JSON Lines of flat objects in one pass, in Numba: the fast path of `fastload convert`'s JSON reader.

What lives here:
- `scan_json_lines`: one pass over a chunk of JSON Lines whose every line is
  a flat object (string, number, true/false and null values). It unescapes
  strings, copies numbers' text, names the columns in order of first
  appearance, and writes one *record* per value (row, column, kind, where its
  text ends). It refuses (returns `REFUSED`) anything else: nested values,
  syntax errors, raw control characters in strings, lone UTF-16 surrogates,
  duplicate keys, more than `MAX_COLUMNS` fields, and numbers whose fate in
  pyarrow's reader is not plain (see below).
- `gather_spans`: copies byte ranges into one contiguous buffer with Arrow
  offsets, to make a column's string data out of the interleaved `text`.
  One column, the caller's guess at the widest (a corpus's "text"), has its
  values written to a buffer of its own instead (`wide`): that buffer is
  the column's string data as it is, and the copy is saved for most bytes.

What does not: deciding column types and building Arrow arrays
(`fastload/convert/flat_json.py`), and every refused chunk, which goes to
the general parser (pyarrow's reader, then Python's `json` line by line),
so a refusal costs time and never changes a result.

Contract and trade-offs:
- Text that is not UTF-8 is refused, checked as it is copied: bytes from
  0x80 up can only stand inside strings (anywhere else the scanner refuses
  the chunk), and the words of a string that hold any go through a UTF-8
  automaton (`_utf8_automaton`: no overlong forms, no encoded surrogates,
  nothing past U+10FFFF, the rules of Arrow's validator and of Python's
  decoder), a shift per byte without a branch; a pure-ASCII word costs one
  test. A separate pass of Arrow's validator over the chunk cost a third
  of this path's time; a branch per character, as much again. `\\u` escapes
  are encoded here, and the lone surrogates that could not be are refused.
- A line ends at "\\n" and holds one object; blank lines (spaces, tabs,
  "\\r") are skipped, as pyarrow skips them. An object spread over several
  lines, or two objects on one line, are refused (pyarrow would accept them;
  the general path decides).
- Numbers are checked against JSON's grammar and their text kept: the
  caller converts it with Arrow's own string-to-number parser, the one
  pyarrow's JSON reader uses, so values are bit-identical. Exponents of more
  than `MAX_EXPONENT_DIGITS` digits and numbers longer than
  `MAX_NUMBER_BYTES` are refused: RapidJSON (inside pyarrow) rejects some of
  those ("0.0e400") that Arrow's parser would accept.
- String contents, most of the bytes, are read and copied 8 bytes at a time
  (SWAR: one test per word for a quote, a backslash or a control character,
  unaligned loads and stores); the rest goes a byte at a time.

Record kinds are the module constants `NULL`, `STRING`, `INT`, `FLOAT`,
`FALSE`, `TRUE`; a record's text is `text[value_end[k - 1]:value_end[k]]`
(`value_end[-1]` taken as 0), empty for null, true and false.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.jit import kernel
from fastload.kernels.words import copy_bytes, load_word, store_word, trailing_zeros

__all__ = [
    "FALSE",
    "FLOAT",
    "INT",
    "MAX_COLUMNS",
    "MAX_EXPONENT_DIGITS",
    "MAX_NUMBER_BYTES",
    "NULL",
    "REFUSED",
    "STRING",
    "TRUE",
    "gather_spans",
    "max_values",
    "scan_json_lines",
]

REFUSED = -1  # what scan_json_lines returns for a chunk it leaves to the general parser

# Record kinds (0 is left free: the caller uses it for "field absent from the row").
NULL, STRING, INT, FLOAT, FALSE, TRUE = 1, 2, 3, 4, 5, 6

MAX_COLUMNS = 1024  # more distinct fields in one chunk is not a pretraining corpus: leave it to pyarrow
MAX_NUMBER_BYTES = 40  # RapidJSON rejects integers of 309+ digits; far below that, and longer than any float64 needs
MAX_EXPONENT_DIGITS = 2  # RapidJSON rejects "0.0e400" (exponent > 308 + fraction digits); Arrow would read 0.0

_QUOTE, _BACKSLASH, _NEWLINE, _COMMA, _COLON = 34, 92, 10, 44, 58
_OPEN, _CLOSE = 123, 125  # { }

# Eight bytes at a time (SWAR): a word holds a zero byte exactly when (word - _ONES) & ~word & _HIGHS
# is not 0, a byte b when word ^ (b * _ONES) holds a zero, a byte below 0x20 when (word - 0x20 * _ONES) & ~word & _HIGHS is not 0.
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)
_ZERO = np.uint64(0)
_LOW_BYTE = np.uint64(0xFF)


def _utf8_automaton() -> np.ndarray:
    """The UTF-8 validating automaton as a table of 256 words, one per byte value (a "shift DFA").

    States are multiples of 6 (their bit offset in a word): 0 accepts (between
    characters), 6 rejects for good, the others wait for continuation bytes:
    12 for one more, 18 for two, 24 for three, and 30, 36, 42, 48 for the
    narrowed second bytes after E0, ED, F0 and F4 (the Unicode standard's
    table of well-formed sequences: no overlong forms, no surrogates, nothing
    past U+10FFFF). Bits [s, s + 6) of word b hold the state that byte b
    leads to from state s, so a step is one shift and one mask, no branch.
    """
    accept, reject, one, two, three, after_e0, after_ed, after_f0, after_f4 = (6 * k for k in range(9))
    nexts = np.zeros(256, np.uint64)
    for byte in range(256):
        to = dict.fromkeys((accept, one, two, three, after_e0, after_ed, after_f0, after_f4, reject), reject)
        if byte < 0x80:
            to[accept] = accept
        elif byte < 0xC0:  # a continuation byte, whose range the narrowed states check
            to[one], to[two], to[three] = accept, one, two
            to[after_e0] = one if byte >= 0xA0 else reject
            to[after_ed] = one if byte < 0xA0 else reject
            to[after_f0] = two if byte >= 0x90 else reject
            to[after_f4] = two if byte < 0x90 else reject
        elif 0xC2 <= byte <= 0xDF:
            to[accept] = one
        elif 0xE0 <= byte <= 0xEF:
            to[accept] = {0xE0: after_e0, 0xED: after_ed}.get(byte, two)
        elif 0xF0 <= byte <= 0xF4:
            to[accept] = {0xF0: after_f0, 0xF4: after_f4}.get(byte, three)
        word = 0
        for state, target in to.items():
            word |= target << state
        nexts[byte] = word
    return nexts


_UTF8_NEXT = _utf8_automaton()


def _unescape_table() -> np.ndarray:
    """What the short escapes \\" \\\\ \\/ \\b \\f \\n \\r \\t stand for, by the byte after the backslash; 0: no such escape."""
    table = np.zeros(256, np.uint8)
    for letter, byte in zip(b'"\\/bfnrt', b'"\\/\b\f\n\r\t'):
        table[letter] = byte
    return table


_UNESCAPED = _unescape_table()
_UTF8_ACCEPT = np.uint64(0)
_STATE_BITS = np.uint64(63)


def max_values(num_bytes: int) -> int:
    """How many records `num_bytes` of JSON Lines can hold at most: the size of the record arrays.

    A value takes at least 5 bytes: "" : 0 and a "{" or ",".
    """
    return num_bytes // 5 + 1


@kernel(inline="always")
def _skip_space(data, i, n):
    """The first position from `i` that is not a space, tab or carriage return (newlines end lines)."""
    while i < n:
        c = data[i]
        if c != 32 and c != 9 and c != 13:
            break
        i += 1
    return i


@kernel(inline="always")
def _hex4(data, i, n):
    """The value of the 4 hex digits at `i`, or -1."""
    if i + 4 > n:
        return -1
    value = 0
    for k in range(4):
        c = int(data[i + k])  # uint8 arithmetic wraps in plain Python (FASTLOAD_DISABLE_JIT): 0xD83D would not fit
        if 48 <= c <= 57:
            digit = c - 48
        elif 97 <= c <= 102:
            digit = c - 87
        elif 65 <= c <= 70:
            digit = c - 55
        else:
            return -1
        value = value * 16 + digit
    return value


@kernel(inline="always")
def _put_code_point(out, o, cp):
    """Write code point `cp` as UTF-8 at out[o]; the position after it."""
    if cp < 0x80:
        out[o] = cp
        return o + 1
    if cp < 0x800:
        out[o] = 0xC0 | (cp >> 6)
        out[o + 1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        out[o] = 0xE0 | (cp >> 12)
        out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[o + 2] = 0x80 | (cp & 0x3F)
        return o + 3
    out[o] = 0xF0 | (cp >> 18)
    out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[o + 3] = 0x80 | (cp & 0x3F)
    return o + 4


@kernel(inline="always")
def _special_bytes(word):
    """The high bit of each byte of `word` that is a quote, a backslash or a control character, or 0.

    Above the first such byte, borrows can mark others falsely; the lowest
    mark is always right, and it is the only one used.
    """
    quotes = word ^ _QUOTES
    backslashes = word ^ _BACKSLASHES
    return (((quotes - _ONES) & ~quotes) | ((backslashes - _ONES) & ~backslashes) | ((word - _SPACES) & ~word)) & _HIGHS


@kernel(inline="always")
def _utf8_step(state, byte):
    """The UTF-8 automaton's state after `byte` (a uint64), from `state`: one shift, no branch."""
    return (_UTF8_NEXT[byte] >> state) & _STATE_BITS


@kernel(inline="always")
def _utf8_word(state, word, num_bytes):
    """The UTF-8 automaton's state after the first `num_bytes` bytes of `word`, from `state`."""
    for k in range(num_bytes):
        state = _utf8_step(state, (word >> np.uint64(8 * k)) & _LOW_BYTE)
    return state


@kernel(inline="always")
def _scan_string(data, i, n, out, o):
    """Unescape the string whose contents start at `i` into out[o:].

    Returns (position after its closing quote, end in out, _HIGHS if any
    byte was not ASCII, else 0), or (-1, ...), text that is not UTF-8 included.
    """
    high = _ZERO
    state = _UTF8_ACCEPT
    while i < n:
        # Eight bytes at a time, stored before they are looked at: out has room, since o <= i
        # (what the scanner writes never outgrows what it has read) and i + 8 <= n.
        while i + 8 <= n:
            word = load_word(data, i)
            store_word(out, o, word)
            special = _special_bytes(word)
            if special != _ZERO:
                plain = trailing_zeros(special) >> 3
                if (word & _HIGHS) != _ZERO:
                    high = _HIGHS
                    state = _utf8_word(state, word, plain)
                i += plain
                o += plain
                break
            if (word & _HIGHS) != _ZERO:
                high = _HIGHS
                state = _utf8_word(state, word, 8)
            i += 8
            o += 8
        if i >= n:
            break
        c = data[i]
        if c >= 0x80:  # (only in the last few bytes of the chunk: the words above take the others)
            high = _HIGHS
            state = _utf8_step(state, np.uint64(c))
            out[o] = c
            o += 1
            i += 1
            continue
        if state != _UTF8_ACCEPT:  # an ASCII byte inside a UTF-8 sequence, or a bad byte before
            return -1, o, high
        if c == _QUOTE:
            return i + 1, o, high
        if c < 32:  # JSON wants control characters escaped; both pyarrow and Python's json refuse them raw
            return -1, o, high
        if c != _BACKSLASH:  # the last few bytes of the chunk
            out[o] = c
            o += 1
            i += 1
            continue
        if i + 1 >= n:
            return -1, o, high
        e = data[i + 1]
        if e == 117:  # \uXXXX, a surrogate pair as two of them
            cp = _hex4(data, i + 2, n)
            i += 6
            if cp < 0 or 0xDC00 <= cp <= 0xDFFF:  # bad hex, or a low surrogate first
                return -1, o, high
            if 0xD800 <= cp <= 0xDBFF:
                if i + 1 >= n or data[i] != _BACKSLASH or data[i + 1] != 117:
                    return -1, o, high
                low = _hex4(data, i + 2, n)
                if low < 0xDC00 or low > 0xDFFF:
                    return -1, o, high
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            o = _put_code_point(out, o, cp)
            continue
        unescaped = _UNESCAPED[e]  # a lookup, not a chain of tests: escapes are common (code, \n in prose)
        if unescaped == 0:
            return -1, o, high
        out[o] = unescaped
        o += 1
        i += 2
    return -1, o, high


@kernel(inline="always")
def _digits_end(data, i, n):
    while i < n and 48 <= data[i] <= 57:
        i += 1
    return i


@kernel(inline="always")
def _scan_number(data, i, n, out, o):
    """Check the JSON number at `i` and copy its text to out[o:]: (position after it, end in out, INT or FLOAT), or (-1, o, 0)."""
    start = i
    if data[i] == 45:  # -
        i += 1
    if i >= n:
        return -1, o, 0
    if data[i] == 48:  # a leading 0 stands alone; "01" fails at the caller, which wants , or } next
        i += 1
    elif 49 <= data[i] <= 57:
        i = _digits_end(data, i + 1, n)
    else:
        return -1, o, 0
    kind = INT
    if i < n and data[i] == 46:  # .
        end = _digits_end(data, i + 1, n)
        if end == i + 1:
            return -1, o, 0
        i, kind = end, FLOAT
    if i < n and (data[i] | 0x20) == 101:  # e E
        i += 1
        if i < n and (data[i] == 43 or data[i] == 45):
            i += 1
        end = _digits_end(data, i, n)
        if end == i or end - i > MAX_EXPONENT_DIGITS:
            return -1, o, 0
        i, kind = end, FLOAT
    if i - start > MAX_NUMBER_BYTES:
        return -1, o, 0
    for k in range(start, i):
        out[o] = data[k]
        o += 1
    return i, o, kind


@kernel(inline="always")
def _is_word(data, i, n, w0, w1, w2, w3, w4, length):
    """Whether data[i:i+length] spells the literal given by its first bytes (true, false, null)."""
    if i + length > n:
        return False
    if data[i] != w0 or data[i + 1] != w1 or data[i + 2] != w2 or data[i + 3] != w3:
        return False
    return length == 4 or data[i + 4] == w4


@kernel(inline="always")
def _same_bytes(buf, a0, a1, b0, b1):
    if a1 - a0 != b1 - b0:
        return False
    for k in range(a1 - a0):
        if buf[a0 + k] != buf[b0 + k]:
            return False
    return True


@kernel(inline="always")
def _same_name(names, start, end, name):
    """Whether names[start:end] spells `name` (never when `name` is empty)."""
    if name.shape[0] == 0 or end - start != name.shape[0]:
        return False
    for k in range(end - start):
        if names[start + k] != name[k]:
            return False
    return True


@kernel(inline="always")
def _find_column(names, name_ends, num_columns, key_start, key_end, guess):
    """The column named names[key_start:key_end], trying `guess` first (lines tend to repeat their keys' order), or -1."""
    if guess < num_columns:
        start = name_ends[guess - 1] if guess > 0 else 0
        if _same_bytes(names, start, name_ends[guess], key_start, key_end):
            return guess
    start = 0
    for c in range(num_columns):
        if _same_bytes(names, start, name_ends[c], key_start, key_end):
            return c
        start = name_ends[c]
    return -1


@kernel(inline="always")
def _scan_value(data, i, n, text, t):
    """The value at `i`, its text written at text[t:]: (position after it, end in text, kind, _HIGHS if it was not ASCII), or (-1, ...).

    Objects and arrays are refused like anything else that is not a flat value.
    """
    c = data[i]
    if c == _QUOTE:
        i, t, high = _scan_string(data, i + 1, n, text, t)
        return i, t, STRING, high
    if c == 45 or 48 <= c <= 57:
        i, t, kind = _scan_number(data, i, n, text, t)
        return i, t, kind, _ZERO
    if _is_word(data, i, n, 110, 117, 108, 108, 0, 4):
        return i + 4, t, NULL, _ZERO
    if _is_word(data, i, n, 116, 114, 117, 101, 0, 4):
        return i + 4, t, TRUE, _ZERO
    if _is_word(data, i, n, 102, 97, 108, 115, 101, 5):
        return i + 5, t, FALSE, _ZERO
    return -1, t, 0, _ZERO


@kernel
def scan_json_lines(data, text, names, name_ends, value_row, value_col, value_kind, value_end, counts, wide_name, wide):
    """Scan JSON Lines of flat objects; returns the number of records written, or REFUSED.

    data (n,) uint8: whole lines (text that is not UTF-8 is refused);
    wide_name (k,) uint8: the name of the column whose values go to `wide` instead of `text`, or empty.
    Written:
    text (n,) uint8: string values unescaped and numbers' text, one after another;
    wide (n,) uint8 (or empty when wide_name is): the same for the values of the column named wide_name;
    names (n,) uint8 and name_ends (MAX_COLUMNS,) int64: column c is named
        names[name_ends[c - 1]:name_ends[c]], columns in order of first appearance;
    value_row, value_col (max_values(n),) int32, value_kind uint8, value_end int64: one record per value,
        whose text ends at value_end in `wide` for the wide column, in `text` for the others;
    counts (7,) int64: rows, columns, newlines, bytes of text, 1 if any byte was not ASCII (else 0),
        the wide column (-1 when no column has its name), bytes of `wide`.
    """
    n = data.shape[0]
    last_row = np.full(MAX_COLUMNS, -1, np.int64)  # the row each column last had a value in: duplicate keys
    seen = _ZERO  # _HIGHS once a string held a byte that is not ASCII (they can stand nowhere else)
    t = 0  # bytes of text written
    w = 0  # bytes written to `wide`
    wide_col = -1
    num_columns = 0
    num_values = 0
    row = 0
    newlines = 0
    i = 0
    while i < n:
        i = _skip_space(data, i, n)
        if i >= n:
            break
        if data[i] == _NEWLINE:  # a blank line
            newlines += 1
            i += 1
            continue
        if data[i] != _OPEN:
            return REFUSED
        i = _skip_space(data, i + 1, n)
        if i >= n:
            return REFUSED
        if data[i] == _CLOSE:
            i += 1
        else:
            guess = 0
            while True:
                if i >= n or data[i] != _QUOTE:
                    return REFUSED
                key_start = name_ends[num_columns - 1] if num_columns > 0 else 0
                i, key_end, high = _scan_string(data, i + 1, n, names, key_start)
                seen |= high
                if i < 0:
                    return REFUSED
                col = _find_column(names, name_ends, num_columns, key_start, key_end, guess)
                if col < 0:
                    if num_columns == MAX_COLUMNS:
                        return REFUSED
                    col = num_columns
                    name_ends[col] = key_end
                    num_columns += 1
                    if wide_col < 0 and _same_name(names, key_start, key_end, wide_name):
                        wide_col = col
                if last_row[col] == row:
                    return REFUSED
                last_row[col] = row
                i = _skip_space(data, i, n)
                if i >= n or data[i] != _COLON:
                    return REFUSED
                i = _skip_space(data, i + 1, n)
                if i >= n:
                    return REFUSED
                to_wide = col == wide_col
                i, end, kind, high = _scan_value(data, i, n, wide if to_wide else text, w if to_wide else t)
                if to_wide:
                    w = end
                else:
                    t = end
                seen |= high
                if i < 0:
                    return REFUSED
                value_row[num_values] = row
                value_col[num_values] = col
                value_kind[num_values] = kind
                value_end[num_values] = end
                num_values += 1
                i = _skip_space(data, i, n)
                if i >= n:
                    return REFUSED
                if data[i] == _COMMA:
                    i = _skip_space(data, i + 1, n)
                    guess = col + 1
                elif data[i] == _CLOSE:
                    i += 1
                    break
                else:
                    return REFUSED
        i = _skip_space(data, i, n)
        if i < n:
            if data[i] != _NEWLINE:
                return REFUSED
            newlines += 1
            i += 1
        row += 1
    counts[0] = row
    counts[1] = num_columns
    counts[2] = newlines
    counts[3] = t
    counts[4] = (seen & _HIGHS) != _ZERO
    counts[5] = wide_col
    counts[6] = w
    return num_values


@kernel
def gather_spans(src, starts, ends, out, out_offsets):
    """out = src[starts[0]:ends[0]] + src[starts[1]:ends[1]] + ...; out_offsets (len(starts) + 1,) the Arrow offsets; returns bytes written."""
    o = 0
    out_offsets[0] = 0
    for k in range(starts.shape[0]):
        length = ends[k] - starts[k]
        copy_bytes(src, starts[k], out, o, length)
        o += length
        out_offsets[k + 1] = o
    return o
