"""`MixturePlan`: what fills every column of every global batch of a weighted mixture of sources.

The columns come from `MixtureLayout` (`mixing.py`): in each global batch,
source s has G_s lanes (q_s dedicated, and one shared when f_s > 0). Each
source is read through its own epoch order — a `block_window` plan with G
columns, keyed by the mixture's seed and the source's name — pass after
pass; lane c reads the plan's column c, one source batch at a time, so
column c of a source has a counter K_c: the next (pass, batch) it reads is
(K_c // n, K_c % n), n being the plan's batches per pass. A pass drops the
last incomplete source batch (fewer than G rows; different rows every pass,
as with `drop_last`). The shared lane reads its column more slowly than the
dedicated ones read theirs (f_s < 1 per batch), so it may lag some passes.

A schedule changes the weights at given global batches (stages). A source
whose lane count stays the same keeps reading column by column. One whose
lane count changes first reads what it left unread of the passes it has
started — per column, from K_c to the end of the pass its furthest column is
in — in order (pass, then position), through whatever lanes it now has;
then its next pass begins in the new geometry. So across a weight change no
row of a pass is read twice or skipped; only while finishing that remainder
are a source's reads not rank-local. Everything is a closed form of the
batch index inside a stage; the state of every source at each stage's start
is computed once, by walking the stages (O(stages × columns)).

A source's order is any epoch plan with `num_batches` and batches of
`columns` rows: the row sampler's (`MixturePlan.of_rows`: `columns()` gives
(source, row) pairs) or the packer's (`fastload.packing`: `pieces()` says
which rows of which source batch go to which columns). Nothing is
materialised per sample.
"""

from __future__ import annotations

import bisect
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

# What happens when a source has been read whole: read it again in a fresh order (upsampling), end the
# run, or drop it and share its columns among the others in proportion to their weights.
EXHAUSTION_POLICIES = ("repeat", "stop", "drop")


def source_seed(seed: int, name: str) -> int:
    """The seed of one source's order: the mixture's seed and the source's name, so adding or
    reordering sources leaves every other source's order unchanged."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Piece(NamedTuple):
    """Source `source`'s rows [lo, hi) of batch `batch` of its pass `epoch` (a plan with `columns` columns), bound for the output columns `out`."""

    source: int
    epoch: int
    batch: int
    lo: int
    hi: int
    out: np.ndarray  # (hi - lo,) columns, counted from the start of the requested range
    columns: int


@dataclasses.dataclass
class _Reading:
    """Where one source stands: the geometry its counters refer to, and each column's counter."""

    columns: int  # G of the passes in progress (0: nothing read yet)
    counters: np.ndarray  # (G,) absolute source batch each column reads next


@dataclasses.dataclass
class _Segment:
    """How one source is read during one stage."""

    start: _Reading  # at the stage's start
    columns: int  # G in this stage's layout (0: not read in this stage)
    backlog: int  # rows left in the passes started under another geometry, read first, in order
    top: int  # the first pass of this stage's geometry (when there is a backlog)
    lane_start: int  # stage batch from which the lanes read column by column
    lane_base: np.ndarray  # (columns,) counter of each lane at stage batch 0 of its lane clock (u, or E_s(u))
    linear_new: int  # rows of pass `top` read in order in the batch where the backlog ends


