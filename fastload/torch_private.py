"""torch's private API that fastload relies on: every name and attribute, here and nowhere else.

`fastload.DataLoader` is torch's DataLoader with the multi-process hand-off
replaced, and its workers behave like torch's own (same seeds, same
`get_worker_info()`, same collation, same error reports). That takes parts
of torch that are not public: the names in `NAMES` below, and the state and
hooks of torch's DataLoader and iterators in `ATTRIBUTES`. `loader.py` and
`workers/` reach them only through this module, under fastload's names;
`tests/loader/test_torch_private.py` checks that each one exists in the
installed torch with the kind, signature and behaviour relied on here, and
that no other module names one. So when a torch upgrade moves or renames
one, that test says which, and the fix is in this file. pyproject.toml
states the torch versions this was tested with.

    torch's DataLoader ── LoaderBase ── fastload.DataLoader
    torch's _BaseDataLoaderIter ── IteratorBase ── workers/iterator.py's PoolIterator
    torch's _SingleProcessDataLoaderIter ── SingleProcessIterator ── loader.py's (num_workers=0)

The base classes turn torch's private hooks into fastload's (`_get_iterator`
→ `_new_iterator`, `_reset` → `new_epoch`, `_next_data` → `next_batch`) and
show torch's private iterator state as properties (`num_workers`,
`sampler_iter`, ...). The trade-off: a property read costs ~50 ns more than
the attribute, a few per batch, against a one-file torch upgrade. Public
torch API (`torch.utils.data.DataLoader`'s arguments, `get_worker_info`,
`default_collate`, `torch.cuda`) is used directly elsewhere and is not listed.
"""

from __future__ import annotations

import torch
import torch.autograd.profiler as _profiler
import torch.utils.data as tud

try:
    from torch._utils import ExceptionWrapper
    from torch.utils.data._utils import collate as _collate
    from torch.utils.data._utils import worker as _worker
    from torch.utils.data.dataloader import _BaseDataLoaderIter, _DatasetKind, _SingleProcessDataLoaderIter
except ImportError as error:  # a torch that moved one of them: say so, not a bare ImportError from deep inside
    raise ImportError(
        f"fastload's DataLoader was tested with torch 2.13 and needs torch's {error.name or 'internal'} "
        f"({error}), which torch {torch.__version__} does not have; install torch 2.13, or a fastload release "
        "that supports this torch (see fastload/torch_private.py)"
    ) from error

__all__ = [
    "NAMES",
    "ATTRIBUTES",
    "DatasetKind",
    "ExceptionWrapper",
    "collate",
    "collate_tensor_fn",
    "default_collate_fn_map",
    "is_default_collate",
    "numpy_seed",
    "set_worker_info",
    "profiler_enabled",
    "LoaderBase",
    "IteratorBase",
    "SingleProcessIterator",
]

# Every private name fastload uses: what it is for, and where.
NAMES = {
    "torch.utils.data.dataloader._DatasetKind": "`Map`/`Iterable`, the kinds of dataset, and `create_fetcher`, the fetcher a worker runs (loader.py, workers/)",
    "torch.utils.data.dataloader._BaseDataLoaderIter": "base of the worker iterator: samplers, base seed, `len()` (IteratorBase)",
    "torch.utils.data.dataloader._SingleProcessDataLoaderIter": "`num_workers=0` iteration, torch's own (SingleProcessIterator)",
    "torch.utils.data._utils.collate.collate": "default_collate's engine; workers call it with a map whose tensor entry stacks into the slot (workers/collate.py)",
    "torch.utils.data._utils.collate.collate_tensor_fn": "torch's tensor stacking, for nested and sparse tensors (workers/collate.py)",
    "torch.utils.data._utils.collate.default_collate_fn_map": "default_collate's collate function per type, all but the tensor one kept (workers/collate.py)",
    "torch.utils.data._utils.collate.default_collate": "default_collate under its private path: a loader given it stacks into slots too (is_default_collate)",
    "torch.utils.data._utils.worker._generate_state": "a worker's numpy seed, as torch's workers draw it (numpy_seed)",
    "torch.utils.data._utils.worker.WorkerInfo": "what `get_worker_info()` returns in a worker (set_worker_info)",
    "torch.utils.data._utils.worker._worker_info": "where `get_worker_info()` finds it (set_worker_info)",
    "torch._utils.ExceptionWrapper": "a worker's exception with its traceback, re-raised in the main process (workers/)",
    "torch.autograd.profiler._is_profiler_enabled": "whether a profiler listens; if none, the worker iterator skips torch's per-batch record_function (profiler_enabled)",
}

