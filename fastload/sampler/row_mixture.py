"""`RowMixture`: a weighted mixture of datasets whose batches are rows picked by id (arrays, padded documents).

`ArrayDataset(mixture, ...)` and `PaddedDataset(mixture, ...)` make one: a
dataset of the same kind per source, the order of `MixturePlan.of_rows`
(each source's rows in its own order, ⌊w·B⌋ or ⌈w·B⌉ of them in every
global batch), and batches assembled from each source's rows. A `source`
array says which source each row came from. Packed mixtures (rows cut
from a token stream, not picked by id) are `fastload.packing.PackedMixture`.
"""

from __future__ import annotations

import numpy as np

from fastload.errors import ConfigError
from fastload.sampler.batch_dataset import BatchDataset
from fastload.sampler.mixture import Mixture
from fastload.sampler.mixture_plan import MixturePlan
from fastload.sampler.mixture_sampler import MixtureBatchSampler, MixtureKey
from fastload.sampler.options import SamplerOptions

__all__ = ["RowMixture"]


class RowMixture(BatchDataset):
    """Batches of rows from `sources` (one dataset per source of `mixture`, each with `dataset.block_rows`
    and `__fastload_batch__(row ids, allocate)`, all giving the same arrays)."""

    def __init__(self, mixture: Mixture, sources: list, *, sampling: SamplerOptions | None = None):
        super().__init__(sampling)
        self.mixture, self.sources = mixture, list(sources)
        self._plans: dict[tuple, MixturePlan] = {}

    @property
    def tensor_dtypes(self) -> dict[str, str]:
        return getattr(self.sources[0], "tensor_dtypes", {})

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_plans": {}}  # plans hold closures; each process builds its own

    def mixture_plan(self, global_batch_size: int, options: SamplerOptions) -> MixturePlan:
        key = (global_batch_size, options)
        plan = self._plans.get(key)
        if plan is None:
            rows = {name: source.dataset.block_rows for name, source in zip(self.mixture.names, self.sources)}
            plan = self._plans[key] = MixturePlan.of_rows(
                rows, self.mixture.weights, options=options, global_batch_size=global_batch_size,
                on_exhausted=self.mixture.on_exhausted, schedule=self.mixture.schedule,
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
        return MixtureBatchSampler(self, global_batch_size, rank=rank, world_size=world_size, options=self.sampler_options(shuffle=shuffle))

    def __fastload_batch__(self, key: MixtureKey, allocate) -> dict:
        options = SamplerOptions(order=key.order, seed=key.seed, window_blocks=key.window_blocks, num_partitions=key.num_partitions)
        share = key.global_batch_size // key.world_size
        source, rows = self.mixture_plan(key.global_batch_size, options).columns(key.batch, key.rank * share, (key.rank + 1) * share)
        out = None
        for s in np.unique(source).tolist():
            mine = np.flatnonzero(source == s)
            part = self.sources[s].__fastload_batch__(rows[mine], np.empty)
            if out is None:
                out = {name: allocate((len(source), *array.shape[1:]), array.dtype) for name, array in part.items()}
            for name, array in part.items():
                out[name][mine] = array
        out["source"] = allocate((len(source),), np.int64)
        out["source"][:] = source
        return out

    def __getitem__(self, key: MixtureKey) -> dict:
        if not isinstance(key, MixtureKey):
            raise TypeError(f"a {type(self).__name__} is indexed by the MixtureKeys its batch_sampler yields; it has no rows of its own")
        return self.__fastload_batch__(key, np.empty)

    def __repr__(self) -> str:
        return f"{type(self.sources[0]).__name__}({self.mixture!r})"
