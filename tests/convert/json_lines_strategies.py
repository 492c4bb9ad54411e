"""Hypothesis strategies for JSON Lines chunks: mostly the flat objects of real corpora, spelled every way JSON
allows, with hostile tokens mixed in (bad escapes, lone surrogates, huge numbers, nesting, broken syntax)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

KEYS = ["text", "id", "url", "meta", "", "é", "漢字", "😀", 'q"uote', "back\\slash", "tab\there"]

SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Number spellings whose fate differs between parsers: beyond int64, beyond 2**53, -0, overflowing
# and underflowing exponents, long exponents, and things JSON forbids.
HOSTILE_NUMBERS = [
    "-0", "0", "-0.0", "1e400", "-1e400", "1e-400", "0.0e400", "1E5", "1e05", "1.5e-07", "2.5E+3",
    "9007199254740993", "9007199254740992", "-9007199254740993", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890", "0.1", "1.7976931348623157e308",
    "4.9e-324", "01", "1.", ".5", "+1", "-", "1e", "1e+", "NaN", "Infinity", "-Infinity", "0x10",
]

HOSTILE_VALUES = ['"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"', '"\\ud83d\\ude00"', '"\\uD83D\\uDE00"', '"\\u00e9"', '"\\x41"',
                  '"a\tb"', '"a\x01b"', '"\\u00"', '"unterminated', "{}", '{"a": 1}', "[1, 2]", "[]", "nul", "truth", "True", "'single'"]


@st.composite
def json_string(draw, text: str | None = None) -> str:
    """`text` (or drawn text) as a JSON string literal, each character spelled raw or escaped at random."""
    if text is None:
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
    out = []
    for ch in text:
        spelling = draw(st.integers(0, 3))
        if ch in SHORT_ESCAPES and (spelling < 2 or ch in '"\\' or ord(ch) < 32):
            out.append(SHORT_ESCAPES[ch] if spelling else f"\\u{ord(ch):04x}")
        elif ord(ch) < 32 or spelling == 3:
            code = ord(ch)
            if code > 0xFFFF:  # a surrogate pair
                code -= 0x10000
                hi, lo = 0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)
                out.append(f"\\u{hi:04x}\\u{lo:04X}" if draw(st.booleans()) else f"\\u{hi:04X}\\u{lo:04x}")
            else:
                out.append(f"\\u{code:04x}" if draw(st.booleans()) else f"\\u{code:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _number(draw) -> str:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return str(draw(st.integers(-(2**70), 2**70)))
    if choice == 1:
        return str(draw(st.integers(-1000, 1000)))
    if choice == 2:
        return json.dumps(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if choice == 3:
        return f"{draw(st.floats(-1e6, 1e6)):.{draw(st.integers(0, 20))}e}"
    return draw(st.sampled_from(HOSTILE_NUMBERS))


@st.composite
def json_value(draw, *, hostile: bool) -> str:
    choice = draw(st.integers(0, 9 if hostile else 7))
    if choice <= 2:
        return draw(json_string())
    if choice <= 4:
        return _number(draw) if hostile else str(draw(st.integers(-(2**63), 2**63 - 1)))
    if choice == 5:
        return draw(st.sampled_from(["true", "false"]))
    if choice in (6, 7):
        return "null"
    return draw(st.sampled_from(HOSTILE_VALUES))


@st.composite
def json_line(draw, *, hostile: bool) -> str:
    """One line: an object of 0-5 fields with whitespace around every token, or (rarely) something else."""
    space = st.sampled_from(["", "", "", " ", "  ", "\t", "\r", " \r"]) if hostile else st.sampled_from(["", " "])
    if hostile and draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(["", "   ", "\r", "[1]", '"text"', "1", "null", "{", '{"a": 1}{"a": 2}', '{"a" 1}', '{"a": 1,}', "{,}"]))
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=5, unique=not hostile or draw(st.booleans())))
    fields = []
    for key in keys:
        value = draw(json_value(hostile=hostile))
        fields.append(f"{draw(space)}{draw(json_string(key))}{draw(space)}:{draw(space)}{value}{draw(space)}")
    return f"{draw(space)}{{{','.join(fields) or draw(space)}}}{draw(space)}"


@st.composite
def json_lines_chunk(draw, *, hostile: bool = True) -> bytes:
    """Whole lines of JSON, "\\n" or "\\r\\n" ended, the last one maybe without its newline; sometimes a byte that is not UTF-8."""
    lines = draw(st.lists(json_line(hostile=hostile), min_size=1, max_size=8))
    ending = "\r\n" if draw(st.integers(0, 4)) == 0 else "\n"
    text = ending.join(lines) + (ending if draw(st.booleans()) else "")
    data = text.encode("utf-8", "surrogatepass")
    if hostile and draw(st.integers(0, 15)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])) + data[at:]
    return data
