"""`MixturePlan`: what fills every column of every global batch of a weighted mixture of sources.

The columns come from `MixtureLayout` (`mixing.py`): column j of global
batch t is source s's column c at source batch k. Each source is read
through its own epoch order — a `block_window` plan with G_s columns, keyed
by the mixture's seed and the source's name — laid end to end pass after
pass: source batch k is batch k mod n_s of pass k // n_s, n_s being the
source's batches per pass. A pass drops the last incomplete source batch
(fewer than G_s rows; different rows every pass, as with `drop_last`).

A source's order is any epoch plan with `num_batches` and batches of
`columns` rows: the row sampler's (`MixturePlan.of_rows`: `columns()` gives
(source, row) pairs) or the packer's (`fastload.packing`: `pieces()` says
which rows of which source batch go to which columns).

Nothing is materialised per sample: the plan holds the layout (one period of
the shared-lane schedule) and, per source, the plans of the passes in use.
"""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction
from typing import Callable, NamedTuple

import numpy as np

from fastload.errors import ConfigError
from fastload.sampler.mixing import MixtureLayout
from fastload.sampler.options import SamplerOptions
from fastload.sampler.orders import EpochPlan, plan_epoch

__all__ = ["MixturePlan", "Piece", "EXHAUSTION_POLICIES", "source_seed"]

# What happens when a source has been read whole: read it again in a fresh order (upsampling), or end the run.
EXHAUSTION_POLICIES = ("repeat", "stop")


def source_seed(seed: int, name: str) -> int:
    """The seed of one source's order: the mixture's seed and the source's name, so adding or
    reordering sources leaves every other source's order unchanged."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Piece(NamedTuple):
    """Source `source`'s rows [lo, hi) of batch `batch` of its pass `epoch`, bound for the output columns `out`."""

    source: int
    epoch: int
    batch: int
    lo: int
    hi: int
    out: np.ndarray  # (hi - lo,) columns, counted from the start of the requested range


