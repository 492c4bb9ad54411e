"""`MixturePlan`: the (source, row) at every column of every global batch of a weighted mixture of row sources.

The columns come from `MixtureLayout` (`mixing.py`): column j of global
batch t is source s's column c at source batch k. Each source is read
through its own epoch order — a `block_window` plan with G_s columns, keyed
by the mixture's seed and the source's name — laid end to end pass after
pass: source batch k is batch k mod n_s of pass k // n_s, n_s being the
source's batches per pass. A pass drops the last incomplete source batch
(fewer than G_s rows; different rows every pass, as with `drop_last`).

Nothing is materialised per sample: the plan holds the layout (one period of
the shared-lane schedule) and, per source, the plan of the passes in use.
"""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction

import numpy as np

from fastload.errors import ConfigError
from fastload.sampler.mixing import MixtureLayout
from fastload.sampler.options import SamplerOptions
from fastload.sampler.orders import EpochPlan, plan_epoch

__all__ = ["MixturePlan", "EXHAUSTION_POLICIES", "source_seed"]

# What happens when a source has been read whole: read it again in a fresh order (upsampling), or end the run.
EXHAUSTION_POLICIES = ("repeat", "stop")


def source_seed(seed: int, name: str) -> int:
    """The seed of one source's order: the mixture's seed and the source's name, so adding or
    reordering sources leaves every other source's order unchanged."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class MixturePlan:
    """The order of a mixture of row sources.

    sources: {name: rows per block (storage order)}.
    weights: {name: exact fraction}, summing to 1 (see `mixing.exact_weights`).
    options: the shuffle of every source (`order`, `seed`, `window_blocks`, `num_partitions`).
    on_exhausted: {name: "repeat" | "stop"} (default "repeat").
    """

    def __init__(self, sources: dict[str, np.ndarray], weights: dict[str, Fraction], *, options: SamplerOptions, global_batch_size: int, on_exhausted: dict[str, str] | None = None):
        if list(sources) != list(weights):
            raise ConfigError(f"the mixture's sources ({', '.join(sources)}) and weights ({', '.join(weights)}) must name the same sources")
        self.names = list(sources)
        self.options, self.global_batch_size = options, global_batch_size
        self.layout = MixtureLayout([weights[n] for n in self.names], global_batch_size)
        self.on_exhausted = {name: "repeat" for name in self.names}
        for name, policy in (on_exhausted or {}).items():
            if name not in sources:
                raise ConfigError(f"on_exhausted names {name!r}, which is not a source of the mixture ({', '.join(self.names)})")
            if policy not in EXHAUSTION_POLICIES:
                raise ConfigError(f"source {name!r}: on_exhausted must be one of {EXHAUSTION_POLICIES}, found {policy!r}")
            self.on_exhausted[name] = policy
        self.block_rows = [np.asarray(sources[n], np.int64) for n in self.names]
        self.source_options = [dataclasses.replace(options, seed=source_seed(options.seed, n), drop_last=True) for n in self.names]
        self.batches_per_pass = np.zeros(len(self.names), np.int64)  # n_s
        self._plans: dict[tuple[int, int], EpochPlan] = {}
        for s, name in enumerate(self.names):
            columns = int(self.layout.source_columns[s])
            if columns == 0:
                continue  # weight 0: never read
            n = self._plan(s, 0).num_batches
            if n == 0:
                rows = int(self.block_rows[s].sum())
                raise ConfigError(
                    f"source {name!r} holds {rows:,} rows, fewer than the {columns} it gives every global batch of "
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
            plan = self._plans[key] = plan_epoch(
                self.block_rows[s], options=self.source_options[s], epoch=epoch, global_batch_size=int(self.layout.source_columns[s])
            )
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

    def columns(self, batch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(source index, row of that source) of columns [lo, hi) of global batch `batch`."""
        if batch < 0 or (self.num_batches is not None and batch >= self.num_batches):
            raise IndexError(f"batch {batch} is past the end of the mixture ({self.num_batches} batches: a source set to 'stop' is exhausted)")
        source, column, source_batch = self.layout.columns(batch, lo, hi)
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
