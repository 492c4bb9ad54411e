"""Reading a Hugging Face `tokenizer.json` into a `Vocab`, checked node by node.

What lives here: `read_hf_json` and the checks behind it. What does not: the
`Vocab` arrays and the other readers (`vocab.py`), the pattern registry
(`patterns.py`), the kernels.

Every problem is a `TokenizerError` that names the file, the JSON path of
the node at fault (`model.merges[12]`, `added_tokens[3].id`), what was
found and what was expected — malformed input (a merge that is not a pair,
an id that is not an integer, text that is not JSON) and well-formed input
fastload does not implement (a normalizer, a WordPiece model) alike.
Trade-off: the checks run inside the loops that read the vocabulary and the
merges (one type test per entry) rather than as a schema pass of their own
over the tree, so a file that loads costs no second walk.

Added tokens. Hugging Face tokenizers does not take an added token's id
from the file: a token whose text is in `model.vocab` gets that entry's id,
the others are numbered on from the vocabulary's size, and a file that said
otherwise is loaded with a logged warning (`serialization.rs`,
`added_vocabulary.rs` in huggingface/tokenizers). Where that renumbering
hides a contradiction in the file, fastload refuses the file, naming both
tokens and the id:

* an added token whose id is a different `model.vocab` token's id (HF moves
  the added token to a new id);
* an added token whose text is in `model.vocab` under another id (HF uses
  the vocabulary's id and leaves the file's unused);
* two added tokens with one id (HF moves the second), or one text listed
  twice with two ids (HF keeps the first).

An added token that collides with nothing keeps the id the file gives it,
also where HF would number it differently: ids that leave a gap after the
vocabulary, as OpenAI's do (o200k has 199,998 ranks, `<|endoftext|>` is
199999 and `<|endofprompt|>` 200018). Those ids are what the file and the
model it came from mean.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import stat
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from fastload.errors import TokenizerError
from fastload.tokenizer import patterns
from fastload.tokenizer.patterns import Pattern
from fastload.tokenizer.vocab import MAX_TOKEN_ID, Vocab, bytes_to_unicode, pack_tokens, single_byte_ids

__all__ = ["read_hf_json"]

_CHAR_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}
_MISSING = object()  # a key that is absent, told apart from a key whose value is null
_REQUIRED = object()
_ID = f"an integer id in 0..{MAX_TOKEN_ID:,}"
_MERGE = 'a pair of tokens: "left right" (one space between) or ["left", "right"]'
_BYTELEVEL = (
    "a ByteLevel pre-tokenizer (add_prefix_space=false, use_regex=true), or a Sequence of a Split "
    "(Isolated, invert=false, with a GPT-2/cl100k/o200k regex) and a ByteLevel (add_prefix_space=false, "
    "use_regex=false)"
)
_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


@dataclass(frozen=True)
class _Added:
    index: int  # position in added_tokens
    content: str
    token_id: int
    special: bool
    stripping: bool  # lstrip, rstrip or single_word


# ---- messages ---------------------------------------------------------------------


def _preview(value, depth: int = 0) -> str:
    """JSON text of `value`, with long strings and large or deep containers cut short."""
    if type(value) is dict:
        if depth == 2:
            return "{...}"
        shown = [f"{_preview(k)}: {_preview(v, depth + 1)}" for k, v in itertools.islice(value.items(), 4)]
    elif type(value) is list:
        if depth == 2:
            return "[...]"
        shown = [_preview(v, depth + 1) for v in value[:4]]
    elif type(value) is str and len(value) > 60:
        return json.dumps(value[:60] + "...", ensure_ascii=False)
    else:
        return json.dumps(value, ensure_ascii=False)
    if len(value) > 4:
        shown.append(f"... {len(value):,} in all")
    return ("{%s}" if type(value) is dict else "[%s]") % ", ".join(shown)


def _text(value, limit: int = 80) -> str:
    """`value` as (shortened) JSON; lone surrogates escaped so that the message can be printed."""
    text = _preview(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value) -> str:
    if value is _MISSING:
        return "nothing (the key is missing)"
    if value is None:
        return "null"
    return f"{_KINDS.get(type(value), type(value).__name__)} {_text(value)}"


def _key(text: str) -> str:
    return _text(text, limit=40)


def _fail(where: str, path: str, message: str) -> NoReturn:
    raise TokenizerError(f"{where}, at {path}: {message}")


def _expect(where: str, path: str, expected: str, found) -> NoReturn:
    _fail(where, path, f"expected {expected}, found {_describe(found)}")


def _unsupported(where: str, path: str, found, *, part: str, supported: str) -> NoReturn:
    if found is _MISSING:
        _expect(where, path, supported, found)
    _fail(where, path, f"unsupported {part} {_text(found)}; fastload supports {supported}. Convert the "
                       "tokenizer, or tokenize with Hugging Face tokenizers before 'fastload convert'.")


# ---- fields -----------------------------------------------------------------------


def _field(node: dict, key: str, *, at: str, where: str, expected: str, ok, default=_REQUIRED):
    """`node[key]` if `ok(node[key])`, else a TokenizerError at `at.key`; `default` if the key is missing."""
    value = node.get(key, _MISSING)
    if value is _MISSING and default is not _REQUIRED:
        return default
    if value is _MISSING or not ok(value):
        _expect(where, f"{at}.{key}" if at else key, expected, value)
    return value


def _flag(node: dict, key: str, *, at: str, where: str, default: bool) -> bool:
    return _field(node, key, at=at, where=where, expected="true or false", ok=lambda v: type(v) is bool,
                  default=default)


def _is_id(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKEN_ID


def _is_text(value) -> bool:
    if type(value) is not str or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, written as "\ud800" in the JSON
        return False
    return True


# ---- the file, its options and its pre-tokenizer ----------------------------------


def _load(path, where: str):
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TokenizerError(f"{where} is not a regular file; pass the path of a tokenizer.json")
        with open(path, "rb") as f:
            head = f.read(4096)
            first = head.lstrip(b" \t\r\n")[:1]
            if first and first != b"{":  # refuse a large file of something else without reading it all
                _fail(where, "the top level", f"expected a JSON object (a tokenizer.json starts with '{{'), "
                                              f"found bytes starting {head[:24]!r}")
            data = head + f.read()
    except OSError as exc:
        raise TokenizerError(f"cannot read {where}: {exc}") from exc
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{where} is not UTF-8 text ({exc}); expected a Hugging Face tokenizer.json") from None
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"{where} is not valid JSON: {exc}; expected a Hugging Face tokenizer.json") from None
    except RecursionError:
        raise TokenizerError(f"{where} is JSON nested too deeply to parse; "
                             "expected a Hugging Face tokenizer.json") from None
    except ValueError as exc:  # an integer with thousands of digits
        raise TokenizerError(f"{where} cannot be parsed as JSON ({str(exc).split(';')[0]}); "
                             "expected a Hugging Face tokenizer.json") from None


def _check_model_options(model: dict, where: str) -> bool:
    """Refuse BPE options the kernels do not implement; return `ignore_merges`."""
    kind = model.get("type", _MISSING)
    if kind != "BPE":
        _unsupported(where, "model.type", kind, part="model type", supported='"BPE"')
    dropout = _field(model, "dropout", at="model", where=where, expected="null or a number",
                     ok=lambda v: v is None or type(v) in (int, float), default=None)
    if dropout:
        _unsupported(where, "model.dropout", dropout, part="BPE dropout", supported="no dropout")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        affix = _field(model, key, at="model", where=where, expected="null or a string",
                       ok=lambda v: v is None or type(v) is str, default=None)
        if affix:
            _unsupported(where, f"model.{key}", affix, part=key, supported="none (byte-level BPE)")
    if _flag(model, "byte_fallback", at="model", where=where, default=False):
        _unsupported(where, "model.byte_fallback", True, part="byte_fallback",
                     supported="byte_fallback=false")
    return _flag(model, "ignore_merges", at="model", where=where, default=False)


def _hf_pattern(pre, where: str) -> Pattern:
    path = "pre_tokenizer"
    if type(pre) is not dict:
        _unsupported(where, path, pre, part="pre_tokenizer", supported=_BYTELEVEL)
    kind = pre.get("type", _MISSING)
    if kind == "ByteLevel":
        if _flag(pre, "add_prefix_space", at=path, where=where, default=True):
            _unsupported(where, f"{path}.add_prefix_space", True, part="ByteLevel add_prefix_space",
                         supported="add_prefix_space=false (GPT-2/tiktoken behaviour)")
        if not _flag(pre, "use_regex", at=path, where=where, default=True):
            _unsupported(where, f"{path}.use_regex", False, part="ByteLevel use_regex", supported=_BYTELEVEL)
        return patterns.HF_BYTELEVEL
    if kind != "Sequence":
        _unsupported(where, f"{path}.type", kind, part="pre_tokenizer type", supported=_BYTELEVEL)
    steps = _field(pre, "pretokenizers", at=path, where=where, expected="an array of pre-tokenizers",
                   ok=lambda v: type(v) is list)
    for i, step in enumerate(steps):
        if type(step) is not dict:
            _expect(where, f"{path}.pretokenizers[{i}]", "a pre-tokenizer object", step)
    kinds = [step.get("type") for step in steps]
    if kinds != ["Split", "ByteLevel"]:
        _unsupported(where, f"{path}.pretokenizers", kinds, part="pre_tokenizer sequence", supported=_BYTELEVEL)
    split, level = steps
    at_split, at_level = f"{path}.pretokenizers[0]", f"{path}.pretokenizers[1]"
    pattern = split.get("pattern", _MISSING)
    if type(pattern) is not dict or "Regex" not in pattern:
        _unsupported(where, f"{at_split}.pattern", pattern, part="Split pattern",
                     supported='a {"Regex": ...} pattern')
    regex = _field(pattern, "Regex", at=f"{at_split}.pattern", where=where, expected="a string",
                   ok=lambda v: type(v) is str)
    behavior = split.get("behavior", _MISSING)
    if behavior != "Isolated":
        _unsupported(where, f"{at_split}.behavior", behavior, part="Split behavior", supported='"Isolated"')
    if _flag(split, "invert", at=at_split, where=where, default=False):
        _unsupported(where, f"{at_split}.invert", True, part="Split invert", supported="invert=false")
    for key in ("add_prefix_space", "use_regex"):
        if _flag(level, key, at=at_level, where=where, default=True):
            _unsupported(where, f"{at_level}.{key}", True, part=f"ByteLevel {key} after Split",
                         supported=f"{key}=false")
    return patterns.pattern_for_hf_split(regex, f"{where}, at {at_split}.pattern.Regex")


# ---- vocabulary, merges, added tokens ---------------------------------------------


def _read_added(spec: dict, where: str) -> list[_Added]:
    entries = spec.get("added_tokens", _MISSING)
    if entries is _MISSING:
        return []
    if type(entries) is not list:
        _expect(where, "added_tokens", "an array of added-token objects", entries)
    added = []
    for i, tok in enumerate(entries):
        path = f"added_tokens[{i}]"
        if type(tok) is not dict:
            _expect(where, path, 'an object with "id" and "content"', tok)
        token_id = _field(tok, "id", at=path, where=where, expected=_ID, ok=_is_id)
        content = _field(tok, "content", at=path, where=where, expected="a non-empty string of valid Unicode",
                         ok=_is_text)
        flags = {key: _flag(tok, key, at=path, where=where, default=False)
                 for key in ("special", "lstrip", "rstrip", "single_word")}
        _flag(tok, "normalized", at=path, where=where, default=False)  # changes nothing without a normalizer
        stripping = flags["lstrip"] or flags["rstrip"] or flags["single_word"]
        added.append(_Added(i, content, token_id, flags["special"], stripping))
    return added


def _read_vocab(model: dict, added_texts: set[str], where: str):
    """model.vocab itself; bytes by id, id by bytes and id by text of its byte-level entries; text by id
    of the others (added tokens that are not byte-level)."""
    vocab = _field(model, "vocab", at="model", where=where, expected="an object mapping each token to its id",
                   ok=lambda v: type(v) is dict)
    tokens: dict[int, bytes] = {}
    by_bytes: dict[bytes, int] = {}
    by_text: dict[str, int] = {}
    set_aside: dict[int, str] = {}  # added tokens spelled as text, e.g. "<｜begin▁of▁sentence｜>"
    char_to_byte = _CHAR_TO_BYTE
    for text, token_id in vocab.items():
        if type(token_id) is not int or not 0 <= token_id <= MAX_TOKEN_ID:
            _expect(where, f"model.vocab[{_key(text)}]", _ID, token_id)
        if token_id in tokens or token_id in set_aside:
            first = next(t for t, i in vocab.items() if i == token_id)
            _fail(where, f"model.vocab[{_key(text)}]", f"id {token_id} is given to both {_key(first)} and "
                                                        f"{_key(text)}; each id must name one token")
        try:
            raw = bytes([char_to_byte[c] for c in text])
        except KeyError:
            if text in added_texts:  # matched by its text only, as an added token
                set_aside[token_id] = text
                continue
            _fail(where, f"model.vocab[{_key(text)}]", f"token {_key(text)} (id {token_id}) is not byte-level "
                  "(its characters are not GPT-2 byte stand-ins); fastload supports byte-level BPE vocabularies only")
        tokens[token_id] = raw
        by_bytes.setdefault(raw, token_id)
        by_text[text] = token_id
    return vocab, tokens, by_bytes, by_text, set_aside


def _read_merges(model: dict, by_text: dict[str, int], where: str) -> np.ndarray:
    entries = _field(model, "merges", at="model", where=where, expected="an array of merges",
                     ok=lambda v: type(v) is list)
    merges = []
    for rank, entry in enumerate(entries):
        pair = entry.split(" ") if type(entry) is str else entry
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            _expect(where, f"model.merges[{rank}]", _MERGE, entry)
        left, right = pair
        left_id, right_id, merged_id = by_text.get(left), by_text.get(right), by_text.get(left + right)
        if left_id is None or right_id is None or merged_id is None:
            missing = next(t for t in (left, right, left + right) if t not in by_text)
            _fail(where, f"model.merges[{rank}]", f"merge {_text(entry)} needs {_key(missing)}, which is not a "
                  "byte-level token of model.vocab; both tokens of a merge and their concatenation must be in it")
        merges.append((left_id, right_id, merged_id, rank))
    return np.array(merges, dtype=np.int64).reshape(-1, 4)


def _check_added_ids(added: list[_Added], *, vocab: dict[str, int], tokens: dict[int, bytes],
                     set_aside: dict[int, str], where: str) -> None:
    """Refuse the contradictions HF would renumber its way around (see the module docstring)."""
    first_by_text: dict[str, _Added] = {}
    by_id: dict[int, _Added] = {}
    for tok in added:
        at, name = f"added_tokens[{tok.index}].id", _key(tok.content)
        earlier = first_by_text.get(tok.content)
        if earlier is not None:
            if earlier.token_id != tok.token_id:
                _fail(where, at, f"{name} is listed twice, with id {earlier.token_id} at added_tokens[{earlier.index}] "
                      f"and id {tok.token_id} here; Hugging Face tokenizers keeps id {earlier.token_id}. "
                      "Remove one of the entries")
            continue
        vocab_id = vocab.get(tok.content)
        if vocab_id is not None and vocab_id != tok.token_id:
            _fail(where, at, f"added token {name} has id {tok.token_id}, but model.vocab gives {name} id {vocab_id}; "
                  f"Hugging Face tokenizers uses {vocab_id} and leaves {tok.token_id} unused. "
                  f"Give the added token id {vocab_id}")
        if vocab_id is None and (tok.token_id in tokens or tok.token_id in set_aside):
            other = _key(next(t for t, i in vocab.items() if i == tok.token_id))
            if tok.token_id in tokens:
                other += f" (the bytes {tokens[tok.token_id]!r})"
            free = max(max(vocab.values()), max(t.token_id for t in added)) + 1
            _fail(where, at, f"added token {name} has id {tok.token_id}, which model.vocab gives to {other}; "
                  f"one id cannot stand for two tokens (Hugging Face tokenizers moves {name} to another id). "
                  f"Give the added token an id no other token has, e.g. {free}")
        twin = by_id.get(tok.token_id)
        if twin is not None:
            _fail(where, at, f"added tokens {_key(twin.content)} (added_tokens[{twin.index}]) and {name} both have "
                  f"id {tok.token_id} (Hugging Face tokenizers moves {name} to another id). Give each its own id")
        first_by_text[tok.content] = tok
        by_id[tok.token_id] = tok


def read_hf_json(path: str | pathlib.Path) -> Vocab:
    """Read a Hugging Face `tokenizer.json` with a byte-level BPE model."""
    where = f"tokenizer file {str(path)!r}"
    spec = _load(path, where)
    if type(spec) is not dict:
        _expect(where, "the top level", "a JSON object (a Hugging Face tokenizer.json)", spec)
    normalizer = spec.get("normalizer")
    if normalizer is not None:
        kind = normalizer.get("type", normalizer) if type(normalizer) is dict else normalizer
        _unsupported(where, "normalizer", kind, part="normalizer", supported="no normalizer (null)")
    pattern = _hf_pattern(spec.get("pre_tokenizer", _MISSING), where)
    model = _field(spec, "model", at="", where=where, expected="an object (the tokenization model)",
                   ok=lambda v: type(v) is dict)
    ignore_merges = _check_model_options(model, where)
    added = _read_added(spec, where)

    vocab, tokens, by_bytes, by_text, set_aside = _read_vocab(model, {tok.content for tok in added}, where)
    byte_ids = single_byte_ids(by_bytes, f"{where}, at model.vocab")
    merges = _read_merges(model, by_text, where)
    _check_added_ids(added, vocab=vocab, tokens=tokens, set_aside=set_aside, where=where)

    added_ids, special, stripping = {}, set(), set()
    for tok in added:
        if tok.stripping:
            stripping.add(tok.content)  # fine as ordinary text; refused in allowed_special
        added_ids[tok.content] = tok.token_id
        if tok.special:
            special.add(tok.content)
        if tok.token_id not in tokens:
            tokens[tok.token_id] = tok.content.encode("utf-8")
    tok_bytes, tok_offsets = pack_tokens(tokens, where)
    return Vocab(
        tok_bytes=tok_bytes,
        tok_offsets=tok_offsets,
        byte_ids=byte_ids,
        merges=merges,
        whole_piece=ignore_merges,
        lookup_ids=np.array(sorted(set(by_text.values())), dtype=np.int64),
        added=added_ids,
        special=frozenset(special),
        pattern=pattern,
        source=str(path),
        stripping=frozenset(stripping),
    )
