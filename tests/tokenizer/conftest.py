"""Small byte-level BPE vocabularies trained on the spot with HF tokenizers, in
every pre-tokenizer style fastload supports, plus tiktoken rank files of them."""

from __future__ import annotations

import base64
import json
import pathlib

import pytest

from fastload.tokenizer import patterns
from fastload.tokenizer.vocab import bytes_to_unicode
from tests.tokenizer.corpora import training_texts

SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>"]
# style -> (regex for a Split pre-tokenizer, or None for ByteLevel's own GPT-2 regex)
STYLES = {
    "gpt2": None,
    "cl100k": patterns.CL100K_PATTERN,
    "cl100k-possessive": patterns.CL100K_POSSESSIVE_PATTERN,
    "o200k": patterns.O200K_PATTERN,
}
# style -> pattern name for Tokenizer.from_tiktoken / the tiktoken regex it implies
TIKTOKEN_STYLES = {
    "gpt2": ("gpt2", patterns.GPT2_POSSESSIVE_PATTERN),
    "cl100k": ("cl100k", patterns.CL100K_POSSESSIVE_PATTERN),
    "o200k": ("o200k", patterns.O200K_PATTERN),
}


def train_hf(style: str, vocab_size: int = 1200):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    regex = STYLES[style]
    if regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_texts(), trainer=trainer)
    return tok


@pytest.fixture(scope="session")
def hf_files(tmp_path_factory) -> dict[str, pathlib.Path]:
    """style -> path of a trained tokenizer.json (plus "gpt2-ignore-merges")."""
    folder = tmp_path_factory.mktemp("hf_vocabs")
    paths = {}
    for style in STYLES:
        path = folder / f"{style}.json"
        train_hf(style).save(str(path))
        paths[style] = path
    spec = json.loads(paths["gpt2"].read_text())
    spec["model"]["ignore_merges"] = True
    paths["gpt2-ignore-merges"] = folder / "gpt2-ignore-merges.json"
    paths["gpt2-ignore-merges"].write_text(json.dumps(spec))
    return paths


def write_rank_file(hf_json: pathlib.Path, out: pathlib.Path) -> dict[str, int]:
    """Write the HF vocabulary as a tiktoken rank file (rank = HF id); return the specials."""
    spec = json.loads(hf_json.read_text())
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    specials = {t["content"]: t["id"] for t in spec["added_tokens"]}
    lines = []
    for text, token_id in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if text in specials:
            continue
        raw = bytes(char_to_byte[c] for c in text)
        lines.append(f"{base64.b64encode(raw).decode()} {token_id}")
    out.write_text("\n".join(lines) + "\n")
    return specials


@pytest.fixture(scope="session")
def rank_files(hf_files, tmp_path_factory) -> dict[str, tuple[pathlib.Path, dict[str, int]]]:
    """style -> (rank file, special tokens) for the tiktoken styles."""
    folder = tmp_path_factory.mktemp("rank_files")
    return {style: (folder / f"{style}.tiktoken", write_rank_file(hf_files[style], folder / f"{style}.tiktoken"))
            for style in TIKTOKEN_STYLES}


def openai_rank_file(name: str, tmp_path_factory) -> pathlib.Path:
    """cl100k_base / o200k_base from the bpe-openai wheel (dev dependency), uncompressed."""
    import gzip
    import importlib.resources

    bpe_openai = pytest.importorskip("bpe_openai", reason="bpe-openai ships the real OpenAI rank files")
    source = importlib.resources.files(bpe_openai) / "data" / f"{name}.tiktoken.gz"
    out = tmp_path_factory.getbasetemp() / f"{name}.tiktoken"
    if not out.exists():
        out.write_bytes(gzip.decompress(source.read_bytes()))
    return out
