"""`fastload.DataLoader`: torch's DataLoader, with workers that hand batches over in shared memory.

It *is* a `torch.utils.data.DataLoader` (a subclass): the constructor, its
argument checks and error messages, the samplers, `len()`, the seeds given to
workers and single-process loading (`num_workers=0`) are torch's own code, so
a script changes one import and gets the same batches in the same order —
with one deliberate exception: a `fastload.Dataset` with `shuffle=True` and no
sampler is read in fastload's locality-aware order, with a block cache sized
for it (`_dataset_sampler`), since torch's uniform order would decode a block
for nearly every row. What differs otherwise is how a worker's batch reaches
the training loop:

    torch:    worker stacks into a new shm segment → fd over a socket → unpickle
              → pin thread copies it again into pinned memory
    fastload: worker stacks into a pooled slot (pinned once) →
              a ~100-byte message on a pipe → tensors that view the slot

A slot returns to the pool when the last tensor of its batch dies (see
`pool.py`); the multi-process iteration is `workers/iterator.py`, and the
protocol it speaks is NOTE [fastload worker protocol] in
`workers/protocol.py`. The private hooks and state of torch's DataLoader
and iterators it relies on are reached through `torch_private.py`.

Resumption follows torchdata's StatefulDataLoader convention:
`state_dict()` mid-epoch, then `load_state_dict()` on a new loader, and the
next batch is exactly the one that would have come next (for map-style
datasets with torch's default samplers or a fastload `Sampler`; iterable
datasets are fast-forwarded by re-reading the batches already delivered).
"""

from __future__ import annotations

import dataclasses
import itertools
import weakref

import torch

from fastload.errors import ConfigError
from fastload.pool import BufferPool
from fastload.torch_private import LoaderBase, SingleProcessIterator
from fastload.workers.collate import ComputedBatchCollate
from fastload.workers.iterator import PoolIterator, Progress
from fastload.workers.protocol import remote_reader

__all__ = ["DataLoader"]

