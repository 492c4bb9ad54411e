"""`MixtureLayout`: which source fills each column of each global batch of a weighted mixture.

A mixture reads sources s with weights w_s (exact fractions, Σ w_s = 1). A
global batch has B columns; source s gets w_s·B = q_s + f_s of them
(q_s whole, 0 ≤ f_s < 1):

    q_s dedicated lanes   columns that hold source s in every batch
    F = B − Σ q_s shared lanes, given in each batch to F of the sources with
                          f_s > 0, one each, by a Pfair schedule (PD²)

After t batches source s has had E_s(t) shared lanes with |E_s(t) − f_s·t| < 1,
so every batch holds ⌊w_s·B⌋ or ⌈w_s·B⌉ samples of s and the first t batches
hold C_s(t) = q_s·t + E_s(t), within 1 of w_s·B·t: exactness is per global
batch, the unit a training step consumes. Inside a batch the lanes sit at
fixed columns (what keeps each rank's share of each source steady and its
reads local), so a prefix ending mid-batch is only near its share (at most
2.01 off in 3000 random mixtures; the tests bound it by 3). The schedule repeats every T = A / gcd(A, B) batches, A
being the weights' common denominator, and is stored for one period:
O(T × sources) bits, independent of the run's length; any batch is computed
directly.

Each source is read through its own epoch order (the `EpochGeometry` of
`geometry.py`) with G_s = q_s + [f_s > 0] columns: dedicated lane i is the
source's column i at source batch t, the shared lane its last column at
source batch E_s(t). Lanes are spread evenly over the B columns (each
prefix of columns holds each kind of lane within 1 of its share), so the
ranks — contiguous ranges of columns — get near-equal shares of every
source, and a source's columns, hence its partitions and blocks, divide
among the ranks as a single dataset's do. The layout depends only on
the weights and B: identical for every world size and number of workers.

Pfair scheduling and PD²: Baruah et al., "Proportionate progress" (1996);
Anderson & Srinivasan, "Mixed Pfair/ERfair scheduling" (2004).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from fastload.errors import ConfigError

__all__ = ["MixtureLayout", "exact_weights", "MAX_PERIOD"]

# The shared-lane schedule is stored for one period; weights whose period would be longer are refused.
MAX_PERIOD = 1 << 16


def exact_weights(weights: dict[str, object]) -> dict[str, Fraction]:
    """{name: weight} as exact fractions summing to 1.

    A float is read as the simplest fraction that rounds to it (0.1 as 1/10,
    1/3 as 1/3); ints and Fractions are exact. Zero weights are allowed
    (the source is not read); negative, non-finite or non-numeric ones are not.
    """
    if not weights:
        raise ConfigError("a mixture needs at least one source")
    exact = {}
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float, Fraction)):
            raise ConfigError(f"the weight of source {name!r} must be a number, found {weight!r}")
        if isinstance(weight, float) and not math.isfinite(weight):
            raise ConfigError(f"the weight of source {name!r} must be finite, found {weight!r}")
        if weight < 0:
            raise ConfigError(f"the weight of source {name!r} is negative ({weight!r}); weights are proportions, 0 or more")
        fraction = Fraction(weight)
        if isinstance(weight, float):
            simple = fraction.limit_denominator(1_000_000)
            fraction = simple if float(simple) == weight else fraction
        exact[name] = fraction
    total = sum(exact.values())
    if total == 0:
        raise ConfigError(f"every weight of the mixture is 0 ({', '.join(exact)}); give at least one source a positive weight")
    return {name: w / total for name, w in exact.items()}


class MixtureLayout:
    """The lanes of a mixture of `len(weights)` sources (exact fractions summing to 1) in batches of B columns."""

    def __init__(self, weights: list[Fraction], global_batch_size: int):
        if type(global_batch_size) is not int or global_batch_size < 1:
            raise ConfigError(f"the global batch size must be a positive integer, found {global_batch_size!r}")
        B = self.global_batch_size = global_batch_size
        self.weights = [Fraction(w) for w in weights]
        if sum(self.weights) != 1 or any(w < 0 for w in self.weights):
            raise ConfigError("mixture weights must be non-negative fractions summing to 1 (see exact_weights)")
        k = self.num_sources = len(self.weights)
        shares = [w * B for w in self.weights]
        self.dedicated = np.array([math.floor(x) for x in shares], np.int64)  # q_s
        fractional = [x - math.floor(x) for x in shares]  # f_s
        self.num_shared = B - int(self.dedicated.sum())  # F
        denominator = math.lcm(*(f.denominator for f in fractional))
        self.period = denominator  # T: after T batches every source has had exactly f_s·T shared lanes
        if self.period > MAX_PERIOD:
            raise ConfigError(
                f"these weights repeat only every {self.period:,} batches of {B} (more than {MAX_PERIOD:,}); "
                "use weights with fewer digits, e.g. ratios of small integers such as 6:3:1"
            )
        self._numerators = np.array([f.numerator * (denominator // f.denominator) for f in fractional], np.int64)  # f_s = n_s / T
        self.source_columns = self.dedicated + (self._numerators > 0)  # G_s
        self._shared = _pfair_schedule(self._numerators, self.period, self.num_shared)  # (T, k) bool
        # E_s at the start of each batch of the period, and per period.
        self._extras_before = np.vstack([np.zeros((1, k), np.int64), np.cumsum(self._shared, axis=0)])
        self._lane_kind = _spread_lanes(self.weights, self.dedicated, self.num_shared)  # (B,) source id, or k for shared
        self._lane_index = np.zeros(B, np.int64)  # the source column of a dedicated lane; the index of a shared lane
        for kind in range(k + 1):
            mine = self._lane_kind == kind
            self._lane_index[mine] = np.arange(int(mine.sum()))
        self._shared_columns = np.flatnonzero(self._lane_kind == k)
        dedicated_lane = np.eye(k + 1, dtype=np.int64)[self._lane_kind][:, :k]
        self._dedicated_before = np.vstack([np.zeros((1, k), np.int64), np.cumsum(dedicated_lane, axis=0)])  # (B + 1, k)
        self._common = math.lcm(*(w.denominator for w in self.weights))
        self._owners: dict[int, np.ndarray] = {}  # place in the period -> the source of each shared lane
        self._check_lags()

    # -- counts ----------------------------------------------------------------------

    def shared_count(self, batch: int) -> np.ndarray:
        """E_s(batch): shared lanes each source had in batches [0, batch), as (k,) int64."""
        whole, within = divmod(batch, self.period)
        return whole * self._numerators + self._extras_before[within]

    def delivered(self, batch: int) -> np.ndarray:
        """C_s(batch): samples of each source in batches [0, batch), as (k,) int64."""
        return batch * self.dedicated + self.shared_count(batch)

    def batch_counts(self, batch: int) -> np.ndarray:
        """Samples of each source in batch `batch`: ⌊w_s·B⌋ or ⌈w_s·B⌉."""
        return self.dedicated + self._shared[batch % self.period]

    # -- columns ---------------------------------------------------------------------

    def columns(self, batch: int, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For columns [lo, hi) of global batch `batch`: (source, source column, source batch), each (hi − lo,) int64.

        Source batch b at source column c means position b·G_s + c of the
        source's own order (its epochs laid end to end: pass b // num_batches).
        """
        hi = self.global_batch_size if hi is None else hi
        kind = self._lane_kind[lo:hi]
        index = self._lane_index[lo:hi]
        source = kind.copy()
        column = index.copy()
        source_batch = np.full(hi - lo, batch, np.int64)
        shared = np.flatnonzero(kind == self.num_sources)
        if len(shared):
            owner = self._shared_owners(batch)[index[shared]]
            source[shared] = owner
            column[shared] = self.dedicated[owner]  # the source's last column
            source_batch[shared] = self.shared_count(batch)[owner]
        return source, column, source_batch

    def _shared_owners(self, batch: int) -> np.ndarray:
        """The source of each shared lane of `batch`, in column order.

        Which F sources get one is the schedule's; in which shared lane each
        goes is free, and chosen to keep prefixes inside the batch close to
        the weights: lane by lane, the chosen source furthest behind its share.
        Every source's lag repeats with the period, so the choice does too: it
        is made once per place in the period.
        """
        place = batch % self.period
        owners = self._owners.get(place)
        if owners is None:
            owners = self._owners[place] = self._choose_owners(place)
        return owners

    def _choose_owners(self, batch: int) -> np.ndarray:
        chosen = np.flatnonzero(self._shared[batch % self.period])
        if len(chosen) <= 1:
            return chosen
        B, k = self.global_batch_size, self.num_sources
        numerators = np.array([w.numerator * (self._common // w.denominator) for w in self.weights], np.int64)  # w_s = num / common
        delivered = self.delivered(batch) * self._common  # scaled by the common denominator: exact integers
        start = batch * B
        owners = np.empty(len(chosen), np.int64)
        remaining = list(chosen)
        placed = np.zeros(k, np.int64)
        for lane, column in enumerate(self._shared_columns):
            before = self._dedicated_before[column]  # dedicated lanes of each source left of this column
            n = start + column + 1
            behind = numerators * n - (delivered + (before + placed) * self._common)
            best = max(remaining, key=lambda s: (behind[s], -s))
            owners[lane] = best
            placed[best] += 1
            remaining.remove(best)
        return owners

    # -- checks ----------------------------------------------------------------------

    def _check_lags(self) -> None:
        """The schedule's promise, checked over the whole period: |E_s(t) − f_s·t| < 1 and E_s(T) = f_s·T."""
        t = np.arange(self.period + 1, dtype=np.int64)[:, None]
        lag = self._extras_before * self.period - self._numerators[None, :] * t  # (E − f·t)·T
        if np.abs(lag).max(initial=0) >= self.period or not np.array_equal(self._extras_before[-1], self._numerators):
            raise AssertionError("fastload bug: the mixture's shared-lane schedule breaks its lag bound; please report the weights and batch size")


def _pfair_schedule(numerators: np.ndarray, period: int, processors: int) -> np.ndarray:
    """A PD² schedule: (period, k) booleans, `processors` True per row, task s True in numerators[s] rows
    with |scheduled(t) − t·n_s/period| < 1 at every t. PD² is optimal when the weights sum to the processors."""
    k = len(numerators)
    out = np.zeros((period, k), bool)
    if processors == 0:
        return out
    T = period
    tasks = [s for s in range(k) if numerators[s] > 0]
    done = dict.fromkeys(tasks, 0)  # subtasks scheduled so far

    def release(s: int, i: int) -> int:  # of subtask i (1-based): ⌊(i − 1)/f⌋
        return (i - 1) * T // int(numerators[s])

    def priority(s: int, i: int) -> tuple:
        n = int(numerators[s])
        deadline = -(-i * T // n)  # ⌈i/f⌉
        successor = 1 if (i * T) % n else 0  # windows of i and i + 1 overlap
        group = 0
        if 2 * n >= T and n < T:  # a heavy task: its group deadline, ⌈⌈d·(1 − f)⌉ / (1 − f)⌉
            slack = T - n
            group = -(-(-(-deadline * slack // T)) * T // slack)
        return (deadline, -successor, -group, s)

    for t in range(T):
        eligible = [s for s in tasks if done[s] < numerators[s] and release(s, done[s] + 1) <= t]
        if len(eligible) < processors:
            raise AssertionError("fastload bug: the mixture's shared-lane schedule ran out of eligible sources")
        eligible.sort(key=lambda s: priority(s, done[s] + 1))
        for s in eligible[:processors]:
            out[t, s] = True
            done[s] += 1
    return out


def _spread_lanes(weights: list[Fraction], dedicated: np.ndarray, num_shared: int) -> np.ndarray:
    """The lane of each of the B columns: a source id (dedicated) or k (shared), spread so that a
    batch's prefixes follow the weights: column by column, the source furthest behind w_s·(m + 1)
    takes its next dedicated lane, or a shared lane once its dedicated ones are placed (its share
    of the shared lanes is then f_s·B/F of each, counted as such)."""
    k, B = len(weights), int(dedicated.sum()) + num_shared
    common = math.lcm(*(w.denominator for w in weights))
    rate = np.array([w.numerator * (common // w.denominator) for w in weights], np.int64) * B  # w_s·B·common
    fraction = rate - dedicated * common  # f_s·common
    placed = np.zeros(k, np.int64)  # dedicated lanes placed, ·common
    credit = np.zeros(k, np.int64)  # shared lanes' expected share, ·common·F
    out = np.empty(B, np.int64)
    shared_left = num_shared
    F = max(num_shared, 1)
    for m in range(B):
        behind = (rate * (m + 1)) * F - (placed * common * B) * F - credit * B
        order = np.argsort(-behind, kind="stable")
        for s in order:
            if placed[s] < dedicated[s]:
                out[m] = s
                placed[s] += 1
                break
            if shared_left and fraction[s] > 0:
                out[m] = k
                shared_left -= 1
                credit += fraction  # a shared lane holds source s with probability f_s / F
                break
        else:
            out[m] = k
            shared_left -= 1
            credit += fraction
    return out
