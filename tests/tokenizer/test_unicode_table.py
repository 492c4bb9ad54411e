"""The shipped code-point class table agrees with both reference regex engines
on every code point (the table is what makes our pre-tokenizer match them)."""

from __future__ import annotations

import importlib.util
import unicodedata

import numpy as np
import pytest

from fastload.tokenizer.kernels import unicode_table
from fastload.tokenizer.kernels.unicode_table import LETTER, LOWERISH, NUMBER, SPACE, UPPERISH, load_unicode_table

BUILD_SCRIPT = unicode_table.TABLE_PATH.with_name("build_unicode_table.py")


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_unicode_table", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def every_code_point(build):
    return build.all_scalar_values()


@pytest.mark.parametrize("bit", [LETTER, NUMBER, SPACE, UPPERISH, LOWERISH])
def test_every_code_point_class_matches_tiktoken_and_hf_tokenizers(build, every_code_point, bit):
    table = load_unicode_table()
    body = build.CLASSES[bit]
    ours = {chr(c) for c in np.flatnonzero(table & bit)}
    assert ours == build.members_tiktoken(body, every_code_point), f"[{body}] differs from tiktoken"
    assert ours == build.members_hf(body, every_code_point), f"[{body}] differs from HF tokenizers"


def test_table_covers_all_code_points_and_surrogates_have_no_class():
    table = load_unicode_table()
    assert table.shape == (0x110000,)
    assert not table[0xD800:0xE000].any()
    assert table[ord("a")] == LETTER | LOWERISH
    assert table[ord("A")] == LETTER | UPPERISH
    assert table[ord(" ")] == SPACE and table[ord("7")] == NUMBER


def test_table_differs_from_python_unicodedata_where_the_engines_do():
    # The reason the table is generated from the engines: Python's own
    # database is an older Unicode version, so at least one letter differs.
    if tuple(map(int, unicodedata.unidata_version.split("."))) >= (15, 1):
        pytest.skip("this Python's Unicode database may already match the engines")
    table = load_unicode_table()
    python_letters = {c for c in range(0x110000) if not 0xD800 <= c < 0xE000
                      and unicodedata.category(chr(c)).startswith("L")}
    engine_letters = set(np.flatnonzero(table & LETTER).tolist())
    assert python_letters != engine_letters