class DataLoader(LoaderBase):
    """Drop-in for `torch.utils.data.DataLoader` (same arguments, same batches; a `fastload.Dataset`
    with `shuffle=True` is read in fastload's locality-aware order instead, see the README).

    With `num_workers > 0`, workers write batches into a pool of
    shared-memory slots and the loop receives tensors that view them (zero
    copy; pinned once when `pin_memory=True` and CUDA is present). Batches you
    keep hold their slot; keep many, and the workers wait and fastload warns
    once — `.clone()` what you keep for long.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, *args, **kwargs):
        if _computes_batches(dataset) and sampler is None and (batch_sampler is not None or batch_size is not None):
            # Packed and padded datasets make whole batches in the workers: the sampler yields one
            # key per batch and torch's auto-batching is off (batch_size=None); see fastload/packing.
            if args:
                raise ConfigError(f"pass DataLoader options after batch_sampler as keywords when loading a {type(dataset).__name__}")
            if batch_sampler is not None:  # the user's own, e.g. dataset.batch_sampler(512, rank=r, world_size=w)
                if batch_size != 1 or shuffle or kwargs.get("drop_last"):
                    raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last")
                sampler, batch_sampler = batch_sampler, None
                kwargs.pop("drop_last", None)
            else:
                rank, world = _rank_and_world()
                sampler = dataset.batch_sampler(batch_size * world, rank=rank, world_size=world, shuffle=bool(shuffle), drop_last=kwargs.pop("drop_last", False))
            batch_size, shuffle = None, None
            if kwargs.get("collate_fn") is None:
                kwargs["collate_fn"] = ComputedBatchCollate(getattr(dataset, "tensor_dtypes", None))
        elif batch_sampler is None and sampler is None and batch_size is not None and _is_fastload_dataset(dataset):
            batch_sampler = _dataset_sampler(dataset, batch_size, bool(shuffle), kwargs.get("drop_last", False), kwargs.get("generator"))
            if batch_sampler is not None:
                batch_size, shuffle = 1, None
                kwargs["drop_last"] = False
        if _is_fastload_dataset(dataset):
            _fit_block_cache(dataset, batch_sampler)
        super().__init__(dataset, batch_size, shuffle, sampler, batch_sampler, *args, **kwargs)
        self._resume_state: dict | None = None
        self._epoch_start: dict | None = None  # RNG and sampler state the current epoch started from
        self._skip_batches = 0  # read by the next iterator created: batches of indices to skip
        self._resume_seeds: dict | None = None  # read by the next PoolIterator: base seed and RNG to resume with

    def _buffer_pool(self, *, pin: bool) -> BufferPool:
        """The loader's pool, kept across epochs: slots sized (and pinned) once, not every epoch."""
        pool = getattr(self, "_pool", None)
        if pool is None or pool.pin != pin:
            if pool is not None:
                pool.close_when_unused()
            pool = self._pool = BufferPool(pin=pin)
            weakref.finalize(self, pool.close_when_unused)
        return pool

    # -- iteration -------------------------------------------------------------

    def read_order(self, rows: tuple[int, int] | None = None):
        """(the blocks the coming batches, or rows [lo, hi) of them, a worker's share, read in order;
        how many of them to fetch ahead: this epoch's) when a remote dataset can fetch ahead along
        them (a fastload sampler knows its order); else None. Sent to each worker as EXPECT."""
        sampler = self._index_sampler_object
        if remote_reader(self.dataset) is None or not callable(getattr(sampler, "read_order", None)):
            return None
        if rows is None:
            return sampler.read_order(skip_batches=self._skip_batches)
        return sampler.read_order(skip_batches=self._skip_batches, rows=rows)

    def _new_iterator(self):
        if self.num_workers == 0:
            iterator = _SingleProcessIterator(self)  # first: it draws its base seed before a sampler draws its own, as torch's
            found = self.read_order()
            if found is not None:
                order, fetch_ahead = found
                remote_reader(self.dataset).expect(order, fetch_ahead=fetch_ahead)
            if self._skip_batches:
                iterator.sampler_iter = _primed(itertools.islice(iterator.sampler_iter, self._skip_batches, None))
                self._skip_batches = 0
        else:
            self.check_worker_number_rationality()
            iterator = PoolIterator(self)
        return iterator

    def __iter__(self):
        resume, self._resume_state = self._resume_state, None
        if resume is not None:
            return self._resumed_iterator(resume)
        sampler = self._index_sampler_object
        self._rewind_interrupted_sampler(sampler)
        fresh_workers = not (self.persistent_workers and self.num_workers > 0 and self._persistent_iterator is not None)
        self._epoch_start = {
            "rng_state": torch.get_rng_state(),
            "generator_state": self.generator.get_state() if self.generator is not None else None,
            "sampler_state": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
            "fresh_workers": fresh_workers,
        }
        self._progress = Progress()
        iterator = super().__iter__()
        iterator._progress = self._progress
        self._epoch_start["base_seed"] = int(iterator.base_seed)
        return iterator

    def _rewind_interrupted_sampler(self, sampler) -> None:
        """A stateful sampler (fastload's) that the prefetcher ran ahead of, in an epoch left by a
        `break`, goes back to the first batch not delivered, so none is lost."""
        progress, start = getattr(self, "_progress", None), self._epoch_start
        if progress is None or start is None or start.get("sampler_state") is None or not hasattr(sampler, "samples_consumed"):
            return
        if progress.batches < len(self):
            state = dict(start["sampler_state"])
            state["samples_consumed"] += progress.batches * sampler.global_batch_size
            sampler.load_state_dict(state)

    def _resumed_iterator(self, state: dict):
        """An iterator positioned right after the batches `state` says were delivered.

        The RNG states the epoch started from are restored while the iterator
        draws its seeds (the base seed of the workers, the shuffling seed), so
        the same order and worker seeds come back; then the caller's own RNG
        state is put back, since the training loop's randomness is not ours
        to rewind. Map-style datasets skip indices only; iterable datasets
        cannot seek, so the batches already delivered are read again and
        dropped.
        """
        skip = int(state["batches_yielded"])
        sampler = self._index_sampler_object
        if self._map_style and skip >= len(self):
            # Taken after the last batch of an epoch: what comes next is the next epoch.
            if state.get("sampler_state") is not None and hasattr(sampler, "load_state_dict"):
                sampler.load_state_dict({**state["sampler_state"], "epoch": state["sampler_state"]["epoch"] + 1, "samples_consumed": 0})
            self._progress = None
            return self.__iter__()
        if state.get("sampler_state") is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(state["sampler_state"])
        current = torch.get_rng_state()
        reuse_workers = not state.get("fresh_workers", True) and self.persistent_workers and self.num_workers > 0
        self._epoch_start = {k: state.get(k) for k in ("rng_state", "generator_state", "sampler_state", "fresh_workers", "base_seed")}
        try:
            if reuse_workers:
                # The original epoch reused its workers, so it drew no base seed: the new workers
                # get the saved one, and the RNG is restored only for the sampler's draw.
                self._resume_seeds = state
            else:
                torch.set_rng_state(state["rng_state"])
                if state.get("generator_state") is not None and self.generator is not None:
                    self.generator.set_state(state["generator_state"])
            if self.persistent_workers and self.num_workers > 0:
                self._persistent_iterator = None  # a resumed epoch starts fresh workers, seeded as the original ones
            self._skip_batches = skip if self._map_style else 0
            iterator = self._new_iterator()
            if self.persistent_workers and self.num_workers > 0:
                self._persistent_iterator = iterator
        finally:
            self._skip_batches = 0
            self._resume_seeds = None
            torch.set_rng_state(current)
        if not self._map_style:
            for _ in range(skip):
                next(iterator)
        iterator.num_yielded = skip
        self._progress = Progress(skip)
        iterator._progress = self._progress
        return iterator

    # -- resumption (torchdata's StatefulDataLoader convention) -------------------

    def state_dict(self) -> dict:
        """Where the current epoch stands: batches delivered, and the state the epoch started from."""
        if not self.in_order and self.num_workers > 0:
            raise ConfigError(
                "state_dict() needs in_order=True: with out-of-order delivery the batches delivered so far "
                "are not the first ones of the epoch, so no count of them can say where to resume"
            )
        progress = getattr(self, "_progress", None)
        start = self._epoch_start or {
            "rng_state": torch.get_rng_state(),
            "generator_state": self.generator.get_state() if self.generator is not None else None,
            "sampler_state": None,
        }
        return {"batches_yielded": progress.batches if progress is not None else 0, **start}

    def load_state_dict(self, state: dict) -> None:
        """The next `iter(loader)` continues right after the batches `state` counted."""
        missing = {"batches_yielded", "rng_state"} - set(state)
        if missing:
            raise ConfigError(f"not a fastload DataLoader state: it lacks {sorted(missing)}")
        self._resume_state = dict(state)


