"""The demo corpus, tokenized, in small blocks (so a block-disjoint validation split is a small share), and a tiny model."""

from __future__ import annotations

import pytest

import fastload
from fastload.demo import demo_corpus_path
from fastload.train import GPTConfig, TrainConfig

# One layer, 32 wide, 32-token rows: a step takes a few milliseconds on a CPU, and still learns.
TINY = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """375 documents, 1.8 M tokens, 25 documents a block: 15 blocks."""
    path = tmp_path_factory.mktemp("train") / "corpus"
    fastload.convert(demo_corpus_path(), path, tokenizer="default", block_rows=25, quiet=True)
    return path


@pytest.fixture
def tiny_config(tmp_path):
    """`tiny_config(**changes)`: a few-second run of the tiny model writing into tmp_path/run (no plot, 4 x 32 tokens a step)."""

    def make(**changes) -> TrainConfig:
        settings = dict(model=TINY, steps=20, batch_size=4, workers=0, lr=3e-3, warmup_steps=2, eval_every=10,
                        eval_batches=2, log_every=1, out=str(tmp_path / "run"), plot=False, validation=0.1)
        settings.update(changes)
        return TrainConfig(**settings)

    return make