# Every private attribute of torch's DataLoader and iterators fastload uses: what it is for.
ATTRIBUTES = {
    "DataLoader._get_iterator": "hook: DataLoader.__iter__ gets each new iterator from it (LoaderBase._new_iterator)",
    "DataLoader._iterator": "the iterator kept across epochs with persistent workers (LoaderBase._persistent_iterator)",
    "DataLoader._dataset_kind": "map-style or iterable dataset (LoaderBase._map_style)",
    "DataLoader._auto_collation": "whether indices come from the batch sampler (LoaderBase._index_sampler_object)",
    "_BaseDataLoaderIter._reset": "hook: DataLoader.__iter__ calls it to start another epoch on a persistent iterator (IteratorBase.new_epoch)",
    "_BaseDataLoaderIter._next_data": "hook: torch's __next__ gets each batch from it (IteratorBase.next_batch)",
    "_BaseDataLoaderIter._next_index": "the next index (or batch of indices) from the sampler (next_index)",
    "_BaseDataLoaderIter._sampler_iter": "the epoch's sampler iterator, sliced to skip batches when resuming (sampler_iter)",
    "_BaseDataLoaderIter._num_yielded": "batches delivered this epoch (num_yielded)",
    "_BaseDataLoaderIter._base_seed": "the seed workers derive theirs from; restored when resuming (base_seed)",
    "_BaseDataLoaderIter._IterableDataset_len_called": "the length len(loader) reported for an iterable dataset, for torch's warning (reported_len)",
    "_BaseDataLoaderIter._dataset": "the dataset the workers load from (dataset)",
    "_BaseDataLoaderIter._dataset_kind": "map-style or iterable (dataset_kind)",
    "_BaseDataLoaderIter._auto_collation": "whether the sampler yields batches of indices (auto_collation)",
    "_BaseDataLoaderIter._drop_last": "drop_last, for the workers' fetchers (drop_last)",
    "_BaseDataLoaderIter._num_workers": "num_workers (num_workers)",
    "_BaseDataLoaderIter._pin_memory": "pin_memory, and an accelerator is present (pin_memory)",
    "_BaseDataLoaderIter._timeout": "timeout in seconds, 0 for none (timeout)",
    "_BaseDataLoaderIter._persistent_workers": "persistent_workers (persistent_workers)",
}

DatasetKind = _DatasetKind
collate = _collate.collate
collate_tensor_fn = _collate.collate_tensor_fn
default_collate_fn_map = _collate.default_collate_fn_map


def is_default_collate(collate_fn) -> bool:
    """Is `collate_fn` torch's default_collate (under its public or its private name)?"""
    return collate_fn is tud.default_collate or collate_fn is _collate.default_collate


def numpy_seed(base_seed: int, worker_id: int) -> list[int]:
    """The seed torch's worker `worker_id` gives `numpy.random.seed`."""
    return _worker._generate_state(base_seed, worker_id)


def set_worker_info(*, worker_id: int, num_workers: int, seed: int, dataset) -> None:
    """Make `torch.utils.data.get_worker_info()` in this (worker) process answer as in a torch worker."""
    _worker._worker_info = _worker.WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)


def profiler_enabled() -> bool:
    """Whether a torch profiler is running (torch flips a module global; read it at each call)."""
    return _profiler._is_profiler_enabled


class LoaderBase(tud.DataLoader):
    """torch's DataLoader, with the private hook and state fastload uses under fastload's names."""

    def _get_iterator(self):  # torch's hook, called by DataLoader.__iter__
        return self._new_iterator()

    def _new_iterator(self):
        """A new iterator for an epoch; subclasses choose which."""
        return tud.DataLoader._get_iterator(self)

    @property
    def _persistent_iterator(self):
        """The iterator torch keeps across epochs with persistent workers (None before the first)."""
        return self._iterator

    @_persistent_iterator.setter
    def _persistent_iterator(self, iterator) -> None:
        self._iterator = iterator

    @property
    def _map_style(self) -> bool:
        """A map-style dataset (True) or an iterable one (False)."""
        return self._dataset_kind == _DatasetKind.Map

    @property
    def _index_sampler_object(self):
        """The sampler indices are drawn from: the batch sampler with auto-collation, else the sampler."""
        return self.batch_sampler if self._auto_collation else self.sampler


class _IteratorState:
    """The private state of torch's iterators, as properties under fastload's names."""

    @property
    def sampler_iter(self):
        return self._sampler_iter

    @sampler_iter.setter
    def sampler_iter(self, value) -> None:
        self._sampler_iter = value

    @property
    def num_yielded(self) -> int:
        return self._num_yielded

    @num_yielded.setter
    def num_yielded(self, value: int) -> None:
        self._num_yielded = value

    @property
    def base_seed(self) -> int:
        return self._base_seed

    @base_seed.setter
    def base_seed(self, value: int) -> None:
        self._base_seed = value

    @property
    def reported_len(self) -> int | None:
        return self._IterableDataset_len_called

    @property
    def dataset(self):
        return self._dataset

    @property
    def dataset_kind(self) -> int:
        return self._dataset_kind

    @property
    def auto_collation(self) -> bool:
        return self._auto_collation

    @property
    def drop_last(self) -> bool:
        return self._drop_last

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @property
    def pin_memory(self) -> bool:
        return self._pin_memory

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def persistent_workers(self) -> bool:
        return self._persistent_workers

    # The sampler's next index or batch of indices; StopIteration at the end of the epoch.
    # torch's own method under fastload's name (an alias, not a wrapper: it runs once a batch).
    next_index = _BaseDataLoaderIter._next_index


class IteratorBase(_IteratorState, _BaseDataLoaderIter):
    """torch's base iterator, its hooks turned into fastload's: subclasses implement `new_epoch` and `next_batch`."""

    def _reset(self, loader, first_iter: bool = False) -> None:  # torch's hook, called by DataLoader.__iter__
        self.new_epoch(loader, first=first_iter)

    def _next_data(self):  # torch's hook, called by its __next__
        return self.next_batch()

    def new_epoch(self, loader, *, first: bool) -> None:
        """Start an epoch: torch draws the sampler's new iterator and zeroes the count."""
        _BaseDataLoaderIter._reset(self, loader, first_iter=first)

    def next_batch(self):
        raise NotImplementedError


class SingleProcessIterator(_IteratorState, _SingleProcessDataLoaderIter):
    """torch's single-process iterator, its state under fastload's names."""
