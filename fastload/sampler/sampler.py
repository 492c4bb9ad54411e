"""`Sampler`: a rank's batches of sample ids, epoch after epoch, resumable by arithmetic.

The order of an epoch is a pure function of (seed, epoch, layout, options,
global batch size) — see `orders.py`. This class only adds the bookkeeping
a training loop needs: which epoch it is, how many samples of it the whole
job (all ranks) has consumed, and iteration from that point. Its
`state_dict()` is a handful of integers; `load_state_dict()` continues with
exactly the next global batch, whatever the number of ranks (any world size
that divides the global batch) and whatever the number of workers (the
sampler never sees them).

It is also a valid `batch_sampler` for `torch.utils.data.DataLoader`: it
yields lists of ints, one list per local batch, and has `len()`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from fastload.errors import ConfigError
from fastload.sampler.geometry import live_blocks
from fastload.sampler.options import SamplerOptions
from fastload.sampler.orders import EpochPlan, plan_epoch

__all__ = ["Sampler", "resume_position"]

STATE_VERSION = 1
# Batches computed together (`EpochPlan.rank_batches`): they cost about what one does, and a loader
# asks for this many within a few steps anyway. Iterating computes ahead; the resume point does not move.
BATCHES_AT_ONCE = 16


class Sampler:
    """Batches of sample ids for one rank.

    block_rows: rows per block, in storage order (`Dataset.block_rows`).
    global_batch_size: samples per global batch, across all ranks; each rank
        gets global_batch_size / world_size of them per step.
    rank, world_size: this process's place in the job (0 and 1 without DDP).
    options: a `SamplerOptions` (or pass its fields as keywords, or
        torch's `shuffle=True/False`, which picks `block_window`/`sequential`).

    The last global batch of an epoch is padded: unless the global batch
    size divides the number of samples, it is completed with samples
    repeated from the start of the epoch (`drop_last=False`, torch's
    default), so every rank gets `len(sampler)` batches of exactly
    global_batch_size / world_size samples, and the repeated samples are
    seen twice that epoch. For evaluation, where a repeat would count twice,
    pass `drop_last=True`: the incomplete batch is dropped instead (its
    samples are then not seen; a global batch size that divides the number
    of samples sees each exactly once).

    >>> sampler = Sampler(dataset.block_rows, global_batch_size=512, rank=rank, world_size=world, shuffle=True)
    >>> evaluation = Sampler(dataset.block_rows, global_batch_size=512, rank=rank, world_size=world, shuffle=False, drop_last=True)
    """

    def __init__(
        self,
        block_rows,
        *,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        options: SamplerOptions | None = None,
        shuffle: bool | None = None,
        **option_fields,
    ):
        if options is not None and (option_fields or shuffle is not None):
            raise ConfigError("pass either options= or individual option keywords, not both")
        if shuffle is not None:
            if "order" in option_fields:
                raise ConfigError("pass either shuffle= (torch style) or order=, not both")
            self.options = SamplerOptions.for_shuffle(shuffle, **option_fields)
        else:
            self.options = options if options is not None else SamplerOptions(**option_fields)
        self.block_rows = np.asarray(block_rows, np.int64)
        self.global_batch_size = global_batch_size
        _check_world(global_batch_size, rank, world_size)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.samples_consumed = 0  # by the whole job, in the current epoch
        self._plan: EpochPlan | None = None
        self.plan()  # validates the layout and batch size now, not at the first batch

    # -- the order ------------------------------------------------------------

    def plan(self, epoch: int | None = None) -> EpochPlan:
        epoch = self.epoch if epoch is None else epoch
        if self._plan is None or self._plan.epoch != epoch:
            self._plan = plan_epoch(self.block_rows, options=self.options, epoch=epoch, global_batch_size=self.global_batch_size)
        return self._plan

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank)."""
        return self.plan().num_batches

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning (torch's DistributedSampler convention)."""
        if type(epoch) is not int or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, found {epoch!r}")
        if epoch != self.epoch:
            self.epoch, self.samples_consumed = epoch, 0

    def batches(self, *, start_batch: int | None = None) -> Iterator[np.ndarray]:
        """This rank's remaining batches of the current epoch as int64 arrays, without bookkeeping."""
        first = self.samples_consumed // self.global_batch_size if start_batch is None else start_batch
        yield from self._rank_batches(first)

    def __iter__(self) -> Iterator[list[int]]:
        """The current epoch from its resume point; once it is exhausted, the next epoch begins.

        Iterating does not move the resume point: a loader prefetches batches
        it may never deliver (a `break`), so only the caller knows what was
        consumed — `fastload.DataLoader.state_dict()` counts delivered batches,
        and `state_dict(batches_done=k)` adds k batches by hand. Iterating again
        without exhausting the epoch starts from the same point, as torch's
        samplers start over.
        """
        for batch in self._rank_batches(self.samples_consumed // self.global_batch_size):
            yield batch.tolist()
        self.epoch, self.samples_consumed = self.epoch + 1, 0

    def _rank_batches(self, first: int) -> Iterator[np.ndarray]:
        """This rank's batches from `first` to the epoch's end, computed `BATCHES_AT_ONCE` at a time."""
        plan = self.plan()
        for b in range(first, plan.num_batches, BATCHES_AT_ONCE):
            yield from plan.rank_batches(b, min(BATCHES_AT_ONCE, plan.num_batches - b), self.rank, self.world_size)

    def worker_rows(self, num_workers: int) -> list[tuple[int, int]]:
        """How `num_workers` workers share each of this rank's batches: rows [lo, hi) of it per worker,
        cut at partition boundaries where there are enough (see `EpochGeometry.worker_columns`)."""
        return self.plan().geometry.worker_rows(self.rank, self.world_size, num_workers)

    def live_blocks(self) -> int:
        """Blocks this rank reads from at once: what its reader keeps decoded to read each block once an epoch.

        `block_window`: two windows (a partition's current one and the next, which a batch
        straddling them reaches into) of every partition whose columns this rank serves — for
        one rank with the defaults, 2 × 8 × min(64, blocks); `sequential`: two windows of its
        one stream; `uniform`: every block. Never more than the dataset's blocks.
        """
        geometry = self.plan().geometry
        partitions = geometry.column_partitions(*geometry.rank_columns(self.rank, self.world_size))[0]
        return live_blocks(self.options, len(self.block_rows), partitions=len(partitions))

    def read_order(self, *, skip_batches: int = 0, rows: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
        """The blocks this rank (or rows [lo, hi) of its batches) reads from its resume point (plus
        `skip_batches`) on, each once, in order of first use: the rest of this epoch, then the next;
        and how many of them are this epoch's. A remote dataset fetches ahead along this epoch's and
        only ranks the next's (what its cache keeps): fetched now, they would take the place of
        blocks this epoch still reads."""
        lo, hi = self.plan().rank_columns(self.rank, self.world_size)
        if rows is not None:
            lo, hi = lo + rows[0], lo + rows[1]
        start = self.samples_consumed // self.global_batch_size + skip_batches
        this = self.plan().geometry.blocks_in_read_order(lo, hi, start)
        following = plan_epoch(self.block_rows, options=self.options, epoch=self.epoch + 1, global_batch_size=self.global_batch_size)
        return np.concatenate([this, following.geometry.blocks_in_read_order(lo, hi)]), len(this)

    # -- resumption -------------------------------------------------------------

    def state_dict(self, *, batches_done: int = 0) -> dict:
        """The resume point (plus `batches_done` global batches delivered since it), and what fixes the order."""
        return {
            "version": STATE_VERSION,
            "seed": self.options.seed,
            "epoch": self.epoch,
            "samples_consumed": self.samples_consumed + batches_done * self.global_batch_size,
            "global_batch_size": self.global_batch_size,
            "order": self.options.order,
            "window_blocks": self.options.window_blocks,
            "num_partitions": self.plan().num_partitions,
            "drop_last": self.options.drop_last,
            "num_blocks": len(self.block_rows),
            "num_samples": int(self.block_rows.sum()),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` was taken: the next sample is the first not yet consumed."""
        for key in ("seed", "global_batch_size"):
            if type(state.get(key)) is not int or state[key] < 0:
                raise ConfigError(f"sampler state {key!r} must be a non-negative integer, found {state.get(key)!r}")
        fixed = ("seed", "global_batch_size", "order", "window_blocks", "num_partitions", "drop_last", "num_blocks", "num_samples")
        self.epoch, self.samples_consumed = resume_position(state, self.state_dict(), fixed=fixed, what="sampler", version=STATE_VERSION)


def resume_position(state: dict, current: dict, *, fixed: tuple[str, ...], what: str, version: int) -> tuple[int, int]:
    """(epoch, samples consumed) to continue from a saved sampler `state`, checked against `current`
    (the sampler's own `state_dict()`): every key in `fixed` must agree, or resuming would not give
    the next batch. Shared by every sampler that resumes by counting samples."""
    for key in ("epoch", "samples_consumed"):
        if type(state.get(key)) is not int or state[key] < 0:
            raise ConfigError(f"{what} state {key!r} must be a non-negative integer, found {state.get(key)!r}")
    if type(state.get("version", version)) is not int:
        raise ConfigError(f"{what} state 'version' must be an integer, found {state['version']!r:.50}; it was not written by fastload")
    if state.get("version", version) > version:
        raise ConfigError(f"this {what} state was written by a newer fastload; upgrade fastload to resume from it")
    mismatched = [f"{key} {state[key]!r} (now {current[key]!r})" for key in fixed if key in state and state[key] != current[key]]
    if mismatched:
        raise ConfigError(
            f"cannot resume: the saved {what} state differs in " + ", ".join(mismatched)
            + "; resuming needs the same dataset, seed, order options and global batch size "
            "(any number of ranks or workers is fine)"
        )
    batch = current["global_batch_size"]
    if state["samples_consumed"] % batch:
        raise ConfigError(
            f"saved samples_consumed={state['samples_consumed']} is not a whole number of global batches "
            f"of {batch}; it was not written by a fastload sampler"
        )
    return state["epoch"], state["samples_consumed"]


def _check_world(global_batch_size: int, rank: int, world_size: int) -> None:
    if type(global_batch_size) is not int or global_batch_size < 1:
        raise ConfigError(f"global_batch_size must be a positive integer, found {global_batch_size!r}")
    if type(world_size) is not int or world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, found {world_size!r}")
    if type(rank) is not int or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), found {rank!r}")
    if global_batch_size % world_size:
        raise ConfigError(
            f"the world size {world_size} does not divide the global batch size {global_batch_size}; every rank "
            f"must get an equal share. Use a global batch that is a multiple of {world_size} "
            f"(e.g. {(global_batch_size // world_size + 1) * world_size})."
        )
