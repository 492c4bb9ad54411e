"""A small hyper-parameter grid: every combination trained for the same budget, ranked by validation loss.

    grid = parse_sweep(["lr=3e-4,1e-3", "batch_size=8,16"])       # or parse_sweep(["sweep.toml"])
    results = sweep("demo/corpus", TrainConfig(steps=100), grid)  # best first

A grid names `TrainConfig` fields (`batch-size` and `batch_size` both work)
and the values to try; a TOML file holds the same as a `[sweep]` table of
lists, with an optional `[train]` table of fixed settings:

    [train]
    steps = 100
    [sweep]
    lr = [3e-4, 1e-3]
    batch_size = [8, 16]

Each combination runs with the base config's seed, so they differ only in
the settings swept, and writes into a folder of its own under `out`. A grid
search, deliberately: with a budget of a handful of runs it is the one a
reader can check by eye; random or Bayesian search belong to tools built
for them.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from fastload.errors import ConfigError
from fastload.toml_files import read_toml
from fastload.train.config import TrainConfig
from fastload.train.loop import TrainResult, train

__all__ = ["SweepResult", "parse_sweep", "sweep", "read_sweep_file"]

_FIELDS = {f.name for f in fields(TrainConfig)}
_NOT_SWEPT = {"out", "resume"}  # every run writes its own folder and starts fresh


@dataclass(frozen=True)
class SweepResult:
    settings: dict  # the swept values of this run
    result: TrainResult

    @property
    def best_val_loss(self) -> float | None:
        return self.result.best_val_loss


def parse_sweep(items: list[str]) -> tuple[dict[str, list], dict]:
    """(grid, fixed settings) from `key=v1,v2` items, or from one `.toml` file path."""
    if len(items) == 1 and items[0].endswith(".toml"):
        return read_sweep_file(items[0])
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise ConfigError(f"sweep item {item!r} is not NAME=V1,V2,...; example: --sweep lr=3e-4,1e-3 batch_size=8,16")
        name = _field_name(key)
        grid[name] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid, {}


def read_sweep_file(path: str | os.PathLike) -> tuple[dict[str, list], dict]:
    document = read_toml(path, "sweep file", instead="give the grid as --sweep NAME=V1,V2 instead")
    table = document.get("sweep")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"sweep file {str(path)!r} has no [sweep] table of lists (example: lr = [3e-4, 1e-3])")
    grid = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep] {key} in {str(path)!r} must be a non-empty list of values, found {values!r}")
        grid[_field_name(key)] = values
    fixed = {_field_name(key): value for key, value in document.get("train", {}).items()}
    return grid, fixed


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the last name varying fastest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def sweep(
    dataset,
    base: TrainConfig,
    grid: dict[str, list],
    *,
    on_run: Callable[[int, int, dict], None] | None = None,
    on_record: Callable[[dict], None] | None = None,
    quiet: bool = False,
) -> list[SweepResult]:
    """Train every combination of `grid` over `base`; the results, best validation loss first.

    on_run(index, total, settings) is called before each run starts; on_record and quiet are `train()`'s.
    """
    if not base.validation:
        raise ConfigError("a sweep ranks runs by validation loss: set validation > 0")
    if not grid:
        raise ConfigError("the sweep grid is empty; give at least one NAME=V1,V2")
    runs = combinations(grid)
    results = []
    for index, settings in enumerate(runs):
        out = None if base.out is None else str(Path(base.out) / f"run-{index:02d}-{_slug(settings)}")
        config = base.replace(**settings, out=out, resume=False)
        if on_run is not None:
            on_run(index, len(runs), settings)
        results.append(SweepResult(settings, train(dataset, config, on_record=on_record, quiet=quiet)))
    return sorted(results, key=lambda r: (r.best_val_loss is None, r.best_val_loss if r.best_val_loss is not None else 0.0))


def _field_name(key: str) -> str:
    name = key.strip().replace("-", "_")
    if name not in _FIELDS or name in _NOT_SWEPT:
        valid = ", ".join(sorted(_FIELDS - _NOT_SWEPT))
        raise ConfigError(f"cannot sweep {key.strip()!r}: not a training setting; valid names: {valid}")
    return name


def _value(text: str):
    """'8' -> 8, '3e-4' -> 0.0003, 'true' -> True, 'none' -> None, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _slug(settings: dict) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(f"{k}={v}" for k, v in settings.items()))[:80]
