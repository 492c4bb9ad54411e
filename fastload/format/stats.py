"""Per-column statistics, gathered while a dataset is written.

Each accumulator sees a group of rows at a time (vectorised numpy, no
per-row Python). Float moments fold each group in with Chan et al.'s
pairwise update of (count, mean, M2), which stays accurate where a running
sum of squares would not; the writer feeds them whole blocks in storage
order, so the floats in `index.json` do not depend on how many workers
converted the data. Lengths are integer counts (`order_free`): the writer
feeds them each batch as it arrives, whatever its size.

What is gathered:
- numeric (`scalar`, `ndarray`): count of non-null values, NaN count, mean,
  std (population), min, max over finite values; for ndarrays also the same
  per channel along the first and the last axis when that axis is short
  (<= `MAX_CHANNELS`), which is what image normalisation needs in CHW or HWC
  and feature standardisation needs for vectors.
- `tokens`: documents, total tokens, min/max/mean length, a histogram of
  lengths in power-of-two buckets.
- `text` / `bytes`: documents, total bytes, min/max length, the same histogram.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from fastload.format.schema import Column, offsets_of

__all__ = ["ColumnStats", "new_stats", "stats_from_state"]

MAX_CHANNELS = 64  # wider axes are spatial, not channels; per-channel stats would bloat the index
NUM_LENGTH_BUCKETS = 33  # bucket k holds lengths in [2**(k-1), 2**k); bucket 0 holds length 0


class _Moments:
    """count / mean / M2 / min / max over float64 values, mergeable."""

    __slots__ = ("count", "mean", "m2", "min", "max", "nan_count")

    def __init__(self, size: int = 1):
        self.count = np.zeros(size, np.int64)
        self.mean = np.zeros(size, np.float64)
        self.m2 = np.zeros(size, np.float64)
        self.min = np.full(size, np.inf)
        self.max = np.full(size, -np.inf)
        self.nan_count = np.zeros(size, np.int64)

    def add(self, values: np.ndarray) -> None:
        """values: (n, size) float64, NaN allowed."""
        finite = np.isfinite(values)
        nan = np.isnan(values)
        count = finite.sum(axis=0)
        safe = np.where(finite, values, 0.0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = np.where(count > 0, safe.sum(axis=0) / np.maximum(count, 1), 0.0)
            m2 = np.where(finite, (safe - mean) ** 2, 0.0).sum(axis=0)
        other = _Moments(len(count))
        other.count, other.mean, other.m2 = count, mean, m2
        other.min = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)
        other.max = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
        other.nan_count = nan.sum(axis=0)
        self.merge(other)

    def merge(self, other: "_Moments") -> None:
        n = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            delta = other.mean - self.mean
            w = np.where(n > 0, other.count / np.maximum(n, 1), 0.0)
            self.mean = self.mean + delta * w
            self.m2 = self.m2 + other.m2 + delta**2 * self.count * w
        self.count = n
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.nan_count = self.nan_count + other.nan_count

    def state(self) -> dict:
        """Everything, exactly (JSON keeps a float's every bit; infinities as Infinity), for `from_state`."""
        return {name: getattr(self, name).tolist() for name in self.__slots__}

    @classmethod
    def from_state(cls, state: dict) -> "_Moments":
        moments = cls(len(state["count"]))
        for name in cls.__slots__:
            setattr(moments, name, np.asarray(state[name], np.int64 if name in ("count", "nan_count") else np.float64))
        return moments

    def to_json(self, i: int = 0) -> dict:
        count = int(self.count[i])
        return {
            "count": count,
            "nan_count": int(self.nan_count[i]),
            # Finite values near the float64 limit can overflow the mean or variance: null, not inf.
            "mean": _finite_or_none(self.mean[i]) if count else None,
            "std": _finite_or_none(math.sqrt(self.m2[i] / count)) if count and math.isfinite(self.m2[i]) else None,
            "min": _json_number(self.min[i]) if count else None,
            "max": _json_number(self.max[i]) if count else None,
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _json_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


class ColumnStats:
    """Base: an accumulator for one column; `add(array)` a block's column, `merge`, `to_json`."""

    # Whether the result is the same however the rows are grouped into `add` calls and in whatever
    # order the groups come: true of integer counts, not of float moments (`NumericStats`).
    order_free = False

    def __init__(self, column: Column):
        self.column = column
        self.null_count = 0
        self.rows = 0

    def add(self, array: pa.Array) -> None:
        self.rows += len(array)
        self.null_count += array.null_count
        self._add(array)

    def _add(self, array: pa.Array) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_nulls(self, num_rows: int) -> None:
        """Count `num_rows` null rows (a part of the dataset that lacks the column)."""
        self.rows += num_rows
        self.null_count += num_rows

    def merge(self, other: "ColumnStats") -> None:
        """Fold in the statistics of the rows that follow (another part of the dataset, same kind of column)."""
        self.rows += other.rows
        self.null_count += other.null_count
        self._merge(other)

    def _merge(self, other: "ColumnStats") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_json(self) -> dict:
        return {"rows": self.rows, "null_count": self.null_count, **self._to_json()}

    def state(self) -> dict:
        """The accumulator itself, exactly, as JSON-able data (`stats_from_state` rebuilds it)."""
        return {"rows": self.rows, "null_count": self.null_count, **self._state()}

    def _state(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore(self, state: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _to_json(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


class NumericStats(ColumnStats):
    def __init__(self, column: Column):
        super().__init__(column)
        self.overall = _Moments()
        self.axes: dict[int, _Moments] = {}
        if column.kind == "ndarray":
            for axis in sorted({0, len(column.shape) - 1}):
                if column.shape[axis] <= MAX_CHANNELS:
                    self.axes[axis] = _Moments(column.shape[axis])

    def _add(self, array: pa.Array) -> None:
        if array.null_count:
            array = array.drop_null()
        if self.column.kind == "ndarray":
            flat = array.flatten().to_numpy(zero_copy_only=False)
            values = flat.astype(np.float64, copy=False).reshape((len(array),) + self.column.shape)
        else:
            values = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        self.overall.add(values.reshape(-1, 1))
        for axis, moments in self.axes.items():
            moved = np.moveaxis(values, axis + 1, -1)
            moments.add(moved.reshape(-1, moved.shape[-1]))

    def _merge(self, other: "NumericStats") -> None:
        self.overall.merge(other.overall)
        for axis, moments in self.axes.items():
            moments.merge(other.axes[axis])

    def _state(self) -> dict:
        return {"overall": self.overall.state(), "axes": {str(axis): m.state() for axis, m in self.axes.items()}}

    def _restore(self, state: dict) -> None:
        self.overall = _Moments.from_state(state["overall"])
        self.axes = {int(axis): _Moments.from_state(m) for axis, m in state["axes"].items()}

    def _to_json(self) -> dict:
        out = self.overall.to_json()
        for axis, moments in self.axes.items():
            per = [moments.to_json(i) for i in range(len(moments.count))]
            out[f"axis{axis}"] = {k: [p[k] for p in per] for k in ("mean", "std", "min", "max")}
        return out


class LengthStats(ColumnStats):
    """Lengths of variable-length rows: tokens per document, bytes per text."""

    order_free = True  # integer totals, extremes and counts

    def __init__(self, column: Column):
        super().__init__(column)
        self.total = 0
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.histogram = np.zeros(NUM_LENGTH_BUCKETS, np.int64)

    def _add(self, array: pa.Array) -> None:
        # A handful of numpy calls per block and column: their fixed cost, not the rows, is what this
        # costs (a block holds tens of documents), so each step is one call.
        if len(array) == 0:
            return
        offsets = offsets_of(array)
        lengths = np.diff(offsets)
        if array.null_count:
            lengths = lengths[array.is_valid().to_numpy(zero_copy_only=False)]
            if len(lengths) == 0:
                return
            self.total += int(lengths.sum(dtype=np.int64))
        else:
            self.total += int(offsets[-1]) - int(offsets[0])
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min_length = lo if self.min_length is None else min(self.min_length, lo)
        self.max_length = hi if self.max_length is None else max(self.max_length, hi)
        # frexp's exponent is the bucket: a length in [2**(k-1), 2**k) is m * 2**k with m in [0.5, 1), and 0 is 0 * 2**0
        buckets = np.frexp(lengths)[1]
        self.histogram += np.bincount(np.minimum(buckets, NUM_LENGTH_BUCKETS - 1), minlength=NUM_LENGTH_BUCKETS)

    def _merge(self, other: "LengthStats") -> None:
        self.total += other.total
        lows = [x for x in (self.min_length, other.min_length) if x is not None]
        highs = [x for x in (self.max_length, other.max_length) if x is not None]
        self.min_length = min(lows) if lows else None
        self.max_length = max(highs) if highs else None
        self.histogram = self.histogram + other.histogram

    def _state(self) -> dict:
        return {"total": self.total, "min_length": self.min_length, "max_length": self.max_length, "histogram": self.histogram.tolist()}

    def _restore(self, state: dict) -> None:
        self.total, self.min_length, self.max_length = state["total"], state["min_length"], state["max_length"]
        self.histogram = np.asarray(state["histogram"], np.int64)

    def _to_json(self) -> dict:
        documents = self.rows - self.null_count
        key = "tokens" if self.column.kind == "tokens" else "bytes"
        last = int(np.nonzero(self.histogram)[0].max()) + 1 if self.histogram.any() else 0
        return {
            "documents": documents,
            key: self.total,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "mean_length": self.total / documents if documents else None,
            # bucket 0: length 0; bucket k >= 1: lengths in [2**(k-1), 2**k)
            "length_histogram": [int(x) for x in self.histogram[:last]],
        }


def new_stats(column: Column) -> ColumnStats:
    if column.kind in ("scalar", "ndarray"):
        return NumericStats(column)
    return LengthStats(column)


def stats_from_state(column: Column, state: dict) -> ColumnStats:
    """The accumulator `ColumnStats.state()` described, for `column`."""
    stats = new_stats(column)
    stats.rows, stats.null_count = state["rows"], state["null_count"]
    stats._restore(state)
    return stats
