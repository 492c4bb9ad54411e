"""`MixtureDataset`: what every dataset of a weighted mixture shares; `RowMixture`: one whose rows are picked by id.

A mixture dataset holds one dataset of the same kind per source and the
order of `MixturePlan` over them: the plans (one per global batch size and
shuffle, rebuilt in each process), the sampler the loader uses, the
`max_repetitions` check and indexing by `MixtureKey`. Subclasses say how a
source's order is planned and how a batch is assembled:

- `RowMixture` (`ArrayDataset(mixture, ...)`, `PaddedDataset(mixture, ...)`):
  rows picked by id, each source's rows in the row sampler's order;
- `fastload.packing.PackedMixture`: rows cut from each source's packed token stream.

Every batch carries `source`: which source each row came from.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fastload.errors import ConfigError, FastloadError
from fastload.sampler.batch_dataset import BatchDataset
from fastload.sampler.mixture import Mixture
from fastload.sampler.mixture_plan import MixturePlan
from fastload.sampler.mixture_sampler import MixtureBatchSampler, MixtureKey
from fastload.sampler.options import SamplerOptions

__all__ = ["MixtureDataset", "RowMixture", "open_sources", "same_ids"]


def open_sources(mixture: Mixture, make) -> list:
    """`make(name, dataset)` for every source, its errors saying which source (the same kind of error)."""
    if not isinstance(mixture, Mixture):
        raise ConfigError(f"expected a fastload.Mixture, found {type(mixture).__name__}")
    sources = []
    for name, dataset in mixture.datasets.items():
        try:
            sources.append(make(name, dataset))
        except FastloadError as error:
            raise type(error)(f"mixture source {name!r}: {error}") from None
    return sources


def same_ids(names: list[str], sources: list, fields: tuple[str, ...] = ("eos_id", "pad_id")) -> None:
    """Refuse sources that disagree on token ids rows of one batch must share (EOS, padding)."""
    first = sources[0]
    for name, source in zip(names[1:], sources[1:]):
        for what in fields:
            if getattr(source, what) != getattr(first, what):
                raise ConfigError(
                    f"mixture sources {names[0]!r} and {name!r} have different {what} ({getattr(first, what)} and "
                    f"{getattr(source, what)}); pass {what}= to use one for all, or convert them with the same tokenizer"
                )


class MixtureDataset(BatchDataset):
    """A mixture over `sources` (one dataset per source of `mixture`, in its order)."""

    tokens_per_row: int | None = None  # packed rows: the tokens each row holds, for the per-source counts

    def __init__(self, mixture: Mixture, sources: list, *, sampling: SamplerOptions | None = None):
        super().__init__(sampling)
        self.mixture, self.sources = mixture, list(sources)
        self._plans: dict[tuple, MixturePlan] = {}
        self._plans_by_key: dict[tuple, tuple] = {}  # a MixtureKey but its batch -> (plan, lo, hi)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_plans": {}, "_plans_by_key": {}}  # plans hold closures; each process builds its own

    def _new_plan(self, weights: dict[str, Fraction], **arguments) -> MixturePlan:  # pragma: no cover - abstract
        raise NotImplementedError

    def mixture_plan(self, global_batch_size: int, options: SamplerOptions) -> MixturePlan:
        key = (global_batch_size, options)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._new_plan(
                self.mixture.weights, options=options, global_batch_size=global_batch_size, on_exhausted=self.mixture.on_exhausted,
                schedule=self.mixture.schedule,
            )
        return plan

    def check_run(self, num_batches: int, global_batch_size: int) -> None:
        """Refuse a run of `num_batches` global batches that would read a source more often than its `max_repetitions`."""
        if not self.mixture.max_repetitions:
            return
        read = self.mixture_plan(global_batch_size, self.sampler_options(shuffle=True)).repetitions(num_batches)
        for name, limit in self.mixture.max_repetitions.items():
            if read[name] > limit:
                raise ConfigError(
                    f"mixture source {name!r} would be read {read[name]} times in {num_batches:,} global batches of {global_batch_size}, "
                    f"more than its max_repetitions={limit}; lower its weight, train for fewer steps, or give it more data"
                )

    def batch_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False) -> MixtureBatchSampler:
        """The sampler `fastload.DataLoader` uses: one `MixtureKey` per batch of this rank (batches are always full)."""
        options = self.sampler_options(shuffle=shuffle)
        return MixtureBatchSampler(self, global_batch_size, rank=rank, world_size=world_size, options=options, tokens_per_row=self.tokens_per_row)

    def _plan_of_key(self, key: MixtureKey) -> tuple[MixturePlan, int, int]:
        """The plan a key refers to, and the rank's columns [lo, hi)."""
        found = self._plans_by_key.get(key[1:])  # all but the batch: asked for every batch, the same few answers
        if found is None:
            options = SamplerOptions(order=key.order, seed=key.seed, window_blocks=key.window_blocks, num_partitions=key.num_partitions)
            share = key.global_batch_size // key.world_size
            found = self._plans_by_key[key[1:]] = (self.mixture_plan(key.global_batch_size, options), key.rank * share, (key.rank + 1) * share)
        return found

    def __getitem__(self, key: MixtureKey) -> dict:
        """A batch by its key (how torch's own fetcher asks, with num_workers=0)."""
        if not isinstance(key, MixtureKey):
            raise TypeError(f"a {type(self).__name__} is indexed by the MixtureKeys its batch_sampler yields; it has no rows of its own")
        return self.__fastload_batch__(key, np.empty)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mixture!r})"


class RowMixture(MixtureDataset):
    """Batches of rows from `sources`, each with `dataset.block_rows` and `__fastload_batch__(row ids, allocate)`,
    all giving the same arrays."""

    @property
    def tensor_dtypes(self) -> dict[str, str]:
        return getattr(self.sources[0], "tensor_dtypes", {})

    def _new_plan(self, weights, **arguments) -> MixturePlan:
        rows = {name: source.dataset.block_rows for name, source in zip(self.mixture.names, self.sources)}
        return MixturePlan.of_rows(rows, weights, **arguments)

    def __fastload_batch__(self, key: MixtureKey, allocate, rows: tuple[int, int] | None = None) -> dict:
        """Rank `key.rank`'s rows of global batch `key.batch`; with `rows=(a, b)` only those rows of
        it are written (see `BatchDataset`)."""
        plan, lo, hi = self._plan_of_key(key)
        # every array whole, whatever rows this call writes: the sources' arrays, as an empty batch shows them
        out = {name: allocate((hi - lo, *array.shape[1:]), array.dtype) for name, array in self.sources[0].__fastload_batch__([], np.empty).items()}
        out["source"] = allocate((hi - lo,), np.int64)
        first, last = (0, hi - lo) if rows is None else rows
        if first >= last:
            return out
        source, ids = plan.columns(key.batch, lo + first, lo + last)
        for s in np.unique(source).tolist():
            mine = np.flatnonzero(source == s)
            part = self.sources[s].__fastload_batch__(ids[mine], np.empty)
            for name, array in part.items():
                out[name][first + mine] = array
        out["source"][first:last] = source
        return out
