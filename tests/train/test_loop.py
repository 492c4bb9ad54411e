"""The training loop: it learns, resumes exactly, stops early, and records what it measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import torch.nn.functional as F
from dataclasses import replace

from fastload.errors import ConfigError
from fastload.train import GPT, train
from tests.train.conftest import TINY


def _recorder(batches: list):
    return lambda step, batch: batches.append((step, batch["input_ids"].clone()))


def _train_losses(result) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in result.records if r["kind"] == "train"]


def test_a_few_steps_on_the_demo_corpus_lower_the_training_and_validation_loss(corpus, tiny_config):
    result = train(corpus, tiny_config(steps=40, eval_every=20))
    losses = [loss for _, loss in _train_losses(result)]
    assert np.log(16384) - 0.2 < np.mean(losses[:3])  # starts near uniform over the 16k vocabulary
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    evals = [r["val_loss"] for r in result.records if r["kind"] == "eval"]
    assert len(evals) == 2 and evals[1] < evals[0]
    assert result.steps == 40 and result.best_val_loss == evals[1] and not result.stopped_early


def test_resuming_continues_with_exactly_the_next_batch_and_the_same_losses(corpus, tiny_config, tmp_path):
    # N + M steps in one go (no workers) against N steps, a stop, and M more (2 workers, then 0 and 2 again).
    reference_batches: list = []
    reference = train(corpus, tiny_config(steps=14, out=str(tmp_path / "whole"), eval_every=5), on_batch=_recorder(reference_batches))

    interrupted_batches: list = []
    split = dict(out=str(tmp_path / "split"), eval_every=5, decay_steps=14)
    first = train(corpus, tiny_config(steps=7, workers=2, **split), on_batch=_recorder(interrupted_batches))
    second = train(corpus, tiny_config(steps=14, workers=2, resume=True, **split), on_batch=_recorder(interrupted_batches))

    assert first.steps == 7 and second.steps == 14
    assert [step for step, _ in interrupted_batches] == [step for step, _ in reference_batches] == list(range(14))
    for (_, got), (_, expected) in zip(interrupted_batches, reference_batches):
        assert torch.equal(got, expected)
    assert _train_losses(first) + _train_losses(second) == _train_losses(reference)
    evals = lambda *results: [(r["step"], r["val_loss"]) for res in results for r in res.records if r["kind"] == "eval"]  # noqa: E731
    assert [e for e in evals(first, second) if e[0] != 7] == evals(reference)  # the first run also scored its last step
    assert second.best_val_loss == reference.best_val_loss
    # The resumed run's log holds each step once, as an uninterrupted run's does.
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in line]
    assert steps == list(range(1, 15))


def test_resuming_across_epoch_boundaries_is_exact(tiny_config, tmp_path):
    # A corpus of ~800 tokens and no validation split: an epoch is a few steps of 4 x 33 tokens.
    import fastload

    small = tmp_path / "small"
    texts = [{"text": " ".join(f"word{i}x{j}" for j in range(40 + 10 * i))} for i in range(4)]
    fastload.convert(texts, small, tokenizer="default", block_rows=2, quiet=True)
    rows_per_epoch = fastload.Dataset(small).stats["tokens"]["tokens"] // (4 * 33)
    assert 2 <= rows_per_epoch <= 6  # 12 steps cross at least two epoch boundaries

    whole: list = []
    train(small, tiny_config(steps=12, validation=0.0, out=str(tmp_path / "w")), on_batch=_recorder(whole))
    split: list = []
    settings = dict(validation=0.0, decay_steps=12, out=str(tmp_path / "s"))
    train(small, tiny_config(steps=5, workers=2, **settings), on_batch=_recorder(split))
    train(small, tiny_config(steps=12, resume=True, **settings), on_batch=_recorder(split))
    assert len(split) == len(whole) == 12
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(split, whole))


def test_early_stopping_ends_the_run_on_a_flat_validation_curve(corpus, tiny_config):
    # lr=0: the weights never move, so every evaluation scores the same loss and none improves on the first.
    result = train(corpus, tiny_config(steps=100, lr=0.0, eval_every=3, patience=2))
    evals = [r for r in result.records if r["kind"] == "eval"]
    assert result.stopped_early and result.steps == 9  # evaluations at 3 (best), 6 and 9 (two without improvement)
    assert len({r["val_loss"] for r in evals}) == 1
    assert [r["evals_since_best"] for r in evals] == [0, 1, 2] and evals[-1]["early_stop"]


def test_validation_blocks_never_feed_training(corpus, tiny_config):
    result = train(corpus, tiny_config(steps=2))
    start = next(r for r in result.records if r["kind"] == "start")
    assert start["validation_blocks"] and not set(start["validation_blocks"]) & set(start["train_blocks"])
    assert sorted(start["validation_blocks"] + start["train_blocks"]) == list(range(15))


def test_the_checkpoint_is_plain_data_with_model_optimizer_scaler_rng_and_loader_state(corpus, tiny_config, tmp_path):
    train(corpus, tiny_config(steps=3))
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)  # loads without running any code
    assert saved["step"] == 3
    assert {"model", "optimizer", "scaler", "rng", "loader", "model_config", "train_config"} <= set(saved)
    assert saved["loader"]["batches_yielded"] == 3 and saved["loader"]["sampler_state"]["kind"] == "packed"
    assert len(saved["rng"]) == 1 and {"torch", "cuda", "numpy", "python"} <= set(saved["rng"][0])


def test_metrics_record_loss_throughput_and_data_wait_every_log_interval(corpus, tiny_config, tmp_path):
    result = train(corpus, tiny_config(steps=6, log_every=3, plot=True))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["start", "train", "train", "eval", "end"]
    for record in (r for r in lines if r["kind"] == "train"):
        assert record["tokens_per_s"] > 0 and record["step_time_ms"] > 0
        assert 0 <= record["data_wait_pct"] <= 100 and record["data_wait_ms"] <= record["step_time_ms"]
    assert [r["step"] for r in lines if r["kind"] == "train"] == [3, 6]
    assert lines == result.records
    png = (tmp_path / "run" / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_without_matplotlib_the_plot_is_skipped_with_a_warning_naming_the_extra(corpus, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.warns(UserWarning, match=r"fastload\[train\]"):
        train(corpus, tiny_config(steps=2, plot=True))
    assert not (tmp_path / "run" / "metrics.png").exists() and (tmp_path / "run" / "metrics.jsonl").exists()


def test_with_gradient_accumulation_a_step_takes_grad_accum_batches_and_logs_their_mean_loss(corpus, tiny_config, tmp_path):
    # lr=0 keeps the weights at their initial values, which the checkpoint holds: score the batches by hand.
    batches: list = []
    result = train(corpus, tiny_config(steps=2, batch_size=2, grad_accum=3, lr=0.0, grad_clip=None), on_batch=lambda step, batch: batches.append((step, {k: v.clone() for k, v in batch.items()})))
    assert [step for step, _ in batches] == [0, 0, 0, 1, 1, 1]
    model = GPT(replace(TINY, vocab_size=16384))
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"])
    with torch.no_grad():
        by_hand = [
            F.cross_entropy(model(b["input_ids"], position_ids=b["position_ids"], document_ids=b["document_ids"]).flatten(0, 1), b["labels"].flatten(), ignore_index=-100).item()
            for _, b in batches
        ]
    logged = [loss for _, loss in _train_losses(result)]
    assert logged == pytest.approx([np.mean(by_hand[:3]), np.mean(by_hand[3:])], rel=1e-5)
    assert next(r for r in result.records if r["kind"] == "start")["tokens_per_step"] == 3 * 2 * 32


def test_resume_without_a_checkpoint_says_where_it_looked(corpus, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at .*checkpoint.pt"):
        train(corpus, tiny_config(resume=True, out=str(tmp_path / "empty")))


def test_resume_with_another_model_is_refused(corpus, tiny_config):
    train(corpus, tiny_config(steps=1))
    with pytest.raises(ConfigError, match="resume with the same"):
        train(corpus, tiny_config(steps=2, resume=True, model="tiny"))


def test_a_loader_of_your_own_feeds_the_same_loop_and_validation_still_comes_from_the_dataset(corpus, tiny_config):
    torch.manual_seed(1)
    ids = torch.randint(1, 16384, (2, 33))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:], "position_ids": torch.arange(32).expand(2, 32), "document_ids": torch.zeros(2, 32, dtype=torch.int32)}
    seen: list = []
    result = train(corpus, tiny_config(steps=12, eval_every=12), loader=[batch] * 3, on_batch=lambda step, b: seen.append(b))
    assert len(seen) == 12 and all(b is batch for b in seen)  # the list is read again every epoch
    losses = [loss for _, loss in _train_losses(result)]
    assert losses[-1] < losses[0] - 1.0  # one batch, seen twelve times: memorised
    assert [r["step"] for r in result.records if r["kind"] == "eval"] == [12]
    with pytest.raises(ConfigError, match="cannot resume the data position"):
        train(corpus, tiny_config(steps=14, resume=True), loader=[batch])


@pytest.mark.parametrize("version", ["1", None, 1.5, [1]])
def test_a_checkpoint_whose_version_is_not_an_integer_is_refused_by_name(tmp_path, version):
    from fastload.train.checkpoint import load_checkpoint

    torch.save({"version": version, "model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="not a positive integer; it was not written by fastload"):
        load_checkpoint(tmp_path / "checkpoint.pt")