class MixturePlan:
    """The order of a mixture.

    weights: {name: exact fraction}, summing to 1 (see `mixing.exact_weights`).
    plan_of: plan_of(source index, pass, columns, options) -> that source's
        epoch plan with batches of `columns` rows (see `of_rows`).
    describe: describe(source index) -> how many rows it holds, for errors.
    options: the shuffle of every source (`order`, `seed`, `window_blocks`, `num_partitions`).
    on_exhausted: {name: "repeat" | "stop"} (default "repeat").
    schedule: [(first global batch, {name: exact fraction}), ...]: the weights
        from that batch on (stages; the first stage, from batch 0, is `weights`).
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
        on_exhausted: dict[str, str] | None = None, names: list[str] | None = None, schedule: list | None = None,
    ):
        if names is not None and names != list(weights):
            raise ConfigError(f"the mixture's sources ({', '.join(names)}) and weights ({', '.join(weights)}) must name the same sources")
        self.names = list(weights)
        self._plan_of, self._describe = plan_of, describe
        self.options, self.global_batch_size = options, global_batch_size
        stages = [(0, dict(weights)), *((start, dict(stage)) for start, stage in (schedule or []))]
        for (a, _), (b, stage) in zip(stages, stages[1:]):
            if type(b) is not int or b <= a:
                raise ConfigError(f"schedule stages must start at increasing global batches after 0, found {b!r} after {a!r}")
            if list(stage) != self.names:
                raise ConfigError(f"the stage from batch {b} weights {', '.join(stage)}; every stage must weight the sources {', '.join(self.names)}")
        self.on_exhausted = {name: "repeat" for name in self.names}
        for name, policy in (on_exhausted or {}).items():
            if name not in weights:
                raise ConfigError(f"on_exhausted names {name!r}, which is not a source of the mixture ({', '.join(self.names)})")
            if policy not in EXHAUSTION_POLICIES:
                raise ConfigError(f"source {name!r}: on_exhausted must be one of {EXHAUSTION_POLICIES}, found {policy!r}")
            self.on_exhausted[name] = policy
        self.source_options = [dataclasses.replace(options, seed=source_seed(options.seed, n), drop_last=True) for n in self.names]
        self._plans: dict[tuple[int, int, int], EpochPlan] = {}
        self._per_pass: dict[tuple[int, int], int] = {}  # (source, columns) -> source batches per pass
        self._templates: dict[tuple, list] = {}  # (stage, batch in the period, lo, hi) -> runs (see pieces)
        self._clocks: dict[tuple, tuple] = {}  # the same keys -> each piece's clock (see template_clocks)
        self.num_batches = None  # None: the mixture never ends
        self._set_stages(stages)
        self._drop_exhausted(stages)
        stop = self._first_second_pass([s for s, name in enumerate(self.names) if self.on_exhausted[name] == "stop"])
        self.num_batches = stop if self.num_batches is None else (self.num_batches if stop is None else min(stop, self.num_batches))

    def _set_stages(self, stages: list[tuple[int, dict]]) -> None:
        self.stage_starts = [start for start, _ in stages]
        self.stage_weights = [stage for _, stage in stages]
        self.layouts = [MixtureLayout([stage[n] for n in self.names], self.global_batch_size) for _, stage in stages]
        self.layout = self.layouts[0]
        for layout in self.layouts:
            for s in range(len(self.names)):
                if layout.source_columns[s]:
                    self.batches(s, int(layout.source_columns[s]))  # refuses a source too small for its columns, now
        self.batches_per_pass = np.array([self.batches(s, int(G)) if G else 0 for s, G in enumerate(self.layout.source_columns)], np.int64)
        self._segments = self._walk_stages()  # [stage][source]
        # per stage, the first stage batch from which every source reads column by column (batches come from templates)
        self._templates_from = [max(seg.lane_start for seg in stage) for stage in self._segments]

    def _drop_exhausted(self, stages: list[tuple[int, dict]]) -> None:
        """Sources set to "drop": at the first batch that would read one a second time, a stage begins
        without it, the others keeping their proportions (and so on, one source at a time)."""
        dropping = [s for s, name in enumerate(self.names) if self.on_exhausted[name] == "drop"]
        while dropping:
            batch = self._first_second_pass(dropping)
            if batch is None:
                return
            gone = [s for s in dropping if self._reads_second_pass(batch, [s])]
            dropping = [s for s in dropping if s not in gone]
            k = int(np.searchsorted([start for start, _ in stages], batch, side="right")) - 1
            if stages[k][0] != batch:
                stages.insert(k + 1, (batch, dict(stages[k][1])))
                k += 1
            for i in range(k, len(stages)):
                start, stage = stages[i]
                kept = {name: (0 if self.names.index(name) in gone else w) for name, w in stage.items()}
                if not any(kept.values()):  # nothing left to read from this stage on: the mixture ends
                    del stages[i:]
                    self.num_batches = start if self.num_batches is None else min(self.num_batches, start)
                    break
                total = sum(kept.values())
                stages[i] = (start, {name: w / total for name, w in kept.items()})
            self._set_stages(stages)

    # -- sources' plans ----------------------------------------------------------------

    def batches(self, s: int, columns: int) -> int:
        """Source batches per pass of source `s` read with `columns` columns."""
        key = (s, columns)
        n = self._per_pass.get(key)
        if n is None:
            try:
                n = self.plan(s, 0, columns).num_batches
            except ConfigError:  # the source's own plan refused: less than one batch of its columns
                n = 0
            if n == 0:
                raise ConfigError(
                    f"source {self.names[s]!r} holds {self._describe(s)}, less than the {columns} rows (at most) it gives a global "
                    f"batch of {self.global_batch_size}; lower its weight or the batch size"
                )
            self._per_pass[key] = n
        return n

    def plan(self, source: int, epoch: int, columns: int | None = None):
        """Source `source`'s plan of its pass `epoch`, read with `columns` columns (default: the first stage's)."""
        columns = int(self.layout.source_columns[source]) if columns is None else columns
        key = (source, epoch, columns)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 4 * len(self.names):  # a source has a pass or two live (three across a weight change)
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[key] = self._plan_of(source, epoch, columns, self.source_options[source])
        return plan

    # -- stages ------------------------------------------------------------------------

    def _stage_of(self, batch: int) -> int:
        return bisect.bisect_right(self.stage_starts, batch) - 1  # a list of ints: bisect, not numpy (asked every batch)

    def _stage_length(self, k: int) -> int | None:
        return self.stage_starts[k + 1] - self.stage_starts[k] if k + 1 < len(self.stage_starts) else None

    def _walk_stages(self) -> list[list[_Segment]]:
        reading = [_Reading(0, np.zeros(0, np.int64)) for _ in self.names]
        segments = []
        for k, layout in enumerate(self.layouts):
            stage = [self._segment(s, layout, reading[s]) for s in range(len(self.names))]
            segments.append(stage)
            length = self._stage_length(k)
            if length is not None:
                reading = [self._reading_after(seg, layout, s, length) for s, seg in enumerate(stage)]
        return segments

    def _segment(self, s: int, layout: MixtureLayout, start: _Reading) -> _Segment:
        G = int(layout.source_columns[s])
        if G == 0:
            return _Segment(start, 0, 0, 0, 0, np.zeros(0, np.int64), 0)
        dedicated = int(layout.dedicated[s])
        if start.columns in (0, G):  # the same geometry (or a first read): column by column from the counters
            counters = start.counters if start.columns == G else np.zeros(G, np.int64)
            return _Segment(start, G, 0, 0, 0, counters.copy(), 0)
        n_old = self.batches(s, start.columns)
        top = int(np.max(-(-start.counters // n_old)))  # passes begun under the old geometry run to the end of this one
        backlog = int((top * n_old - start.counters).sum())
        linear_new, lane_start = 0, 0
        if backlog:
            # The batch in which the backlog runs out; the rest of its rows of this source read pass `top` in order.
            last = _first_true(lambda u: int(layout.delivered(u + 1)[s]) >= backlog)
            linear_new, lane_start = int(layout.delivered(last + 1)[s]) - backlog, last + 1
        n_new = self.batches(s, G)
        counters = top * n_new + (np.arange(G) < linear_new)
        clock = np.full(G, lane_start, np.int64)  # dedicated lanes count batches; the shared lane counts its turns
        if G > dedicated:
            clock[dedicated:] = int(layout.shared_count(lane_start)[s])
        return _Segment(start, G, backlog, top, lane_start, counters - clock, linear_new)

    def _reading_after(self, seg: _Segment, layout: MixtureLayout, s: int, u: int) -> _Reading:
        """Where source `s` stands after `u` batches of the stage `seg` describes."""
        if seg.columns == 0:
            return seg.start
        if u >= seg.lane_start:
            return _Reading(seg.columns, seg.lane_base + self._clock(layout, s, seg.columns, u))
        # still in the backlog: every column moves past what the first `read` rows of it covered
        read = int(layout.delivered(u)[s])
        start = seg.start
        n = self.batches(s, start.columns)
        if read == 0:
            return start
        epoch, position = self._backlog_positions(seg, s, np.array([read - 1]))
        last = int(epoch[0]) * n * start.columns + int(position[0])  # absolute position of the last row read
        columns = np.arange(start.columns)
        # per column, the first absolute source batch whose position comes after `last`
        after = -(-(last + 1 - columns) // start.columns)
        return _Reading(start.columns, np.maximum(start.counters, after))

    def _clock(self, layout: MixtureLayout, s: int, G: int, u: int) -> np.ndarray:
        clock = np.full(G, u, np.int64)
        dedicated = int(layout.dedicated[s])
        if G > dedicated:
            clock[dedicated:] = int(layout.shared_count(u)[s])
        return clock

    def _backlog_positions(self, seg: _Segment, s: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pass, position in the pass) of backlog rows `index` (0-based, in reading order) of source `s`."""
        start = seg.start
        G, n = start.columns, self.batches(s, start.columns)
        first = int(start.counters.min()) // n
        epochs = np.arange(first, seg.top, dtype=np.int64)
        thresholds = np.clip(start.counters[None, :] - epochs[:, None] * n, 0, n)  # (passes, G) first unread batch per column
        per_pass = (n - thresholds).sum(axis=1)
        cumulative = np.concatenate([[0], np.cumsum(per_pass)])
        which = np.searchsorted(cumulative, index, side="right") - 1
        rank = index - cumulative[which]
        t = thresholds[which]  # (len(index), G)
        column = np.arange(G)
        # the smallest x with more than `rank` unread positions below it; the row sits at x - 1
        lo, hi = np.zeros(len(index), np.int64), np.full(len(index), n * G, np.int64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            below = np.clip(-(-(mid[:, None] - column[None, :]) // G), 0, n)  # positions k·G + c < mid, per column
            unread = np.clip(below - t, 0, None).sum(axis=1)
            more = unread > rank
            hi = np.where(more, mid, hi)
            lo = np.where(more, lo, mid + 1)
        return epochs[which], lo - 1

    # -- batches -----------------------------------------------------------------------

    def _slots(self, batch: int) -> tuple:
        """Every column of global batch `batch`: (source, pass, source batch, source column, its plan's columns)."""
        if batch < 0 or (self.num_batches is not None and batch >= self.num_batches):
            raise IndexError(f"batch {batch} is past the end of the mixture ({self.num_batches} batches: a source set to 'stop' is exhausted)")
        k = self._stage_of(batch)
        layout, u = self.layouts[k], batch - self.stage_starts[k]
        source, lane, clock = layout.columns(u)
        B = len(source)
        epoch, within, column, columns = (np.empty(B, np.int64) for _ in range(4))
        delivered = layout.delivered(u)
        for s in np.unique(source).tolist():
            seg = self._segments[k][s]
            mine = np.flatnonzero(source == s)
            G = seg.columns
            if u >= seg.lane_start:  # column by column
                absolute = seg.lane_base[lane[mine]] + clock[mine]
                n = self.batches(s, G)
                epoch[mine], within[mine] = np.divmod(absolute, n)
                column[mine], columns[mine] = lane[mine], G
                continue
            index = int(delivered[s]) + np.arange(len(mine))  # the rows of this stage, in column order
            old = index < seg.backlog
            if old.any():
                e, position = self._backlog_positions(seg, s, index[old])
                G_old = seg.start.columns
                epoch[mine[old]], within[mine[old]], column[mine[old]] = e, position // G_old, position % G_old
                columns[mine[old]] = G_old
            if (~old).any():  # the backlog ends in this batch: the next pass's first positions, in order
                fresh = index[~old] - seg.backlog
                epoch[mine[~old]], within[mine[~old]], column[mine[~old]], columns[mine[~old]] = seg.top, 0, fresh, G
        return source, epoch, within, column, columns

    def pieces(self, batch: int, lo: int, hi: int) -> list[Piece]:
        """Columns [lo, hi) of global batch `batch` as runs of consecutive rows of source batches."""
        return self.arranged_pieces(batch, lo, hi)[1]

    def arranged_pieces(self, batch: int, lo: int, hi: int) -> tuple[tuple | None, list[Piece]]:
        """`pieces`, and what fixes them all but their passes and source batches: the key of the template they
        come from, the same for every batch at that place of the layout's period (None: not from a template).
        Pieces of one template key and the same passes differ only in `batch`, so a caller can keep what it
        derives from them (`PackedMixture` keeps where their rows start and go)."""
        if batch < 0 or (self.num_batches is not None and batch >= self.num_batches):
            raise IndexError(f"batch {batch} is past the end of the mixture ({self.num_batches} batches: a source set to 'stop' is exhausted)")
        k = self._stage_of(batch)
        u = batch - self.stage_starts[k]
        if u >= self._templates_from[k]:  # every source reads column by column: a periodic template
            key = (k, u % self.layouts[k].period, lo, hi)
            return key, self._pieces_from_template(key, u)
        return None, self._grouped_pieces(batch, lo, hi)

    def template_clocks(self, batch: int, lo: int, hi: int) -> tuple[tuple, int, tuple] | None:
        """What `arranged_pieces` says of a batch from a template, as arithmetic in the batch and without
        making its pieces: (the template's key, m, clocks), where piece p (in `arranged_pieces`' order), with
        (a, c, n) = clocks[p], reads the source's absolute batch x = a + m·c: pass x // n, source batch x % n.
        The clocks are fixed per template key and m counts the layout's periods, so a caller keeps what it
        derives from them for every m over which no piece changes pass (`PackedMixture` keeps where the rows
        start as start + m·step). None when the batch comes from no template (then ask `arranged_pieces`).
        Asked every batch."""
        if batch < 0 or (self.num_batches is not None and batch >= self.num_batches):
            raise IndexError(f"batch {batch} is past the end of the mixture ({self.num_batches} batches: a source set to 'stop' is exhausted)")
        k = self._stage_of(batch)
        u = batch - self.stage_starts[k]
        if u < self._templates_from[k]:
            return None
        period = self.layouts[k].period
        key = (k, u % period, lo, hi)
        clocks = self._clocks.get(key)
        if clocks is None:
            if len(self._clocks) >= 4096:
                self._clocks.pop(next(iter(self._clocks)))
            # as _pieces_from_template: a shared lane's clock advances per_period a period from `before`, a dedicated one by one a batch
            clocks = self._clocks[key] = tuple((base + before, per_period, n) if is_shared else (base + key[1], period, n)
                                               for _, _, _, _, is_shared, base, _, n, per_period, before in self._template_of(key, u))
        return key, u // period, clocks

    def _template_of(self, key: tuple, u: int) -> list[tuple]:
        """The runs of the template `key` = (k, u % period, lo, hi) (see `_template`), kept."""
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= 4096:
                self._templates.pop(next(iter(self._templates)))
            k, _, lo, hi = key
            template = self._templates[key] = self._template(k, u, lo, hi)
        return template

    def _pieces_from_template(self, key: tuple, u: int) -> list[Piece]:
        """The runs of batch u of stage k, from the runs of its place in the layout's period (which lanes,
        which sources, which lane clock; `key` = (k, u % period, lo, hi)) plus this batch's clocks: the
        common case costs no grouping."""
        layout = self.layouts[key[0]]
        periods = u // layout.period
        pieces = []
        for s, lane_lo, lane_hi, out, is_shared, base, G, n, per_period, before in self._template_of(key, u):
            # the shared lane's clock is layout.shared_count(u)[s], here in Python ints (this runs every batch)
            absolute = base + (periods * per_period + before if is_shared else u)
            epoch, within = divmod(absolute, n)
            pieces.append(Piece(s, epoch, within, lane_lo, lane_hi, out, G))
        return pieces

    def _template(self, k: int, u: int, lo: int, hi: int) -> list[tuple]:
        layout, segments = self.layouts[k], self._segments[k]
        source, lane, _ = layout.columns(u, lo, hi)
        # shared_count(u) = u // period · (shared lanes per period) + (shared lanes before u's place in the period)
        per_period = (layout.shared_count(layout.period) - layout.shared_count(0)).tolist()
        before = layout.shared_count(u % layout.period).tolist()
        runs = []
        for s in np.unique(source).tolist():
            seg = segments[s]
            mine = np.flatnonzero(source == s)
            lanes = lane[mine]
            order = np.argsort(lanes, kind="stable")
            mine, lanes = mine[order], lanes[order]
            dedicated = int(layout.dedicated[s])
            base = seg.lane_base[lanes]
            is_shared = lanes >= dedicated
            # a run: consecutive lanes with one lane clock and one base (hence one source batch)
            cut = np.flatnonzero((np.diff(lanes) != 1) | (np.diff(base) != 0) | (np.diff(is_shared) != 0)) + 1
            n = self.batches(s, seg.columns)
            for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(lanes)]])):
                runs.append((s, int(lanes[a]), int(lanes[b - 1]) + 1, mine[a:b], bool(is_shared[a]), int(base[a]), seg.columns, n, per_period[s], before[s]))
        return runs

    def _grouped_pieces(self, batch: int, lo: int, hi: int) -> list[Piece]:
        source, epoch, within, column, columns = (a[lo:hi] for a in self._slots(batch))
        key = np.stack([source, epoch, columns, within, column])
        order = np.lexsort(key[::-1])
        pieces = []
        start = 0
        for i in range(1, len(order) + 1):
            if i == len(order) or tuple(key[:4, order[i]]) != tuple(key[:4, order[start]]) or column[order[i]] != column[order[i - 1]] + 1:
                first = order[start]
                pieces.append(Piece(int(source[first]), int(epoch[first]), int(within[first]), int(column[first]),
                                    int(column[order[i - 1]]) + 1, order[start:i], int(columns[first])))
                start = i
        return pieces

    def columns(self, batch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(source index, row of that source) of columns [lo, hi) of global batch `batch` (row sources)."""
        source, epoch, within, column, columns = (a[lo:hi] for a in self._slots(batch))
        rows = np.empty(len(source), np.int64)
        for s, e, G in sorted(set(zip(source.tolist(), epoch.tolist(), columns.tolist()))):
            mine = (source == s) & (epoch == e) & (columns == G)
            rows[mine] = self.plan(s, e, G).samples_at(within[mine] * G + column[mine])
        return source, rows

    def rank_batch(self, batch: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
        share = self.global_batch_size // world_size
        return self.columns(batch, rank * share, (rank + 1) * share)

    # -- accounting --------------------------------------------------------------------

    def describe_sources(self) -> dict[str, dict]:
        """What fixes each source's share of the order: its columns and source batches per pass, stage by stage."""
        return {
            name: {
                "columns": [int(layout.source_columns[s]) for layout in self.layouts],
                "batches_per_pass": [self.batches(s, int(layout.source_columns[s])) if layout.source_columns[s] else 0 for layout in self.layouts],
            }
            for s, name in enumerate(self.names)
        }

    def consumed(self, batch: int) -> dict[str, dict]:
        """Per source, what the first `batch` global batches read: rows, and whole passes completed
        (every column of the source through that pass)."""
        k = self._stage_of(batch)
        rows = sum((layout.delivered(self._stage_length(i)) for i, layout in enumerate(self.layouts[:k])), np.zeros(len(self.names), np.int64))
        u = batch - self.stage_starts[k]
        rows = rows + self.layouts[k].delivered(u)
        out = {}
        for s, name in enumerate(self.names):
            reading = self._reading_after(self._segments[k][s], self.layouts[k], s, u)
            passes = int(reading.counters.min()) // self.batches(s, reading.columns) if reading.columns else 0
            out[name] = {"rows": int(rows[s]), "passes": passes}
        return out

    def _reads_second_pass(self, batch: int, sources: list[int]) -> bool:
        """Whether batches [0, batch] read some row of one of `sources` a second time (monotone in `batch`)."""
        begun = self._passes_begun(batch + 1)
        return any(begun[s] >= 2 for s in sources)

    def _passes_begun(self, batch: int) -> list[int]:
        k = self._stage_of(batch)
        u = batch - self.stage_starts[k]
        begun = []
        for s in range(len(self.names)):
            reading = self._reading_after(self._segments[k][s], self.layouts[k], s, u)
            begun.append(int(np.max(-(-reading.counters // self.batches(s, reading.columns)))) if reading.columns else 0)
        return begun

    def _first_second_pass(self, sources: list[int]) -> int | None:
        """The first global batch that would read a row of one of `sources` a second time (None: never)."""
        if not sources:
            return None
        for k in range(len(self.layouts)):
            first, length = self.stage_starts[k], self._stage_length(k)
            if self.num_batches is not None and first >= self.num_batches:
                return None
            if length is None:
                if not any(self.layouts[k].source_columns[s] for s in sources):
                    return None
                length = 1
                while not self._reads_second_pass(first + length - 1, sources):
                    length *= 2
            if self._reads_second_pass(first + length - 1, sources):
                return first + _first_true(lambda u: self._reads_second_pass(first + u, sources), limit=length)
        return None

    def repetitions(self, batch: int) -> dict[str, int]:
        """Per source, the most times any of its rows has been read in the first `batch` global batches (the passes begun)."""
        return dict(zip(self.names, self._passes_begun(batch)))


def _transpose(pieces: list[Piece]) -> tuple[tuple, list]:
    return tuple([piece.epoch for piece in pieces]), [piece.batch for piece in pieces]


def _first_true(predicate: Callable[[int], bool], *, limit: int | None = None) -> int:
    """The smallest u >= 0 where a monotone `predicate` holds; it must hold at `limit` - 1 when a limit is given."""
    hi = 1
    while not predicate(hi - 1):  # double until it holds: the answer is then in [hi // 2, hi - 1]
        if limit is not None and hi >= limit:
            break
        hi = min(2 * hi, limit) if limit is not None else 2 * hi
    lo, hi = hi // 2, hi - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
