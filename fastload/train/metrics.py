"""Training metrics: the time a step spends waiting for data, and a JSON-lines log.

    meter = StepMeter()
    ...                                   # per step:
    meter.add(step_s=..., data_wait_s=..., tokens=...)
    record = meter.summary()              # every log_every steps: means over the interval

`data_wait_s` is the wall time spent inside `next(loader)` for a step's
micro-batches; `data_wait_pct` is its share of the step's wall time. On a
GPU the host runs ahead of the device, so a step's wall time is only exact
over an interval that ends in a synchronisation: the loop reads the loss
(`.item()`) when it logs, which synchronises, and the meter reports means
over the interval, not single steps.

Every record is one JSON object on its own line of `metrics.jsonl` (`kind`:
"train", "eval" or "end"), readable with `pandas.read_json(lines=True)`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = ["StepMeter", "MetricsLog", "read_metrics"]


class StepMeter:
    """Sums over the steps since the last `summary()`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.step_s = 0.0
        self.data_wait_s = 0.0
        self.tokens = 0

    def add(self, *, step_s: float, data_wait_s: float, tokens: int) -> None:
        self.steps += 1
        self.step_s += step_s
        self.data_wait_s += data_wait_s
        self.tokens += tokens

    def summary(self) -> dict:
        """Means over the interval: step_time_ms, tokens_per_s, data_wait_ms and data_wait_pct; then reset."""
        steps = max(1, self.steps)
        out = {
            "step_time_ms": 1000 * self.step_s / steps,
            "tokens_per_s": self.tokens / self.step_s if self.step_s > 0 else 0.0,
            "data_wait_ms": 1000 * self.data_wait_s / steps,
            "data_wait_pct": 100 * self.data_wait_s / self.step_s if self.step_s > 0 else 0.0,
        }
        self.reset()
        return out


class MetricsLog:
    """Appends records to `path` as JSON lines (or keeps them in memory only, with path=None)."""

    def __init__(self, path: str | os.PathLike | None, *, append: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.records: list[dict] = []
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if append else "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        record = {key: _finite(value) for key, value in record.items()}
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl`."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _finite(value):
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no NaN or infinity: a diverged loss is written as null
    return value
