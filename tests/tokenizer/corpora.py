"""Named test corpora for tokenizer parity: the cases where byte-level BPE
implementations are known to disagree, plus ordinary text and code."""

from __future__ import annotations

import inspect
import json
import textwrap

PROSE = [
    "The quick brown fox jumps over the lazy dog. It's 5 o'clock somewhere, isn't it?",
    "Hello there       dear",
    "In 1969, Neil Armstrong said: \"That's one small step for [a] man, one giant leap for mankind.\"",
    "We'll see; they've gone, I'd say you're right — she's here & he'd've known.",
    "Ünïcödé façade naïve café — “quoted” ‘text’ … ellipsis",
]
CODE = [
    textwrap.dedent(inspect.getsource(json.dumps)),
    textwrap.dedent(inspect.getsource(textwrap.dedent)),
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"a": [1, 2, 3], "b": {"c": null, "d": "e/f\\\\g"}, "url": "https://example.com/x?y=1&z=2"}',
    "x=1;y=x**2//3 if x!=0 else-1 # comment\r\n\r\n    pass\n",
]
WHITESPACE = [
    "a  b", "a   b", "  leading", "trailing  ", "trailing\n", "trailing \n ", "x\n  ", "\n\n\nword",
    "tab\tseparated\t\tvalues", "\tfoo", "windows\r\nline\r\n\r\nendings\r\n", "many          spaces before",
    " \n \n word", "\u00a0nbsp\u00a0\u00a0x", "\u3000ideographic\u3000space", "\u2028line\u2029para",
    "\x0bvertical\x0ctabs", "\x1c\x1d\x1e\x1f separators", "\x85next line", " ", "", "\n", "\r", "\r\n",
    "a \r\n b", "end with spaces and newline  \n  ",
]
CONTRACTIONS = [
    "it's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "they've", "THEY'VE", "I'm", "I'M",
    "you'll", "YOU'LL", "he'd", "HE'D", "'s'S't'T're'RE'Re'rE've'VE'm'M'll'LL'lL'd'D",
    "'ſ long s", "x'ſx", "O'Neill's", "rock'n'roll", "''s", "' s", "'", "'123", "Ma'am's",
]
DIGITS = [
    "20260509073455", "1234567890" * 10, "3.14159265358979", "1,000,000", "٣٤٥٦٧ Arabic-Indic",
    "١٢٣٤ ۱۲۳۴ ೧೨೩", "²³¹ superscripts ½ ⅓ Ⅻ", "x1 y22 z333 w4444", "0x1F600 1e-10",
]
EMOJI = [
    "😀 grinning", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "👍🏽 thumbs", "❤️‍🔥", "🇫🇷🇩🇪 flags",
    "a😀b", "emoji😀😀😀run", "\u200d zwj alone", "keycap 1️⃣",
]
CJK = [
    "中文文本没有空格分隔词语。", "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다.",
    "混合English和中文123個", "中" * 500, "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
]
RTL = [
    "مرحبا بالعالم! هذا نص عربي.", "שלום עולם, זה טקסט בעברית.", "العربية 123 English עברית",
    "\u200fRTL mark\u200e", "فارسی: سلام دنیا",
]
COMBINING = [
    "e\u0301 cafe\u0301", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0300\u0301lgo",
    "\u0301 leading mark", "a\u0308\u0304", "नमस्ते दुनिया", "ภาษาไทย", "ǅungla ǈ title case", "ʰmodifier ˢ",
    "ΣΊΣΥΦΟΣ σοφός", "Ǆ Ǉ Ǌ DŽ", "İstanbul ı", "ß ẞ", "ﬁ ligature",
]
CONTROL = [
    "\x00null\x00", "\x01\x02\x03\x04\x07\x08", "bell\x07ring", "\x7fdel\x80\x9f", "esc\x1b[0m",
    "\ufeffBOM", "\ufffd replacement", "\U0010ffff max", "\ue000 private",
]
SPECIAL_INSIDE = [
    "hello<|endoftext|>world", "<|endoftext|>", "<|endoftext|><|endoftext|>", "a <|endoftext|> b",
    "<|endoftext|", "<|fim_prefix|>x<|fim_middle|>", "text <|endoftext|>\n\nnext",
]

CORPORA = {
    "prose": PROSE,
    "code": CODE,
    "whitespace": WHITESPACE,
    "contractions": CONTRACTIONS,
    "digits": DIGITS,
    "emoji": EMOJI,
    "cjk": CJK,
    "rtl": RTL,
    "combining": COMBINING,
    "control": CONTROL,
    "special_inside": SPECIAL_INSIDE,
}
ALL_TEXTS = [text for texts in CORPORA.values() for text in texts]


def training_texts() -> list[str]:
    """Text to train the small test vocabularies on: the corpora plus stdlib code."""
    import collections
    import difflib
    import pathlib

    sources = [inspect.getsource(m) for m in (collections, difflib, pathlib, json.decoder, inspect)]
    return ALL_TEXTS * 20 + sources
