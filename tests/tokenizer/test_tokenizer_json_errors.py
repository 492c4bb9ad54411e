"""Hostile and contradictory `tokenizer.json` files: each is a `TokenizerError`
naming the file, the JSON path of the problem and what was expected — never
a raw KeyError, TypeError or AttributeError — checked on mutated copies of
the shipped file, on files that are not a tokenizer.json at all, and by
fuzzing the shipped file's tree."""

from __future__ import annotations

import functools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.errors import FastloadError, TokenizerError
from fastload.tokenizer import DEFAULT_TOKENIZER_PATH, Tokenizer
from fastload.tokenizer.vocab import bytes_to_unicode


@functools.lru_cache(maxsize=1)
def shipped_text() -> str:
    return DEFAULT_TOKENIZER_PATH.read_text(encoding="utf-8")


def shipped() -> dict:
    """A fresh, freely editable parse of the shipped tokenizer.json."""
    return json.loads(shipped_text())


VOCAB = shipped()["model"]["vocab"]
THE = VOCAB["the"]  # an ordinary token and its id
BYTE_E2 = VOCAB[bytes_to_unicode()[0xE2]]  # a lead byte: alone, it decodes to "\ufffd"
NEXT_ID = len(VOCAB)  # the first id no token has
assert "qj" not in VOCAB and "zzqq" not in VOCAB and max(VOCAB.values()) < NEXT_ID


def added(content: str, token_id: int, special: bool = True) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def write(tmp_path, spec) -> str:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def setter(*keys_and_value):
    *keys, value = keys_and_value

    def edit(spec):
        node = spec
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


def deleter(*keys):
    def edit(spec):
        node = spec
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return edit


def extra_added(*tokens):
    return lambda spec: spec["added_tokens"].extend(tokens)


def drop_byte_token(spec):
    del spec["model"]["vocab"]["!"]
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if "!" not in m]


PRE = ("pre_tokenizer",)
SPLIT = ("pre_tokenizer", "pretokenizers", 0)
LEVEL = ("pre_tokenizer", "pretokenizers", 1)
ID_RANGE = "expected an integer id in 0..16,777,215"
PAIR = 'expected a pair of tokens: "left right" (one space between) or ["left", "right"]'