class _SingleProcessIterator(SingleProcessIterator):
    """torch's single-process iteration, counting delivered batches for `state_dict()`."""

    _progress: Progress | None = None

    def __next__(self):
        data = super().__next__()
        if self._progress is not None:
            self._progress.batches += 1
        return data


def _is_fastload_dataset(dataset) -> bool:
    from fastload.format.reader import Dataset

    return isinstance(dataset, Dataset)


def _computes_batches(dataset) -> bool:
    """Datasets that compute whole batches: packed, padded, array and mixture datasets, or a user's
    own with the same contract (`fastload/sampler/batch_dataset.py`)."""
    return callable(getattr(dataset, "__fastload_batch__", None)) and callable(getattr(dataset, "batch_sampler", None))


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _dataset_sampler(dataset, batch_size: int, shuffle: bool, drop_last: bool, generator):
    """The batch sampler of a `fastload.Dataset` given no sampler: fastload's order where torch's default
    would defeat the dataset's locality; None keeps torch's own (storage order, outside torch.distributed).

    Under torch.distributed (world > 1), a fastload `Sampler` gives this rank
    its share of every global batch of `batch_size × world_size` samples, so
    ranks read disjoint data (and, with the default order, mostly disjoint
    blocks) and all get the same number of batches; torch's default would
    hand every rank the whole dataset. Seed 0 (every rank must agree on it
    without talking), a new order each epoch; pass your own `fastload.Sampler`
    as `batch_sampler=` for another seed or order.

    Otherwise, `shuffle=True` gets the same locality-aware order for one rank
    (`_ReshuffledEachEpoch`) instead of torch's uniform RandomSampler, which
    reads blocks at random. `shuffle=False` keeps torch's SequentialSampler:
    fastload's `sequential` order gives the same indices but completes the last
    batch with repeated rows, which torch's short last batch does not have.
    """
    import torch.distributed as dist

    from fastload.sampler import Sampler

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world, rank = dist.get_world_size(), dist.get_rank()
        return Sampler(dataset.block_rows, global_batch_size=batch_size * world, rank=rank, world_size=world, shuffle=shuffle, drop_last=drop_last)
    if shuffle:
        return _ReshuffledEachEpoch(dataset.block_rows, batch_size, drop_last=drop_last, generator=generator)
    return None


