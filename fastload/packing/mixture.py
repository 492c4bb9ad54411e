"""`PackedMixture`: packed language-model batches from a weighted mixture of datasets.

    mix = fastload.Mixture({"web": ("data/web", 0.6), "code": ("data/code", 0.3), "books": ("data/books", 0.1)})
    packed = fastload.PackedDataset(mix, seq_len=1024)        # a PackedMixture
    loader = fastload.DataLoader(packed, batch_size=16, num_workers=2, shuffle=True)
    for batch in loader:    # input_ids, labels, position_ids, document_ids: (16, 1024); source: (16,)
        ...

Each source is packed on its own, as `PackedDataset` packs one dataset,
into rows of seq_len + 1 tokens; the mixture decides which source fills
each row of each global batch (`sampler/mixing.py`): source s fills
⌊w_s·B⌋ or ⌈w_s·B⌉ rows of every batch, and the first t batches hold
within one row of w_s·B·t of its rows. The unit is the packed row, so the
proportions hold for tokens too (every row holds the same number), which is
what a pretraining mixture specifies. `source` says which source filled
each row (its index in `mixture.names`), for per-source losses.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np

from fastload.errors import ConfigError
from fastload.packing.dataset import PackedDataset
from fastload.packing.fill import PackedArrays, can_fill_together, fill_together, load_together_kernel
from fastload.sampler import SamplerOptions
from fastload.sampler.mixture import Mixture
from fastload.sampler.mixture_dataset import MixtureDataset, open_sources, same_ids
from fastload.sampler.mixture_plan import MixturePlan
from fastload.sampler.mixture_sampler import MixtureKey

__all__ = ["PackedMixture"]


class _RowLayout(NamedTuple):
    """The rows of one arrangement of pieces (a template of the period, with its sources' passes), grouped
    by source, then by plan: row i of a batch starts at base[i] + (its piece's source batch) · stride[i]."""

    base: np.ndarray  # (rows,) int64 stream position in source batch 0 of its plan
    stride: np.ndarray  # (rows,) int64 stream positions per source batch
    piece_of_row: np.ndarray  # (rows,) int64 index of its piece
    out_rows: np.ndarray  # (rows,) int64 output row
    source: np.ndarray  # (rows,) int64 the source of each output row, in output order
    fills: list  # [(source's BatchFiller, [(plan, plan_key, a, b)])]: rows [a, b) are of that plan
    parts: list  # the same runs as [(filler, plan, plan_key)], for `fill_together`
    bounds: np.ndarray | None  # (parts + 1,) int64 their rows' bounds; None: sources of other token dtypes, filled one by one
    fillers: list  # [(filler, the plan of its last part)]
    kernel_parts: list  # `fill_together`'s `kept`: the parts' kernel rows, kept from batch to batch


class _TemplateRun(NamedTuple):
    """The batches of one template of the mixture's period, m = first .. last periods in, over which no piece
    changes pass: row i of batch m starts at start[i] + m · step[i], laid out as `layout` says."""

    first: int
    last: int
    start: np.ndarray  # (rows,) int64
    step: np.ndarray  # (rows,) int64
    layout: _RowLayout


class PackedMixture(MixtureDataset):
    """A `Mixture` packed into rows of `seq_len + 1` tokens; arguments as `PackedDataset` (every source
    shares them: one EOS id, one tokenizer). blocks: {source name: block ids} to read only those
    blocks of a source (a split, see `split_blocks`); others read all of theirs."""

    def __init__(self, mixture: Mixture, *, sampling: SamplerOptions | None = None, blocks: dict | None = None, **arguments):
        unknown = set(blocks or {}) - set(mixture.names) if isinstance(mixture, Mixture) else set()
        if unknown:
            raise ConfigError(f"blocks= names {', '.join(sorted(unknown))}, not sources of the mixture ({', '.join(mixture.names)})")
        sources = open_sources(mixture, lambda name, dataset: PackedDataset(dataset, blocks=(blocks or {}).get(name), **arguments))
        super().__init__(mixture, sources, sampling=sampling)
        same_ids(mixture.names, sources)
        _same_tokenizer(mixture.names, sources)
        first = sources[0]
        self.seq_len, self.add_eos, self.eos_id, self.pad_id = first.seq_len, first.add_eos, first.eos_id, first.pad_id
        self.tokens_per_row = self.seq_len + 1
        self._source_plans: dict[tuple, tuple] = {}  # (key but its batch, source, pass, columns) -> (source plan, filler key)
        self._options_ids: dict[SamplerOptions, int] = {}  # a source's shuffle -> a small int naming it in the fillers' keys
        self._layouts: dict[tuple, _RowLayout] = {}  # (key but its batch, first row, template, passes) -> its rows' layout
        self._runs: dict[tuple, _TemplateRun] = {}  # (key but its batch, first row, template) -> its current run of passes

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_source_plans": {}, "_layouts": {}, "_runs": {}}  # plans are rebuilt in each process

    def _new_plan(self, weights, **arguments) -> MixturePlan:
        sources, add_eos = self.sources, self.add_eos

        def plan_of(s: int, epoch: int, columns: int, source_options: SamplerOptions):
            return sources[s].plan(epoch, columns, source_options)

        def describe(s: int) -> str:
            lengths = sources[s].document_lengths()
            return f"{lengths.num_tokens + lengths.num_documents * int(add_eos):,} tokens"

        return MixturePlan(weights, plan_of=plan_of, describe=describe, names=self.mixture.names, **arguments)

    # -- batches -----------------------------------------------------------------------

    def __fastload_batch__(self, key: MixtureKey, allocate, rows: tuple[int, int] | None = None) -> dict:
        """Rank `key.rank`'s rows of global batch `key.batch`, as arrays from `allocate(shape, dtype)`;
        with `rows=(a, b)` only those rows of it are written (see `BatchDataset`).

        Each source writes all its rows of the batch straight into their
        rows of the output, with one kernel call (`BatchFiller.fill_runs`):
        no per-piece arrays, no copy afterwards. Row i starts at
        base[i] + (its piece's source batch) × stride[i], with base, stride
        and where the rows go kept per template of the mixture's period and
        passes of the sources (`_RowLayout`); a template's source batches
        grow by a fixed step a period (`MixturePlan.template_clocks`), so
        that is start[i] + m × step[i] for the batch m periods in, while no
        source changes pass (`_TemplateRun`): a batch computes one
        multiply-add of numpy, and no Python per piece.
        """
        plan, lo, hi = self._plan_of_key(key)
        out = PackedArrays.empty(hi - lo, self.seq_len, allocate)
        source = allocate((hi - lo,), np.int64)
        first, last = (0, hi - lo) if rows is None else rows
        if first >= last:
            # No rows (how the loader sizes slots) still loads the kernel, as PackedDataset does: once, before
            # forking workers, not in each worker (numba's context and the cached kernel: ~0.3 s of CPU each)
            fillers = [source._batch_filler() for source in self.sources]
            if can_fill_together(fillers):
                load_together_kernel(fillers[0], out)
            return {**out.as_dict(), "source": source}
        found = plan.template_clocks(key.batch, lo + first, lo + last)
        if found is None:  # a source finishing passes begun under other weights: no template, nothing kept
            pieces = plan.pieces(key.batch, lo + first, lo + last)
            layout = self._row_layout(plan, key, pieces, first)
            starts = layout.base + np.array([piece.batch for piece in pieces], np.int64)[layout.piece_of_row] * layout.stride
        else:
            template, m, clocks = found
            run = self._runs.get((key[1:], first, template))
            if run is None or not run.first <= m <= run.last:
                run = self._template_run(plan, key, (lo, first, last), template, m, clocks)
            layout = run.layout
            starts = run.start + m * run.step
        if layout.bounds is not None:  # every source in one kernel call
            fill_together(layout.parts, layout.bounds, starts, layout.out_rows, out, fillers=layout.fillers, kept=layout.kernel_parts)
        else:
            for filler, runs in layout.fills:
                filler.fill_runs(runs, starts, layout.out_rows, out)
        source[first:last] = layout.source
        return {**out.as_dict(), "source": source}

    def _template_run(self, plan: MixturePlan, key: MixtureKey, rows: tuple[int, int, int], template: tuple, m: int, clocks: tuple) -> "_TemplateRun":
        """The batches of a template of the period whose pieces read the passes that batch m's read: their layout
        and where their rows start, as start + m·step (see `MixturePlan.template_clocks`). rows = (the rank's
        first column, the first and last row asked for, from it)."""
        lo, first, last = rows
        epochs = tuple((a + m * c) // n for a, c, n in clocks)
        lookup = (key[1:], first, template, epochs)
        layout = self._layouts.get(lookup)
        if layout is None:
            if len(self._layouts) >= 4096:  # the period's templates times the passes live: forget the oldest
                self._layouts.pop(next(iter(self._layouts)))
            layout = self._layouts[lookup] = self._row_layout(plan, key, plan.pieces(key.batch, lo + first, lo + last), first)
        low, high = 0, sys.maxsize  # the m for which every piece stays in its pass: e·n <= a + m·c < (e + 1)·n
        for (a, c, n), e in zip(clocks, epochs):
            if c > 0:
                low, high = max(low, -((a - e * n) // c)), min(high, ((e + 1) * n - 1 - a) // c)
        a, c, n = (np.array(column, np.int64) for column in zip(*clocks))
        piece = layout.piece_of_row
        run = _TemplateRun(low, high, layout.base + (a - np.array(epochs, np.int64) * n)[piece] * layout.stride, c[piece] * layout.stride, layout)
        if len(self._runs) >= 4096:
            self._runs.pop(next(iter(self._runs)))
        self._runs[(key[1:], first, template)] = run
        return run

    def _row_layout(self, plan: MixturePlan, key: MixtureKey, pieces: list, first: int) -> "_RowLayout":
        """Where the rows of `pieces` start (in source batch 0 of their plans) and go, grouped by source, then by plan."""
        by_source: dict[int, dict[tuple, tuple]] = {}  # source -> plan key -> (its plan, indices of its pieces)
        for i, piece in enumerate(pieces):
            source_plan, plan_key = self._source_plan(plan, key, piece)
            by_source.setdefault(piece.source, {}).setdefault(plan_key, (source_plan, []))[1].append(i)
        base, stride, piece_of_row, out_rows, fills, at = [], [], [], [], [], 0
        source = np.empty(sum(piece.hi - piece.lo for piece in pieces), np.int64)
        for s, by_plan in by_source.items():
            runs = []
            for plan_key, (source_plan, mine) in by_plan.items():
                start = at
                for i in mine:
                    piece = pieces[i]
                    piece_base, piece_stride = source_plan.row_geometry(piece.lo, piece.hi)
                    base.append(piece_base)
                    stride.append(piece_stride)
                    piece_of_row.append(np.full(piece.hi - piece.lo, i, np.int64))
                    out_rows.append(piece.out + first)  # pieces count rows from lo + first
                    source[piece.out] = s
                    at += piece.hi - piece.lo
                runs.append((source_plan, plan_key, start, at))
            fills.append((self.sources[s]._batch_filler(), runs))
        parts = [(filler, source_plan, plan_key) for filler, runs in fills for source_plan, plan_key, _, _ in runs]
        # runs follow each other: rows [a, b) of each, in order, tile the rows
        bounds = np.array([0] + [b for _, runs in fills for _, _, _, b in runs], np.int64) if can_fill_together([f for f, _ in fills]) else None
        fillers = [(filler, runs[-1][0]) for filler, runs in fills]
        return _RowLayout(np.concatenate(base), np.concatenate(stride), np.concatenate(piece_of_row), np.concatenate(out_rows), source, fills, parts, bounds, fillers, [])

    def _source_plan(self, plan: MixturePlan, key: MixtureKey, piece) -> tuple:
        """The source plan a piece reads, and the key its source's filler knows it by (looked up once per pass, not per batch)."""
        lookup = (key[1:], piece.source, piece.epoch, piece.columns)  # the key but its batch (its first field) names the mixture plan
        found = self._source_plans.get(lookup)
        if found is None:
            if len(self._source_plans) >= 4 * len(self.sources):  # a source has a pass or two live (as MixturePlan keeps): forget the old
                self._source_plans.clear()
            options = plan.source_options[piece.source]
            # the filler's key for the plan: its pass, columns and shuffle (a small int here: hashed every batch)
            plan_key = ("mixture", piece.epoch, piece.columns, self._options_ids.setdefault(options, len(self._options_ids)))
            found = self._source_plans[lookup] = (plan.plan(piece.source, piece.epoch, piece.columns), plan_key)
            source = self.sources[piece.source]
            if source.dataset.remote is not None:  # fetch ahead along this pass of the source, from here on
                order = found[0].geometry.blocks_in_read_order(piece.lo, piece.hi, piece.batch)
                source.dataset.expect(order)
                source.document_lengths().read_ahead(order)
        return found

    def __repr__(self) -> str:
        return f"PackedMixture({self.mixture!r}, seq_len={self.seq_len})"


def _same_tokenizer(names: list[str], sources: list[PackedDataset]) -> None:
    """Token ids of different tokenizers do not mean the same text: refuse sources converted with different ones."""
    first = _tokenizer_identity(sources[0])
    for name, source in zip(names[1:], sources[1:]):
        theirs = _tokenizer_identity(source)
        if None not in (first, theirs) and first != theirs:
            raise ConfigError(
                f"mixture sources {names[0]!r} and {name!r} were tokenized with different tokenizers "
                f"({first} and {theirs}); their token ids do not mean the same text. Convert them with one tokenizer"
            )


def _tokenizer_identity(source: PackedDataset):
    """What identifies the tokenizer of a source's token ids, or None when nothing is recorded."""
    if source.tokenizer is not None:
        return None  # tokenized on the fly with the tokenizer given to all sources
    record = source.dataset.index.tokenizer or {}
    identity = record.get("fingerprint") or record.get("name")
    return identity