class MixturePlan:
    """The order of a mixture.

    weights: {name: exact fraction}, summing to 1 (see `mixing.exact_weights`).
    plan_of: plan_of(source index, pass, columns, options) -> that source's
        epoch plan with batches of `columns` rows (see `of_rows`).
    describe: describe(source index) -> how many rows it holds, for errors.
    options: the shuffle of every source (`order`, `seed`, `window_blocks`, `num_partitions`).
    on_exhausted: {name: "repeat" | "stop"} (default "repeat").
    """

    @classmethod
    def of_rows(cls, sources: dict[str, np.ndarray], weights: dict[str, Fraction], **kwargs) -> "MixturePlan":
        """A mixture of row sources: {name: rows per block (storage order)}."""
        block_rows = [np.asarray(rows, np.int64) for rows in sources.values()]

        def plan_of(s: int, epoch: int, columns: int, options: SamplerOptions) -> EpochPlan:
            return plan_epoch(block_rows[s], options=options, epoch=epoch, global_batch_size=columns)

        plan = cls(weights, plan_of=plan_of, describe=lambda s: f"{int(block_rows[s].sum()):,} rows", names=list(sources), **kwargs)
        plan.block_rows = block_rows
        return plan

    def __init__(
        self, weights: dict[str, Fraction], *, plan_of: Callable, describe: Callable[[int], str], options: SamplerOptions, global_batch_size: int,
        on_exhausted: dict[str, str] | None = None, names: list[str] | None = None,
    ):
        if names is not None and names != list(weights):
            raise ConfigError(f"the mixture's sources ({', '.join(names)}) and weights ({', '.join(weights)}) must name the same sources")
        self.names = list(weights)
        self._plan_of = plan_of
        self.options, self.global_batch_size = options, global_batch_size
        self.layout = MixtureLayout([weights[n] for n in self.names], global_batch_size)
        self.on_exhausted = {name: "repeat" for name in self.names}
        for name, policy in (on_exhausted or {}).items():
            if name not in weights:
                raise ConfigError(f"on_exhausted names {name!r}, which is not a source of the mixture ({', '.join(self.names)})")
            if policy not in EXHAUSTION_POLICIES:
                raise ConfigError(f"source {name!r}: on_exhausted must be one of {EXHAUSTION_POLICIES}, found {policy!r}")
            self.on_exhausted[name] = policy
        self.source_options = [dataclasses.replace(options, seed=source_seed(options.seed, n), drop_last=True) for n in self.names]
        self.batches_per_pass = np.zeros(len(self.names), np.int64)  # n_s
        self._plans: dict[tuple[int, int], EpochPlan] = {}
        for s, name in enumerate(self.names):
            columns = int(self.layout.source_columns[s])
            if columns == 0:
                continue  # weight 0: never read
            try:
                n = self._plan(s, 0).num_batches
            except ConfigError:  # the source's own plan refused: less than one batch of its columns
                n = 0
            if n == 0:
                raise ConfigError(
                    f"source {name!r} holds {describe(s)}, less than the {columns} rows (at most) it gives a global batch of "
                    f"{global_batch_size}; lower its weight or the batch size"
                )
            self.batches_per_pass[s] = n
        self.num_batches = self._stop_batch()  # None: the mixture never ends

    def _plan(self, s: int, epoch: int) -> EpochPlan:
        key = (s, epoch)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 4 * len(self.names):  # a source has at most two passes live
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[key] = self._plan_of(s, epoch, int(self.layout.source_columns[s]), self.source_options[s])
        return plan

    def _stop_batch(self) -> int | None:
        """The first global batch that would read a second pass of a source whose policy is "stop"."""
        stops = []
        for s, name in enumerate(self.names):
            if self.on_exhausted[name] != "stop" or self.layout.source_columns[s] == 0:
                continue
            n = int(self.batches_per_pass[s])
            if self.layout.dedicated[s]:
                stops.append(n)  # dedicated columns read source batch t in global batch t
            if self.layout.source_columns[s] > self.layout.dedicated[s]:
                # the shared column reads source batch E_s(t) in the batches that give it one: it
                # first needs batch n in the first t with E_s(t + 1) = n + 1 (E is monotone: bisect)
                lo, hi = 0, 1
                while self.layout.shared_count(hi)[s] <= n:
                    hi *= 2
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self.layout.shared_count(mid + 1)[s] > n:
                        hi = mid
                    else:
                        lo = mid + 1
                stops.append(lo)
        return min(stops) if stops else None

    # -- batches ---------------------------------------------------------------------

    def _layout_columns(self, batch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if batch < 0 or (self.num_batches is not None and batch >= self.num_batches):
            raise IndexError(f"batch {batch} is past the end of the mixture ({self.num_batches} batches: a source set to 'stop' is exhausted)")
        return self.layout.columns(batch, lo, hi)

    def pieces(self, batch: int, lo: int, hi: int) -> list[Piece]:
        """Columns [lo, hi) of global batch `batch` as runs of consecutive rows of source batches."""
        source, column, source_batch = self._layout_columns(batch, lo, hi)
        n = np.maximum(self.batches_per_pass[source], 1)
        passes, within = np.divmod(source_batch, n)
        # Group by (source, pass, batch): a source's dedicated lanes are consecutive source columns.
        key = np.stack([source, passes, within, column])
        order = np.lexsort(key[::-1])
        pieces = []
        start = 0
        for i in range(1, len(order) + 1):
            if i == len(order) or tuple(key[:3, order[i]]) != tuple(key[:3, order[start]]) or column[order[i]] != column[order[i - 1]] + 1:
                first = order[start]
                pieces.append(Piece(int(source[first]), int(passes[first]), int(within[first]), int(column[first]), int(column[order[i - 1]]) + 1, order[start:i]))
                start = i
        return pieces

    def plan(self, source: int, epoch: int):
        """Source `source`'s plan of its pass `epoch`."""
        return self._plan(source, epoch)

    def columns(self, batch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(source index, row of that source) of columns [lo, hi) of global batch `batch` (row sources)."""
        source, column, source_batch = self._layout_columns(batch, lo, hi)
        rows = np.empty(len(source), np.int64)
        n = self.batches_per_pass[source]
        passes, within = np.divmod(source_batch, np.maximum(n, 1))
        for s, e in sorted(set(zip(source.tolist(), passes.tolist()))):
            mine = (source == s) & (passes == e)
            G = int(self.layout.source_columns[s])
            rows[mine] = self._plan(s, e).samples_at(within[mine] * G + column[mine])
        return source, rows

    def rank_batch(self, batch: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
        share = self.global_batch_size // world_size
        return self.columns(batch, rank * share, (rank + 1) * share)

    def describe_sources(self) -> dict[str, dict]:
        """What fixes each source's share of the order: its columns and source batches per pass."""
        return {name: {"columns": int(self.layout.source_columns[s]), "batches_per_pass": int(self.batches_per_pass[s])} for s, name in enumerate(self.names)}

    def consumed(self, batch: int) -> dict[str, dict]:
        """Per source, what the first `batch` global batches read: rows, and whole passes completed
        (every column of the source through that pass)."""
        rows = self.layout.delivered(batch)
        shared = self.layout.shared_count(batch)
        out = {}
        for s, name in enumerate(self.names):
            n = int(self.batches_per_pass[s])
            if n == 0:
                out[name] = {"rows": 0, "passes": 0}
                continue
            slowest = batch if self.layout.source_columns[s] == self.layout.dedicated[s] else int(shared[s])
            out[name] = {"rows": int(rows[s]), "passes": min(batch, slowest) // n}
        return out
