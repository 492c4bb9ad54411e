"""The optimizer and the learning-rate schedule.

AdamW with weight decay on matrices only (embeddings and linear weights),
none on biases and LayerNorm gains — the GPT-2/3 recipe as nanoGPT writes it;
and a schedule that is a pure function of the step (linear warm-up, cosine
decay to `lr * min_lr_ratio`, then flat), so a resumed run needs no scheduler
state beyond the step it is at.
"""

from __future__ import annotations

import math

import torch

from fastload.train.config import TrainConfig

__all__ = ["make_optimizer", "lr_at"]


def make_optimizer(model: torch.nn.Module, config: TrainConfig, *, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over `model`'s parameters: matrices (dim >= 2) decay, vectors do not.

    `fused=True` (CUDA only) runs the update as one kernel per parameter group.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), **kwargs)


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    decay_steps = config.decay_steps or config.steps
    min_lr = config.lr * config.min_lr_ratio
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - config.warmup_steps) / max(1, decay_steps - config.warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - min_lr)
