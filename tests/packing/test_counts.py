"""The token-count pre-pass of on-the-fly packing: right counts from any number of threads, and a progress bar only on a terminal."""

from __future__ import annotations

import io

import numpy as np
import pytest

import fastload
from fastload.packing.counts import tokenize_to_count


@pytest.fixture(scope="module")
def tokenizer():
    return fastload.Tokenizer.default()


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    texts = [f"counted document {i} " * (i % 13) for i in range(150)]
    path = tmp_path_factory.mktemp("text") / "text"
    fastload.convert([{"text": t} for t in texts], path, block_rows=9, quiet=True)
    return fastload.Dataset(path), texts


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_counts_equal_each_documents_tokens_for_any_number_of_threads(text, tokenizer, threads):
    dataset, texts = text
    counts = tokenize_to_count(dataset, "text", tokenizer, num_threads=threads, quiet=True)
    assert counts.tolist() == [len(tokenizer.encode(t)) for t in texts]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("terminal", "quiet", "shown"), [(True, False, True), (True, True, False), (False, False, False)])
def test_a_progress_bar_shows_on_a_terminal_unless_asked_to_be_quiet(text, tokenizer, monkeypatch, terminal, quiet, shown):
    dataset, _ = text
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    tokenize_to_count(dataset, "text", tokenizer, quiet=quiet)
    assert ("counting tokens" in stderr.getvalue()) == shown
    assert (f"{dataset.num_rows}/{dataset.num_rows}" in stderr.getvalue()) == shown


def test_count_tokens_quiet_counts_ahead_without_a_bar(text, tokenizer, monkeypatch):
    dataset, texts = text
    monkeypatch.setenv("FASTLOAD_CACHE_DIR", "off")
    monkeypatch.setattr("sys.stderr", stderr := _Terminal())
    packed = fastload.PackedDataset(dataset, seq_len=7, tokenizer=tokenizer)
    assert packed.count_tokens(quiet=True) is packed.doc_lengths
    assert np.array_equal(packed.doc_lengths, [len(tokenizer.encode(t)) for t in texts])
    assert stderr.getvalue() == ""
