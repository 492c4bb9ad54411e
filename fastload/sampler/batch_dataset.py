"""`BatchDataset`: the contract of a dataset that computes whole batches.

`PackedDataset`, `PaddedDataset` and `ArrayDataset` do not hand the loader
one sample at a time: a worker receives the key of a whole batch and
writes every array of it straight into a shared-memory slot. The contract
has two halves:

    batch_sampler(global_batch_size, *, rank, world_size, shuffle, drop_last)
        -> this rank's batch keys, epoch after epoch (len(), set_epoch(),
           state_dict(), load_state_dict(): a `Sampler` or the like)
    __fastload_batch__(key, allocate) -> {name: array}
        every array made by `allocate(shape, dtype)` (in a worker: views
        of the batch's slot; elsewhere: `np.empty`)

`fastload.DataLoader` and its workers recognise such a dataset by
`__fastload_batch__` alone, so a user's own class need not inherit from
this one; subclassing it gives the shuffle options a single home.

Shared batches. A dataset whose `splits_rows` is true also takes
`__fastload_batch__(key, allocate, rows=(lo, hi))`: it allocates every
array whole, in the same order and shapes as for the whole batch, and
writes only rows [lo, hi) (the first axis) of each. Then the loader's
workers compute each batch together, one share of its rows each, into the
same slot, and a block is loaded by the one worker whose rows read it, not
by every worker (see NOTE [fastload worker protocol]). Where the shares
are cut is the sampler's: its `worker_rows(num_workers)` cuts a rank's
batch at partition boundaries, so each worker reads only its partitions'
blocks. Every array must have one row per row of the batch, and
`rows=(0, 0)` must read no data: the main process sizes the slots that way.
"""

from __future__ import annotations

import dataclasses

from fastload.errors import ConfigError
from fastload.sampler.geometry import live_blocks
from fastload.sampler.options import SamplerOptions

__all__ = ["BatchDataset"]


class BatchDataset:
    """Base of the datasets that compute whole batches; holds their shuffle options.

    sampling: a `fastload.SamplerOptions` (seed, window_blocks,
        num_partitions; default `SamplerOptions()`). Its `order` is used when
        the loader shuffles (`shuffle=True`; `sequential` there means the
        default `block_window`); `shuffle=False` reads storage order.
        `drop_last` comes from the loader too.
    """

    splits_rows = True  # __fastload_batch__ takes rows=(lo, hi); see the module's docstring

    def __init__(self, sampling: SamplerOptions | None = None):
        if sampling is None:
            sampling = SamplerOptions()
        elif not isinstance(sampling, SamplerOptions):
            raise ConfigError(
                f"sampling= takes a fastload.SamplerOptions, found {type(sampling).__name__}; "
                "e.g. sampling=fastload.SamplerOptions(seed=1, window_blocks=4)"
            )
        self.sampling = sampling

    def sampler_options(self, *, shuffle: bool = True, drop_last: bool = False, order: str | None = None) -> SamplerOptions:
        """The options of a sampler over this dataset for the loader's `shuffle=`/`drop_last=` (or an explicit `order`)."""
        if order is None:
            shuffled = self.sampling.order if self.sampling.order != "sequential" else "block_window"
            order = shuffled if shuffle else "sequential"
        return dataclasses.replace(self.sampling, order=order, drop_last=drop_last)

    def live_blocks(self, num_blocks: int) -> int:
        """Blocks to keep decoded so the shuffled order reads each block once (see `geometry.live_blocks`)."""
        return live_blocks(self.sampling, num_blocks)

    def batch_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must define batch_sampler()")

    def __fastload_batch__(self, key, allocate, rows: tuple[int, int] | None = None) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define __fastload_batch__()")
