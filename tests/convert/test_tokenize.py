"""`fastload convert --tokenizer`: a text field becomes a tokens column, identical to the tokenizer's own ids."""

import json

import numpy as np
import pytest

import fastload
from fastload import Dataset, Tokenizer

TEXTS = ["Hello world!", "", "ünïcödé and 漢字 and emoji 🙂", "x" * 5000, "tabs\tand\r\nnewlines  ", "<|endoftext|> stays text"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.default()


def _jsonl(path, n=60):
    path.write_text("".join(json.dumps({"text": TEXTS[i % len(TEXTS)] + f" #{i}", "i": i}, ensure_ascii=False) + "\n" for i in range(n)))
    return path


def test_tokenized_column_equals_the_tokenizers_ids_and_the_index_records_it(tmp_path, tokenizer):
    result = fastload.convert(_jsonl(tmp_path / "in.jsonl"), tmp_path / "out", tokenizer="default", quiet=True)
    ds = Dataset(tmp_path / "out")
    assert ds.schema.names == ["i", "tokens"]  # the text is replaced by its tokens unless keep_text
    assert ds.schema["tokens"].dtype == "uint16"  # a 16k vocabulary fits
    for row in ds:
        text = TEXTS[row["i"] % len(TEXTS)] + f" #{row['i']}"
        assert row["tokens"].tolist() == tokenizer.encode(text)
    recorded = ds.index.tokenizer
    assert recorded["fingerprint"] == tokenizer.fingerprint and recorded["vocab_size"] == tokenizer.vocab_size
    assert result.num_tokens == sum(len(r["tokens"]) for r in ds)


def test_keep_text_keeps_both_and_one_or_two_workers_give_identical_datasets(tmp_path):
    source = _jsonl(tmp_path / "in.jsonl", 400)
    for workers in (1, 2):
        fastload.convert(source, tmp_path / f"w{workers}", tokenizer="default", keep_text=True, workers=workers, block_rows=50, quiet=True)
    assert Dataset(tmp_path / "w1").schema.names == ["text", "i", "tokens"]
    for name in ("index.json", "shard-00000-0000.arrow"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_a_dataset_refuses_a_different_tokenizer(tmp_path, tokenizer):
    fastload.convert(_jsonl(tmp_path / "in.jsonl"), tmp_path / "out", tokenizer="default", quiet=True)
    Dataset(tmp_path / "out", tokenizer=tokenizer)
    with pytest.raises(fastload.FormatError, match="was tokenized with tokenizer"):
        Dataset(tmp_path / "out", tokenizer=Tokenizer.bytes())


def test_a_missing_text_field_is_a_clear_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(fastload.ConvertError, match="no field 'text' to tokenize.*--text-field"):
        fastload.convert(path, tmp_path / "out", tokenizer="default", quiet=True)
    fastload.convert(path, tmp_path / "out", tokenizer="default", text_field="body", quiet=True)
    assert np.array_equal(Dataset(tmp_path / "out")[0]["tokens"], Tokenizer.default().encode("x"))