# (name, edit of the parsed file — it may return a whole new document —, fragment the message must hold)
MUTATIONS = [
    # the document and the model
    ("top level is an array", lambda s: [s], "at the top level: expected a JSON object"),
    ("top level is a string", lambda s: "tokenizer", "at the top level: expected a JSON object"),
    ("model missing", deleter("model"), "at model: expected an object (the tokenization model), found nothing"),
    ("model is an array", setter("model", []), "at model: expected an object (the tokenization model), found an array"),
    ("model is WordPiece", setter("model", "type", "WordPiece"),
     'at model.type: unsupported model type "WordPiece"; fastload supports "BPE"'),
    ("model type missing", deleter("model", "type"), 'at model.type: expected "BPE", found nothing'),
    ("dropout", setter("model", "dropout", 0.1), "at model.dropout: unsupported BPE dropout 0.1; fastload supports"),
    ("dropout is a string", setter("model", "dropout", "0.1"), 'at model.dropout: expected null or a number, found a string "0.1"'),
    ("byte_fallback", setter("model", "byte_fallback", True), "at model.byte_fallback: unsupported byte_fallback"),
    ("continuing_subword_prefix", setter("model", "continuing_subword_prefix", "##"),
     'at model.continuing_subword_prefix: unsupported continuing_subword_prefix "##"'),
    ("end_of_word_suffix is a number", setter("model", "end_of_word_suffix", 5),
     "at model.end_of_word_suffix: expected null or a string, found an integer 5"),
    ("ignore_merges is a string", setter("model", "ignore_merges", "yes"),
     'at model.ignore_merges: expected true or false, found a string "yes"'),
    ("normalizer", setter("normalizer", {"type": "NFC"}), 'at normalizer: unsupported normalizer "NFC"; fastload supports no normalizer'),
    ("normalizer is a string", setter("normalizer", "NFC"), 'at normalizer: unsupported normalizer "NFC"'),
    # the vocabulary
    ("vocab is an array", setter("model", "vocab", ["a", "b"]),
     'at model.vocab: expected an object mapping each token to its id, found an array ["a", "b"]'),
    ("vocab missing", deleter("model", "vocab"), "at model.vocab: expected an object mapping each token to its id, found nothing"),
    ("token id is a string", setter("model", "vocab", "the", str(THE)), f'at model.vocab["the"]: {ID_RANGE}, found a string "{THE}"'),
    ("token id is negative", setter("model", "vocab", "the", -1), f'at model.vocab["the"]: {ID_RANGE}, found an integer -1'),
    ("token id is a float", setter("model", "vocab", "the", float(THE)), f'at model.vocab["the"]: {ID_RANGE}, found a number'),
    ("token id is true", setter("model", "vocab", "the", True), f'at model.vocab["the"]: {ID_RANGE}, found a boolean true'),
    ("token id is null", setter("model", "vocab", "the", None), f'at model.vocab["the"]: {ID_RANGE}, found null'),
    ("token id is absurd", setter("model", "vocab", "the", 2**40), f'at model.vocab["the"]: {ID_RANGE}, found an integer {2**40}'),
    ("one id for two tokens", setter("model", "vocab", "zzqq", THE),
     f'at model.vocab["zzqq"]: id {THE} is given to both "the" and "zzqq"'),
    ("token is not byte-level", setter("model", "vocab", "a b", NEXT_ID), 'at model.vocab["a b"]: token "a b"'),
    ("a single byte has no token", drop_byte_token, "at model.vocab: the vocabulary has no token for 1 of the 256 single bytes"),
    # the merges
    ("merges missing", deleter("model", "merges"), "at model.merges: expected an array of merges, found nothing"),
    ("merges is an object", setter("model", "merges", {}), "at model.merges: expected an array of merges, found an object {}"),
    ("merge is a number", setter("model", "merges", 12, 12), f"at model.merges[12]: {PAIR}, found an integer 12"),
    ("merge of three", setter("model", "merges", 12, ["a", "t", "e"]), f'at model.merges[12]: {PAIR}, found an array ["a", "t", "e"]'),
    ("merge without a space", setter("model", "merges", 12, "at"), f'at model.merges[12]: {PAIR}, found a string "at"'),
    ("merge with two spaces", setter("model", "merges", 12, "a t e"), f'at model.merges[12]: {PAIR}, found a string "a t e"'),
    ("merge of ids", setter("model", "merges", 12, [1, 2]), f"at model.merges[12]: {PAIR}, found an array [1, 2]"),
    ("merge of an unknown token", setter("model", "merges", 12, ["zzq", "qqz"]),
     'at model.merges[12]: merge ["zzq", "qqz"] needs "zzq", which is not a byte-level token of model.vocab'),
    ("merge into an unknown token", setter("model", "merges", 12, "q j"),
     'at model.merges[12]: merge "q j" needs "qj", which is not a byte-level token of model.vocab'),
    # the added tokens' layout
    ("added_tokens is an object", setter("added_tokens", {}), "at added_tokens: expected an array of added-token objects"),
    ("added token is a string", setter("added_tokens", 0, "<|endoftext|>"),
     'at added_tokens[0]: expected an object with "id" and "content", found a string'),
    ("added token without id", deleter("added_tokens", 0, "id"), f"at added_tokens[0].id: {ID_RANGE}, found nothing"),
    ("added token id is a string", setter("added_tokens", 0, "id", "0"), f'at added_tokens[0].id: {ID_RANGE}, found a string "0"'),
    ("added token id is negative", setter("added_tokens", 0, "id", -3), f"at added_tokens[0].id: {ID_RANGE}, found an integer -3"),
    ("added token id is absurd", setter("added_tokens", 0, "id", 2**40), f"at added_tokens[0].id: {ID_RANGE}, found an integer"),
    ("added token without content", deleter("added_tokens", 0, "content"),
     "at added_tokens[0].content: expected a non-empty string of valid Unicode, found nothing"),
    ("added token content is a number", setter("added_tokens", 0, "content", 7),
     "at added_tokens[0].content: expected a non-empty string of valid Unicode, found an integer 7"),
    ("added token content is empty", setter("added_tokens", 0, "content", ""),
     'at added_tokens[0].content: expected a non-empty string of valid Unicode, found a string ""'),
    ("added token content is a lone surrogate", setter("added_tokens", 0, "content", "\ud800"),
     'at added_tokens[0].content: expected a non-empty string of valid Unicode, found a string "\\ud800"'),
    ("added token special is a string", setter("added_tokens", 0, "special", "yes"),
     'at added_tokens[0].special: expected true or false, found a string "yes"'),
    # added tokens that contradict the vocabulary or each other (both tokens and the id are named)
    ("added token takes an ordinary token's id", extra_added(added("<|x|>", THE)),
     f'at added_tokens[1].id: added token "<|x|>" has id {THE}, which model.vocab gives to "the" (the bytes b\'the\')'),
    ("added token takes a single byte's id", extra_added(added("<|x|>", BYTE_E2)),
     f'at added_tokens[1].id: added token "<|x|>" has id {BYTE_E2}, which model.vocab gives to "â" (the bytes b\'\\xe2\')'),
    ("added token repeats a vocabulary token under another id", extra_added(added("the", NEXT_ID, special=False)),
     f'at added_tokens[1].id: added token "the" has id {NEXT_ID}, but model.vocab gives "the" id {THE}'),
    ("two added tokens with one id", extra_added(added("<|a|>", NEXT_ID), added("<|b|>", NEXT_ID)),
     f'at added_tokens[2].id: added tokens "<|a|>" (added_tokens[1]) and "<|b|>" both have id {NEXT_ID}'),
    ("one added token with two ids", extra_added(added("<|endoftext|>", NEXT_ID)),
     f'at added_tokens[1].id: "<|endoftext|>" is listed twice, with id 0 at added_tokens[0] and id {NEXT_ID} here'),
    # the pre-tokenizer
    ("pre_tokenizer missing", deleter(*PRE), "at pre_tokenizer: expected a ByteLevel pre-tokenizer"),
    ("pre_tokenizer null", setter(*PRE, None), "at pre_tokenizer: unsupported pre_tokenizer null; fastload supports"),
    ("pre_tokenizer is an array", setter(*PRE, []), "at pre_tokenizer: unsupported pre_tokenizer []"),
    ("pre_tokenizer Whitespace", setter(*PRE, {"type": "Whitespace"}),
     'at pre_tokenizer.type: unsupported pre_tokenizer type "Whitespace"; fastload supports'),
    ("ByteLevel with add_prefix_space", setter(*PRE, {"type": "ByteLevel", "add_prefix_space": True}),
     "at pre_tokenizer.add_prefix_space: unsupported ByteLevel add_prefix_space true"),
    ("ByteLevel use_regex is a string", setter(*PRE, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": "yes"}),
     'at pre_tokenizer.use_regex: expected true or false, found a string "yes"'),
    ("pretokenizers is an object", setter(*PRE, "pretokenizers", {}),
     "at pre_tokenizer.pretokenizers: expected an array of pre-tokenizers, found an object {}"),
    ("pretokenizers holds a string", setter(*SPLIT, "Split"),
     'at pre_tokenizer.pretokenizers[0]: expected a pre-tokenizer object, found a string "Split"'),
    ("pretokenizers reversed", lambda s: s["pre_tokenizer"]["pretokenizers"].reverse(),
     'at pre_tokenizer.pretokenizers: unsupported pre_tokenizer sequence ["ByteLevel", "Split"]'),
    ("Split on a string", setter(*SPLIT, "pattern", {"String": " "}),
     'at pre_tokenizer.pretokenizers[0].pattern: unsupported Split pattern {"String": " "}'),
    ("Split pattern is a string", setter(*SPLIT, "pattern", r"\s+"), "at pre_tokenizer.pretokenizers[0].pattern: unsupported Split pattern"),
    ("Split regex is a number", setter(*SPLIT, "pattern", "Regex", 5),
     "at pre_tokenizer.pretokenizers[0].pattern.Regex: expected a string, found an integer 5"),
    ("Split regex is unknown", setter(*SPLIT, "pattern", "Regex", r"\w+|\s+"),
     "at pre_tokenizer.pretokenizers[0].pattern.Regex: the Split pre-tokenizer's regex"),
    ("Split removes matches", setter(*SPLIT, "behavior", "Removed"),
     'at pre_tokenizer.pretokenizers[0].behavior: unsupported Split behavior "Removed"'),
    ("Split inverted", setter(*SPLIT, "invert", True), "at pre_tokenizer.pretokenizers[0].invert: unsupported Split invert"),
    ("Split invert is a number", setter(*SPLIT, "invert", 0),
     "at pre_tokenizer.pretokenizers[0].invert: expected true or false, found an integer 0"),
    ("ByteLevel after Split uses its regex", setter(*LEVEL, "use_regex", True),
     "at pre_tokenizer.pretokenizers[1].use_regex: unsupported ByteLevel use_regex after Split"),
]


@pytest.mark.parametrize("edit,fragment", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_malformed_tokenizer_json_raises_naming_the_file_the_json_path_and_what_was_expected(tmp_path, edit, fragment):
    spec = shipped()
    replaced = edit(spec)
    path = write(tmp_path, spec if replaced is None else replaced)
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_file(path)
    message = str(info.value)
    assert message.startswith(f"tokenizer file {str(path)!r}")
    assert fragment in message


def _deeply_nested(depth: int) -> bytes:
    return b'{"model": ' + b"[" * depth + b"]" * depth + b"}"


# (name, the file's bytes, fragment the message must hold)
NOT_A_TOKENIZER_JSON = [
    ("empty file", b"", "is not valid JSON: Expecting value: line 1 column 1"),
    ("plain text", b"hello, I am not JSON", "at the top level: expected a JSON object"),
    ("random bytes", bytes(range(256)) * 64, "at the top level: expected a JSON object"),
    ("huge nonsense", b"nonsense " * 2_000_000, "at the top level: expected a JSON object"),
    ("huge nonsense in braces", b"{" + b"nonsense " * 2_000_000 + b"}", "is not valid JSON: Expecting property name"),
    ("truncated", shipped_text().encode()[:100_000], "is not valid JSON"),
    ("not UTF-8", b'{"model": "\xe9"}', "is not UTF-8 text"),
    ("nested past the stack", _deeply_nested(200_000), "is JSON nested too deeply to parse"),
    ("a number with 5,000 digits", b'{"model": ' + b"9" * 5000 + b"}", "cannot be parsed as JSON (Exceeds the limit"),
]


@pytest.mark.parametrize("content,fragment", [c[1:] for c in NOT_A_TOKENIZER_JSON], ids=[c[0] for c in NOT_A_TOKENIZER_JSON])
def test_a_file_that_is_not_a_tokenizer_json_raises_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_a_folder_or_a_fifo_in_place_of_the_file_raises_instead_of_hanging(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.json")
    for path in (tmp_path, tmp_path / "fifo.json"):
        with pytest.raises(TokenizerError, match="is not a regular file"):
            Tokenizer.from_file(path)


# ---- added tokens: what Hugging Face tokenizers does, and what fastload does instead --------------


def test_an_added_token_on_an_ordinary_tokens_id_is_refused_where_hf_would_move_it(tmp_path):
    from tokenizers import Tokenizer as HF

    spec = shipped()
    spec["added_tokens"].append(added("<|x|>", THE))
    path = write(tmp_path, spec)
    hf = HF.from_file(str(path))  # HF ignores the file's id: "<|x|>" gets a new one, THE stays "the"
    assert hf.token_to_id("<|x|>") == NEXT_ID and hf.id_to_token(THE) == "the"
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_file(path)
    assert f'"<|x|>" has id {THE}, which model.vocab gives to "the"' in str(info.value)
    assert f"e.g. {NEXT_ID}" in str(info.value)  # says what to do: an id no token has


def test_an_added_token_repeating_a_vocabulary_token_under_another_id_is_refused(tmp_path):
    from tokenizers import Tokenizer as HF

    spec = shipped()
    spec["added_tokens"].append(added("the", NEXT_ID, special=False))
    path = write(tmp_path, spec)
    hf = HF.from_file(str(path))  # HF keeps the vocabulary's id; the file's id is left without a token
    assert hf.token_to_id("the") == THE and hf.id_to_token(NEXT_ID) is None
    with pytest.raises(TokenizerError, match=f"Hugging Face tokenizers uses {THE} and leaves {NEXT_ID} unused"):
        Tokenizer.from_file(path)


def test_two_added_tokens_with_one_id_are_refused_where_hf_would_renumber_the_second(tmp_path):
    from tokenizers import Tokenizer as HF

    spec = shipped()
    spec["added_tokens"] += [added("<|a|>", NEXT_ID), added("<|b|>", NEXT_ID)]
    path = write(tmp_path, spec)
    hf = HF.from_file(str(path))
    assert (hf.token_to_id("<|a|>"), hf.token_to_id("<|b|>")) == (NEXT_ID, NEXT_ID + 1)
    with pytest.raises(TokenizerError, match=f'"<\\|a\\|>" \\(added_tokens\\[1\\]\\) and "<\\|b\\|>" both have id {NEXT_ID}'):
        Tokenizer.from_file(path)


def test_added_tokens_that_agree_with_the_vocabulary_load_as_hf_reads_them(tmp_path):
    from tokenizers import Tokenizer as HF

    spec = shipped()
    spec["added_tokens"] += [
        added("the", THE, special=False),  # a vocabulary token, same id (GPT-2 lists <|endoftext|> so)
        dict(spec["added_tokens"][0]),  # the same entry twice
        added("<|a|>", NEXT_ID),  # new tokens numbered on from the vocabulary
        added("<|b|>", NEXT_ID + 1),
    ]
    path = write(tmp_path, spec)
    tok, hf = Tokenizer.from_file(path), HF.from_file(str(path))
    text = "the <|a|>the<|b|> <|endoftext|>"
    assert tok.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids
    assert tok.special_tokens == {"<|endoftext|>": 0, "the": THE, "<|a|>": NEXT_ID, "<|b|>": NEXT_ID + 1}
    assert tok.decode([THE, NEXT_ID]) == "the<|a|>"


def test_an_added_token_spelled_as_text_in_the_vocabulary_loads_with_its_id(tmp_path):
    from tokenizers import Tokenizer as HF

    bos = "<｜begin▁of▁sentence｜>"  # DeepSeek's: not byte-level, listed in model.vocab and added_tokens
    spec = shipped()
    spec["model"]["vocab"][bos] = NEXT_ID
    spec["added_tokens"].append(added(bos, NEXT_ID))
    path = write(tmp_path, spec)
    tok, hf = Tokenizer.from_file(path), HF.from_file(str(path))
    text = f"{bos}the end"
    assert tok.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids
    assert tok.encode(text, allowed_special="all")[0] == NEXT_ID and tok.decode([NEXT_ID]) == bos


def test_an_added_token_after_a_gap_keeps_the_files_id(tmp_path):
    # HF numbers it NEXT_ID (and logs a warning); the file, like a converted OpenAI
    # vocabulary, means the id it gives. See the docstring of fastload/tokenizer/hf_json.py.
    spec = shipped()
    spec["added_tokens"].append(added("<|gap|>", NEXT_ID + 10))
    tok = Tokenizer.from_file(write(tmp_path, spec))
    assert tok.encode("<|gap|>", allowed_special="all") == [NEXT_ID + 10]
    assert tok.vocab_size == NEXT_ID + 11 and tok.decode([NEXT_ID + 10]) == "<|gap|>"


def test_merges_written_as_strings_load_the_same_vocabulary(tmp_path):
    spec = shipped()
    spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]  # the pre-0.20 layout
    assert Tokenizer.from_file(write(tmp_path, spec)).fingerprint == Tokenizer.default().fingerprint


# ---- fuzzing the tree ---------------------------------------------------------------------------

# Values a node is replaced with: every JSON type, edge numbers, and strings the reader looks for.
REPLACEMENTS = st.sampled_from([
    None, True, False, 0, -1, 1, 2**31, 2**64, 1.5, "", "x", "Ġ", "a b", "BPE", "ByteLevel", "Sequence",
    "\ud800", [], [1, 2], ["a", "b"], ["a", "b", "c"], {}, {"type": "BPE"}, {"type": "ByteLevel"},
    {"Regex": "x"}, {"id": 3, "content": "x"},
])


def _children(node) -> list:
    return list(node) if type(node) is dict else list(range(len(node)))


def _draw_path(data, tree) -> list:
    """A random node: from the root, go down to a random child while a coin says so."""
    path, node = [], tree
    while type(node) in (dict, list) and node and data.draw(st.integers(0, 3), label="go deeper") > 0:
        keys = _children(node)
        key = keys[data.draw(st.integers(0, len(keys) - 1), label="child")]
        path.append(key)
        node = node[key]
    return path


def _changed(tree, path: list, change):
    """`tree` with `change(parent, key)` applied at `path`; containers on the path are copied, the rest shared."""
    copy = dict(tree) if type(tree) is dict else list(tree)
    if len(path) == 1:
        change(copy, path[0])
    else:
        copy[path[0]] = _changed(tree[path[0]], path[1:], change)
    return copy


def _mutate(data, tree):
    path = _draw_path(data, tree)
    action = data.draw(st.sampled_from(["delete", "replace", "wrap", "stringify"]), label="action")
    if not path:  # the root
        return data.draw(REPLACEMENTS) if action in ("delete", "replace") else [tree]
    if action == "delete":
        def change(parent, key):
            del parent[key]
    else:
        new = data.draw(REPLACEMENTS) if action == "replace" else None

        def change(parent, key):
            old = parent[key]
            parent[key] = new if action == "replace" else [old] if action == "wrap" else str(old)[:50]
    return _changed(tree, path, change)


@functools.lru_cache(maxsize=1)
def _shipped_tree() -> dict:
    return shipped()  # shared by every example; _mutate copies only what it changes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_randomly_damaged_tokenizer_json_loads_or_raises_a_fastload_error(tmp_path, data):
    tree = _shipped_tree()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        tree = _mutate(data, tree)
    path = write(tmp_path, tree)
    try:
        tok = Tokenizer.from_file(path)
    except FastloadError as exc:  # any other exception fails the test
        assert isinstance(exc, TokenizerError) and str(path) in str(exc)
        return
    text = "Hello world, 1234 <|endoftext|> ünïcode"
    assert tok.decode(tok.encode(text)) == text  # a file that loads also encodes
