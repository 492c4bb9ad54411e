"""Checkpoints: everything a run needs to continue with exactly the next batch.

A checkpoint is one `torch.save` file holding plain data only (tensors,
numbers, strings, lists and dicts), so it loads with `weights_only=True`:
opening a checkpoint never runs code. It holds the model and optimizer
state, the gradient scaler's, the RNG states of every rank (torch CPU and
CUDA, numpy, Python), the step, the early-stopping state, the configs, and
`loader.state_dict()` — the fastload loader's position, from which a new
loader continues with the batch that would have come next.

It is written to a temporary file and renamed over the old one, so a crash
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from fastload.errors import ConfigError

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


def capture_rng() -> dict:
    """This process's RNG states, as plain data."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _python_state_to_plain(random.getstate()),
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write `payload` (plain data) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"version": CHECKPOINT_VERSION, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The payload saved at `path`; a clear error when it is missing, foreign or from a newer fastload."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cannot resume: no checkpoint at {str(path)!r}; train without --resume first, or point --out at the run's folder")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, keep the cause
        raise ConfigError(f"cannot resume: {str(path)!r} is not a readable fastload checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "version" not in payload or "model" not in payload:
        raise ConfigError(f"cannot resume: {str(path)!r} is not a fastload training checkpoint")
    if type(payload["version"]) is not int or payload["version"] < 1:
        raise ConfigError(f"cannot resume: {str(path)!r} has checkpoint version {payload['version']!r:.50}, not a positive integer; it was not written by fastload")
    if payload["version"] > CHECKPOINT_VERSION:
        raise ConfigError(f"cannot resume: {str(path)!r} was written by a newer fastload (checkpoint version {payload['version']}); upgrade fastload")
    return payload
