"""The learning-rate schedule and the choice of precision: pure functions, checked without a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from fastload.errors import ConfigError
from fastload.train import TrainConfig
from fastload.train.optim import lr_at
from fastload.train.precision import resolve_precision


def test_the_learning_rate_warms_up_linearly_then_follows_a_cosine_down_to_the_floor():
    config = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4) and lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(10, config) == pytest.approx(1e-3)
    assert lr_at(60, config) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way down the cosine
    assert lr_at(110, config) == pytest.approx(1e-4) and lr_at(500, config) == pytest.approx(1e-4)
    rates = [lr_at(s, config) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_decay_steps_stretch_the_cosine_beyond_the_steps_of_this_run():
    short = TrainConfig(lr=1e-3, warmup_steps=0, steps=50, decay_steps=100)
    whole = TrainConfig(lr=1e-3, warmup_steps=0, steps=100)
    assert [lr_at(s, short) for s in range(50)] == [lr_at(s, whole) for s in range(50)]
    assert lr_at(50, whole) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 9e-4)


@pytest.mark.parametrize(
    "requested, device, bf16, expected, scaler",
    [
        ("auto", "cuda", True, "bf16", False),  # Ampere and newer
        ("auto", "cuda", False, "fp16", True),  # V100, T4: fp16 needs loss scaling
        ("auto", "cpu", False, "fp32", False),
        ("bf16", "cpu", False, "bf16", False),
        ("fp16", "cuda", True, "fp16", True),
        ("fp32", "cuda", True, "fp32", False),
    ],
)
def test_auto_precision_is_bf16_where_supported_fp16_with_a_scaler_on_older_gpus_and_fp32_on_cpu(requested, device, bf16, expected, scaler):
    precision = resolve_precision(requested, device, bf16_supported=bf16)
    assert precision.name == expected and precision.needs_scaler is scaler


def test_fp16_off_cuda_and_bf16_on_a_gpu_without_it_are_refused_with_the_alternative():
    with pytest.raises(ConfigError, match="needs a CUDA device.*use 'bf16' or 'fp32'"):
        resolve_precision("fp16", "cpu", bf16_supported=False)
    with pytest.raises(ConfigError, match="use 'fp16' or 'auto'"):
        resolve_precision("bf16", "cuda", bf16_supported=False)


def test_bf16_autocast_runs_matmuls_in_bf16_and_the_disabled_scaler_passes_losses_through():
    precision = resolve_precision("bf16", "cpu", bf16_supported=False)
    with precision.autocast():
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.bfloat16
    scaler = precision.make_scaler()
    loss = torch.tensor(2.5)
    assert not scaler.is_enabled() and scaler.scale(loss) is loss


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model="gpt5"), "valid names: tiny"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(precision="fp8"), "precision must be one of"),
        (dict(patience=3, validation=0.0), "needs a validation split"),
        (dict(seq_len=4096), "exceeds the model's block_size 128"),
        (dict(resume=True, out=None), "resume needs an `out` folder"),
    ],
)
def test_a_bad_training_setting_says_which_and_what_to_do(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)
