"""`PackedDataset`: a fastload dataset seen as packed language-model batches.

    packed = fastload.PackedDataset("data/corpus", seq_len=1024)
    loader = fastload.DataLoader(packed, batch_size=16, num_workers=2, shuffle=True)
    for batch in loader:      # input_ids, labels, position_ids, document_ids: (16, 1024) each
        ...

With `fastload.DataLoader` each batch is computed whole inside a worker (see
`plan.py` for which tokens go where and `fill.py` for how): the loader's
sampler is a `PackedBatchSampler` that yields one small `BatchKey` per batch,
and the worker writes the four arrays straight into a shared-memory slot.

It is also an ordinary map-style dataset, for torch's DataLoader or a plain
loop: `len(packed)` rows of the storage-order stream, `packed[i]` the i-th
(a dict of (seq_len,) arrays). torch's shuffling then picks random rows of
that one fixed packing; fastload's re-packs every epoch in a new order.

A dataset with a `tokens` column is packed as stored. A dataset with only
text is tokenized on the fly with the `tokenizer` given: the plan needs
every document's token count, so the first use tokenizes the whole column
once to count (in parallel threads, with a progress bar on a terminal;
`count_tokens(quiet=True)` counts ahead without one) and caches the counts (see
`fastload.environment.cache_dir`; keyed by the dataset's index and the tokenizer), then
each worker tokenizes the documents its batches reach, not their whole blocks (`blocks.py`).
Batches equal those of the same data converted with `fastload convert --tokenizer` and packed.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.packing.documents import TokenDocuments
from fastload.packing.fill import BatchFiller, PackedArrays, RowsToFill, output_rows
from fastload.packing.plan import REMAINDERS, PackPlan
from fastload.packing.rows import row_number
from fastload.sampler import Mixture, SamplerOptions
from fastload.sampler.sampler import resume_position

__all__ = ["PackedDataset", "PackedBatchSampler", "BatchKey", "split_blocks"]

STATE_VERSION = 1


class BatchKey(NamedTuple):
    """What a worker needs to compute one batch: everything that fixes the plan, and where in it."""

    epoch: int
    batch: int
    rank: int
    world_size: int
    global_batch_size: int
    order: str
    seed: int
    window_blocks: int
    num_partitions: int | None


class PackedDataset(TokenDocuments):
    """Documents of a fastload dataset packed into rows of `seq_len + 1` tokens.

    dataset: a `fastload.Dataset` or the path of one; or a `fastload.Mixture`
        of several, which makes a `PackedMixture` (see `packing/mixture.py`).
    seq_len: tokens of input per row (each row holds seq_len + 1 tokens: labels are shifted by one).
    column: the column to pack; default `tokens` if the dataset has it, else
        the text column (then `tokenizer` is required).
    tokenizer: a `fastload.Tokenizer` to tokenize a text column on the fly.
    eos_id: the token appended after every document; default the tokenizer's
        (or the one recorded when the dataset was converted). `add_eos=False`
        packs documents back to back.
    pad_id: input id of padding (default eos_id, else 0); padding labels are -100.
    remainder: "drop" the tokens that do not fill a last batch, or "pad" it.
    sampling: the shuffle, a `fastload.SamplerOptions` (seed, window_blocks, num_partitions);
        the loader's `shuffle=True` picks its order (`block_window`), False the storage order.
    blocks: use only these blocks (a split: see `split_blocks`); None for all.
    """

    def __new__(cls, dataset=None, *args, **kwargs):
        # A Mixture packs into a PackedMixture: one name for "packed batches of this data".
        if isinstance(dataset, Mixture):
            from fastload.packing.mixture import PackedMixture

            if kwargs.pop("remainder", "drop") != "drop" or kwargs.pop("doc_lengths", None) is not None:
                raise ConfigError("a mixture is packed with remainder='drop' (remainder= and doc_lengths= apply to one dataset)")
            return PackedMixture(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        dataset: Dataset | str | os.PathLike,
        *,
        seq_len: int,
        column: str | None = None,
        tokenizer=None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        add_eos: bool = True,
        remainder: str = "drop",
        sampling: SamplerOptions | None = None,
        blocks=None,
        doc_lengths: np.ndarray | None = None,
    ):
        if remainder not in REMAINDERS:
            raise ConfigError(f"remainder must be one of {REMAINDERS}, found {remainder!r}")
        self.remainder = remainder
        self.blocks = None if blocks is None else np.unique(np.asarray(blocks, np.int64))
        super().__init__(dataset, seq_len=seq_len, column=column, tokenizer=tokenizer, eos_id=eos_id, pad_id=pad_id, add_eos=add_eos, sampling=sampling, doc_lengths=doc_lengths)

    def _reset_process_state(self) -> None:
        super()._reset_process_state()
        self._plans: dict[tuple, PackPlan] = {}
        self._plans_by_key: dict[tuple, PackPlan] = {}  # the same plans, by the plain tuple a BatchKey carries
        self._filler: BatchFiller | None = None
        self._told: tuple | None = None  # (plan, columns) and the last batch a remote dataset was told about (`_read_ahead`)

    # -- plans ---------------------------------------------------------------------

    def plan(self, epoch: int, global_batch_size: int, options: SamplerOptions) -> PackPlan:
        key = (epoch, global_batch_size, options)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 4:  # current and next epoch, for a loader or two
                self._plans.pop(next(iter(self._plans)))
            plan = PackPlan(
                self.document_lengths(), self.dataset.block_rows, seq_len=self.seq_len, global_batch_size=global_batch_size,
                options=options, epoch=epoch, add_eos=self.add_eos, remainder=self.remainder, blocks=self.blocks,
            )
            self._plans[key] = plan
        return plan

    def batch_sampler(
        self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False, order: str | None = None
    ) -> "PackedBatchSampler":
        """The sampler `fastload.DataLoader` uses: one `BatchKey` per batch of this rank.

        Incomplete batches follow `remainder` (drop_last=True agrees with the default "drop").
        """
        if drop_last and self.remainder == "pad":
            raise ConfigError("drop_last=True contradicts the PackedDataset's remainder='pad'; pick one")
        options = self.sampler_options(shuffle=shuffle, order=order)
        return PackedBatchSampler(self, global_batch_size, rank=rank, world_size=world_size, options=options)

    # -- batches -------------------------------------------------------------------

    def _batch_filler(self) -> BatchFiller:
        if self._filler is None:
            eos_id = self.eos_id if self.eos_id is not None else 0  # unused without add_eos
            blocks = self._token_blocks(keep_unused=4, lengths=self.document_lengths(), by_document=True)
            self._filler = BatchFiller(blocks, eos_id=eos_id, pad_id=self.pad_id)
        return self._filler

    def __fastload_batch__(self, key: BatchKey, allocate, rows: tuple[int, int] | None = None) -> dict:
        """Batch `key` as a dict of arrays from `allocate(shape, dtype)` (a worker passes its slot's);
        with `rows=(lo, hi)` only those rows of it are written (see `BatchDataset`)."""
        plan_key = (key.epoch, key.global_batch_size, key.order, key.seed, key.window_blocks, key.num_partitions)
        plan = self._plans_by_key.get(plan_key)
        if plan is None:
            options = SamplerOptions(order=key.order, seed=key.seed, window_blocks=key.window_blocks, num_partitions=key.num_partitions)
            plan = self._plans_by_key[plan_key] = self.plan(key.epoch, key.global_batch_size, options)
            if len(self._plans_by_key) > 4:
                self._plans_by_key.pop(next(iter(self._plans_by_key)))
        lo, hi = plan.rank_columns(key.rank, key.world_size)
        out = PackedArrays.empty(hi - lo, self.seq_len, allocate)
        first, last = (0, hi - lo) if rows is None else rows
        if first < last and self.dataset.remote is not None:
            self._read_ahead(plan, plan_key, key, lo + first, lo + last)
        # No rows (how the loader sizes slots) still runs the kernel: it is loaded once, before forking workers.
        self._batch_filler().fill_part(RowsToFill(plan, plan_key, key.batch, lo + first, lo + last, output_rows(first, last)), out)
        return out.as_dict()

    def _read_ahead(self, plan: PackPlan, plan_key: tuple, key: BatchKey, lo: int, hi: int) -> None:
        """Tell a remote dataset which blocks this process reads from here on (columns [lo, hi)): the
        rest of this epoch, then the next, in order of first use. Again only when the plan or the
        columns change or the batches go back (a resume)."""
        told = (plan_key, lo, hi)
        if self._told is not None and self._told[0] == told and self._told[1] <= key.batch:
            self._told = (told, key.batch)
            return
        self._told = (told, key.batch)
        options = SamplerOptions(order=key.order, seed=key.seed, window_blocks=key.window_blocks, num_partitions=key.num_partitions)
        following = self.plan(key.epoch + 1, key.global_batch_size, options)
        this_epoch = plan.geometry.blocks_in_read_order(lo, hi, key.batch)
        # The next epoch ranks what the cache keeps; only this one is fetched ahead (`Prefetcher.expect`).
        self.dataset.expect(np.concatenate([this_epoch, following.geometry.blocks_in_read_order(lo, hi)]), fetch_ahead=len(this_epoch))
        # A window is laid out once its blocks' lengths are read. This epoch's only: the next epoch's would
        # be read by workers that may not live to lay them out (measured: a third of the lengths read).
        self.document_lengths().read_ahead(this_epoch)

    def __len__(self) -> int:
        """Rows of the storage-order stream (what `packed[i]` indexes)."""
        return self.plan(0, 1, self.sampler_options(shuffle=False)).num_batches

    def __getitem__(self, index):
        if isinstance(index, BatchKey):
            return self.__fastload_batch__(index, np.empty)
        i = row_number(index, len(self), "packed rows")
        options = self.sampler_options(shuffle=False)
        plan_key = (0, 1, "sequential", options.seed, options.window_blocks, options.num_partitions)
        batch = self._batch_filler().fill(self.plan(0, 1, options), plan_key, i, 0, 1)
        return {name: array[0] for name, array in batch.as_dict().items()}

    def __repr__(self) -> str:
        source = f"tokenized on the fly from {self.column!r}" if self.tokenizer is not None else f"column {self.column!r}"
        return f"PackedDataset({str(self.dataset.path)!r}, seq_len={self.seq_len}, {source}, eos_id={self.eos_id}, remainder={self.remainder!r})"

    _PROCESS_STATE = (*TokenDocuments._PROCESS_STATE, "_plans", "_plans_by_key", "_filler", "_told")  # plans hold the lengths


class PackedBatchSampler:
    """One rank's batches of a `PackedDataset`, epoch after epoch, as `BatchKey`s; resumable.

    The same bookkeeping as `fastload.Sampler` (epoch, rows consumed by the
    whole job, `state_dict()`), so `fastload.DataLoader` resumes it the same
    way; rows play the part of samples.
    """

    def __init__(self, packed: PackedDataset, global_batch_size: int, *, rank: int = 0, world_size: int = 1, options: SamplerOptions):
        if type(world_size) is not int or world_size < 1 or type(rank) is not int or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), found rank={rank!r}, world_size={world_size!r}")
        if type(global_batch_size) is not int or global_batch_size < 1 or global_batch_size % world_size:
            raise ConfigError(f"the global batch of {global_batch_size!r} rows must be a positive multiple of the world size {world_size}")
        self.packed, self.global_batch_size, self.options = packed, global_batch_size, options
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.samples_consumed = 0  # rows, by the whole job, in the current epoch
        self.packed.plan(0, global_batch_size, options)  # errors (too few tokens) now, not at the first batch

    def __len__(self) -> int:
        return self.packed.plan(self.epoch, self.global_batch_size, self.options).num_batches

    def worker_rows(self, num_workers: int) -> list[tuple[int, int]]:
        """How `num_workers` workers share each batch: rows [lo, hi) per worker (see `Sampler.worker_rows`)."""
        geometry = self.packed.plan(self.epoch, self.global_batch_size, self.options).geometry
        return geometry.worker_rows(self.rank, self.world_size, num_workers)

    def set_epoch(self, epoch: int) -> None:
        if type(epoch) is not int or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, found {epoch!r}")
        if epoch != self.epoch:
            self.epoch, self.samples_consumed = epoch, 0

    def __iter__(self):
        """The current epoch from its resume point, then the next epoch begins (see `Sampler.__iter__`)."""
        o = self.options
        for b in range(self.samples_consumed // self.global_batch_size, len(self)):
            yield BatchKey(self.epoch, b, self.rank, self.world_size, self.global_batch_size, o.order, o.seed, o.window_blocks, o.num_partitions)
        self.epoch, self.samples_consumed = self.epoch + 1, 0

    def state_dict(self, *, batches_done: int = 0) -> dict:
        plan = self.packed.plan(self.epoch, self.global_batch_size, self.options)
        return {
            "version": STATE_VERSION,
            "kind": "packed",
            "epoch": self.epoch,
            "samples_consumed": self.samples_consumed + batches_done * self.global_batch_size,
            "global_batch_size": self.global_batch_size,
            "seq_len": self.packed.seq_len,
            "order": self.options.order,
            "seed": self.options.seed,
            "window_blocks": self.options.window_blocks,
            "num_partitions": plan.num_partitions,
            "num_tokens": plan.num_tokens,
            "num_blocks": len(plan.blocks),
            "remainder": self.packed.remainder,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "packed":
            raise ConfigError("this state was not written by a packed loader; it cannot position a PackedDataset")
        fixed = ("global_batch_size", "seq_len", "order", "seed", "window_blocks", "num_partitions", "num_tokens", "num_blocks", "remainder")
        self.epoch, self.samples_consumed = resume_position(state, self.state_dict(), fixed=fixed, what="packed sampler", version=STATE_VERSION)


def split_blocks(dataset: Dataset | str | os.PathLike, *, validation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) block ids: a random `validation` fraction of the blocks (at least one), disjoint.

    Splitting by blocks keeps both sides block-local (each reads only its own
    blocks) and never puts a document on both sides. Pass each to
    `PackedDataset(..., blocks=...)`.
    """
    opened = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    n = opened.num_blocks
    if not 0 < validation < 1 or n < 2:
        raise ConfigError(f"validation must be a fraction in (0, 1) of a dataset of at least 2 blocks; found {validation!r} of {n} blocks")
    held_out = min(n - 1, max(1, round(validation * n)))
    order = np.random.default_rng([seed, 0x5B1F]).permutation(n)
    return np.sort(order[held_out:]), np.sort(order[:held_out])
