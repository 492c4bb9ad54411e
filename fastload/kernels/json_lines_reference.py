"""The slow, readable twin of `json_lines.py`, for the tests: Python's `json` module parses each line.

It returns what the kernels write, as Python values, and refuses exactly
what `scan_json_lines` refuses, each rule spelled out once below.
"""

from __future__ import annotations

import json
import re

from fastload.kernels.json_lines import (
    FALSE,
    FLOAT,
    INT,
    MAX_COLUMNS,
    MAX_EXPONENT_DIGITS,
    MAX_NUMBER_BYTES,
    NULL,
    STRING,
    TRUE,
)

__all__ = ["Refused", "gather_spans_reference", "scan_json_lines_reference"]

_EXPONENT = re.compile(r"[eE][+-]?(\d+)$")


class Refused(Exception):
    """A line the scanner leaves to the general parser."""


class _Object(list):
    """A JSON object's (key, value) pairs, told apart from a JSON array (a plain list)."""


def _number(kind: int):
    def parse(text: str):
        exponent = _EXPONENT.search(text)
        if len(text) > MAX_NUMBER_BYTES or (exponent and len(exponent.group(1)) > MAX_EXPONENT_DIGITS):
            raise Refused(text)
        return kind, text

    return parse


def _refuse_constant(text: str):
    raise Refused(text)  # NaN, Infinity, -Infinity: Python's json takes them, JSON does not


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\u escape
        raise Refused(text) from None


def _pairs(line: str) -> list:
    try:
        value = json.loads(line, object_pairs_hook=_Object, parse_int=_number(INT), parse_float=_number(FLOAT), parse_constant=_refuse_constant)
    except ValueError:  # not JSON, including raw control characters in strings
        raise Refused(line) from None
    if not isinstance(value, _Object):
        raise Refused(line)
    return value


def _record(value) -> tuple[int, bytes]:
    """(kind, text) of one flat value."""
    if value is None:
        return NULL, b""
    if value is True or value is False:
        return (TRUE if value else FALSE), b""
    if isinstance(value, str):
        return STRING, _utf8(value)
    if isinstance(value, tuple):  # (INT or FLOAT, its text), from _number
        return value[0], value[1].encode()
    raise Refused(repr(value))  # an object or an array


def scan_json_lines_reference(data: bytes):
    """(records as (row, column, kind, text), column names as bytes, rows, newlines, any byte not ASCII), or None when refused."""
    try:
        data.decode("utf-8")  # strict: overlong forms, encoded surrogates and code points past U+10FFFF are refused
    except UnicodeDecodeError:
        return None
    records, names = [], []
    row = 0
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no line
    try:
        for line in lines:
            if not line.strip(b" \t\r"):
                continue  # a blank line
            seen = set()
            for key, value in _pairs(line.decode("utf-8")):
                name = _utf8(key)
                if name in seen:
                    raise Refused(key)  # duplicate keys
                seen.add(name)
                if name not in names:
                    if len(names) == MAX_COLUMNS:
                        raise Refused(key)
                    names.append(name)
                records.append((row, names.index(name), *_record(value)))
            row += 1
    except Refused:
        return None
    return records, names, row, data.count(b"\n"), any(byte >= 0x80 for byte in data)


def gather_spans_reference(src: bytes, starts, ends) -> tuple[bytes, list[int]]:
    """(the spans joined, their Arrow offsets)."""
    pieces = [src[s:e] for s, e in zip(starts, ends)]
    offsets = [0]
    for piece in pieces:
        offsets.append(offsets[-1] + len(piece))
    return b"".join(pieces), offsets
