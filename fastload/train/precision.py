"""Mixed precision: which autocast dtype, and whether a gradient scaler is needed.

    precision = resolve_precision("auto", device, bf16_supported=torch.cuda.is_bf16_supported())
    with precision.autocast():
        loss = ...
    precision.scaler.scale(loss).backward()

bf16 keeps fp32's exponent range, so it trains without loss scaling; fp16
does not, so it comes with a `GradScaler` (CUDA only: fp16 on a CPU is slow
and gains nothing). On CPU, "auto" picks fp32: a small model is not faster
in bf16 there and its losses stay comparable with other runs. The choice is a
pure function of (requested, device type, bf16 support), tested without a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from fastload.errors import ConfigError

__all__ = ["Precision", "resolve_precision"]


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16"
    device_type: str  # "cuda" or "cpu"

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        """The forward pass's context: autocast to `dtype`, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> "torch.amp.GradScaler":
        """A GradScaler, enabled only for fp16 (disabled, it passes losses and steps through unchanged)."""
        return torch.amp.GradScaler(self.device_type if self.needs_scaler else "cpu", enabled=self.needs_scaler)


def resolve_precision(requested: str, device_type: str, *, bf16_supported: bool) -> Precision:
    """The precision to train in: "auto" -> bf16 on a GPU that has it, else fp16 on CUDA, else fp32."""
    if requested == "auto":
        if device_type == "cuda":
            return Precision("bf16" if bf16_supported else "fp16", device_type)
        return Precision("fp32", device_type)
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA device (it trains with a GradScaler), found {device_type!r}; use 'bf16' or 'fp32'")
    if requested == "bf16" and device_type == "cuda" and not bf16_supported:
        raise ConfigError("precision 'bf16' is not supported by this GPU (compute capability < 8.0); use 'fp16' or 'auto'")
    if requested not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be one of 'auto', 'fp32', 'bf16', 'fp16'; found {requested!r}")
    return Precision(requested, device_type)