class _ReshuffledEachEpoch:
    """A `fastload.Dataset`'s batch sampler for `shuffle=True` outside torch.distributed: a fastload
    `Sampler` (one rank, `block_window` order) with a seed drawn anew at the start of every epoch.

    The seed is drawn the way torch's RandomSampler draws its own — from the
    loader's `generator` if given, else from torch's global RNG, when the
    epoch's first batch is requested (for a remote dataset, which fetches
    ahead along the epoch's order, when the iterator is made: `read_order`)
    — so `torch.manual_seed` (or the
    generator) keeps controlling the order as it did with torch's sampler,
    each epoch gets a new order, and resuming needs nothing of ours: the
    loader's `state_dict()` already restores the RNG state the epoch started
    from, so the same seed is drawn again. Like torch's samplers (and unlike a
    `Sampler` passed by hand), a loop left by `break` starts a new epoch.
    """

    def __init__(self, block_rows, batch_size: int, *, drop_last: bool, generator):
        from fastload.sampler import Sampler, SamplerOptions

        self.block_rows, self.generator = block_rows, generator
        self.options = SamplerOptions(order="block_window", drop_last=drop_last)
        self._first = Sampler(block_rows, global_batch_size=batch_size, options=self.options)  # checks the batch size now
        self.seed: int | None = None  # the current epoch's, once its first batch was requested
        self._drawn: int | None = None  # the coming epoch's seed, drawn early by `read_order`

    def __len__(self) -> int:
        return len(self._first)

    def live_blocks(self) -> int:
        return self._first.live_blocks()

    def read_order(self, *, skip_batches: int = 0, rows: tuple[int, int] | None = None) -> tuple:
        """(blocks, how many to fetch ahead) as `Sampler.read_order`, for the coming epoch only: the
        next one's seed is not drawn yet. A remote dataset fetches ahead from the iterator's creation,
        so its epoch's seed is drawn then, not at the first batch: the same draw, only earlier."""
        if self._drawn is None:
            self._drawn = self._draw_seed()
        order, this_epoch = self._epoch_sampler(self._drawn).read_order(skip_batches=skip_batches, rows=rows)
        return order[:this_epoch], this_epoch

    def __iter__(self):
        self.seed, self._drawn = (self._draw_seed() if self._drawn is None else self._drawn), None
        for batch in self._epoch_sampler(self.seed).batches():
            yield batch.tolist()

    def _draw_seed(self) -> int:
        return int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())

    def _epoch_sampler(self, seed: int):
        from fastload.sampler import Sampler

        return Sampler(self.block_rows, global_batch_size=self._first.global_batch_size, options=dataclasses.replace(self.options, seed=seed))


def _fit_block_cache(dataset, batch_sampler) -> None:
    """A locality-aware order reads each block once only if the blocks it has live stay decoded:
    size the dataset's cache for it (`Dataset.fit_cache`; a size the user set stays). Other orders
    keep the default cache: storage order needs a block or two, and a uniform order has every
    block live, which no bounded cache holds."""
    options = getattr(batch_sampler, "options", None)
    if getattr(options, "order", None) == "block_window" and callable(getattr(batch_sampler, "live_blocks", None)):
        dataset.fit_cache(batch_sampler.live_blocks())


def _primed(indices):
    """Draw the first item now (so a sampler's seed is drawn under the RNG state in force), keep it first."""
    try:
        first = next(indices)
    except StopIteration:
        return iter(())
    return itertools.chain([first], indices)
